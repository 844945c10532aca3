"""The frameworks with an app here (``<name>_app.py``, each with ``create_app(environ)``)."""

FRAMEWORKS = ("starlette", "fastapi", "litestar", "quart", "django")
