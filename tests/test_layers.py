"""The layers hold: what the sans-IO core loads, in a fresh interpreter.

``make lint`` runs the import contracts (``[tool.importlinter]`` in pyproject.toml) over the
import graph; this test checks what they cannot express, since import-linter forbids whole
external packages only: the core loads no ``cryptography.x509`` (certificates are the mTLS
adapter's business) and no framework, HTTP client, Redis client or event loop, counting
every module imported indirectly.
"""

from __future__ import annotations

import subprocess
import sys

CORE = (
    "dpop_guard._binding",
    "dpop_guard._bounded",
    "dpop_guard.challenges",
    "dpop_guard.errors",
    "dpop_guard.facts",
    "dpop_guard.jwk",
    "dpop_guard.nonce",
    "dpop_guard.proof",
    "dpop_guard.routes",
)
HEAVY = ("anyio", "asyncio", "cryptography.x509", "h11", "httpx", "redis", "starlette")


def test_the_core_loads_no_framework_client_or_x509() -> None:
    """Importing every core module (without the package's lazy ``__init__``) loads none of
    the heavy modules."""
    code = "\n".join(
        [
            "import importlib.util, sys, types",
            "spec = importlib.util.find_spec('dpop_guard')",
            "package = types.ModuleType('dpop_guard')",
            "package.__path__ = list(spec.submodule_search_locations)",
            "sys.modules['dpop_guard'] = package",
            *(f"import {name}" for name in CORE),
            f"heavy = {HEAVY!r}",
            "print(sorted(m for m in sys.modules",
            "             if any(m == h or m.startswith(h + '.') for h in heavy)))",
        ]
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout


def test_the_middleware_loads_no_x509_until_a_certificate_source_does() -> None:
    """Importing the middleware loads no certificate parser: only a configured
    certificate source (``dpop_guard.mtls``) does, for apps that accept mTLS-bound tokens."""
    code = (
        "import sys, dpop_guard.middleware\n"
        "print(sorted(m for m in sys.modules"
        " if m == 'dpop_guard.mtls' or m.startswith('cryptography.x509')))"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout
