"""One clear line when an optional dependency is missing, instead of a bare
``ModuleNotFoundError`` from deep inside an import."""

from __future__ import annotations

__all__ = ["missing_extra"]


def missing_extra(extra: str, purpose: str) -> ModuleNotFoundError:
    """The error to raise when ``purpose`` needs ``pip install dpop_guard[extra]``.

    >>> raise missing_extra("redis", "a redis:// replay store")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    ModuleNotFoundError: a redis:// replay store needs the 'redis' extra: pip install ...
    """
    error = ModuleNotFoundError(
        f"{purpose} needs the {extra!r} extra: pip install 'dpop_guard[{extra}]'"
    )
    error.name = extra
    return error
