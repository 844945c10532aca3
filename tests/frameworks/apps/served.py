"""``tests.frameworks.apps.served:app``: the app a server subprocess loads. Only servers
import this module: it reads the environment at import (hypercorn looks ``app`` up in the
module's namespace, so it cannot be built lazily).

``DPOP_GUARD_MATRIX_APP`` names the framework (``starlette``, ``fastapi``, ``litestar``,
``quart``, ``django``); the rest of the environment points the guard at the simulator.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from ._names import FRAMEWORKS

# Popped: the guard refuses DPOP_GUARD_* names it does not read.
_framework = os.environ.pop("DPOP_GUARD_MATRIX_APP", "starlette")
if _framework not in FRAMEWORKS:
    raise ValueError(f"DPOP_GUARD_MATRIX_APP must be one of {FRAMEWORKS}, got {_framework!r}")
app: Any = importlib.import_module(f"{__package__}.{_framework}_app").create_app()
