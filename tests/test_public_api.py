"""The public surface is deliberate, and importing the pure core stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dpop_guard

# The exact public surface: adding or removing a name is a decision, made here.
PUBLIC = [
    "AsyncioHTTPClient",
    "AuthenticationRequired",
    "AuthleteIntrospector",
    "AuthleteSettings",
    "CachingIntrospector",
    "ConfigurationError",
    "DPoPAuth",
    "DPoPCredentials",
    "DPoPGuard",
    "DPoPGuardError",
    "DPoPGuardMiddleware",
    "DPoPUser",
    "GuardSettings",
    "InsufficientScope",
    "IntrospectionUnavailable",
    "Introspector",
    "InvalidDPoPProof",
    "InvalidRequest",
    "InvalidToken",
    "MemoryReplayStore",
    "ProofPolicy",
    "ProofSigner",
    "ProofVerifier",
    "ReplayStore",
    "ReplayStoreUnavailable",
    "RequestFacts",
    "ResourceMetadata",
    "Route",
    "ServiceUnavailable",
    "TokenInfo",
    "UseDPoPNonce",
    "VerifiedProof",
    "build_challenge",
    "challenge_for",
    "compute_ath",
    "from_env",
    "jwk_thumbprint",
    "logging_config",
    "parse_challenge",
    "verify_proof",
]


def test_exact_surface() -> None:
    """__all__ is exactly the pinned list, sorted."""
    assert dpop_guard.__all__ == PUBLIC == sorted(PUBLIC)


@pytest.mark.parametrize("name", PUBLIC)
def test_each_name_resolves(name: str) -> None:
    """Every exported name imports, and is the object of the module it lives in."""
    value = getattr(dpop_guard, name)
    module = sys.modules[value.__module__]
    assert getattr(module, name) is value


def test_unknown_name() -> None:
    """A name that is not exported is an AttributeError, not a silent None."""
    with pytest.raises(AttributeError, match="no attribute 'verify'"):
        dpop_guard.verify  # noqa: B018


def test_version() -> None:
    """One version source: the package's own attribute is what the installed metadata says."""
    from importlib.metadata import version

    assert dpop_guard.__version__ == version("dpop_guard")


HEAVY = ("httpx", "starlette", "anyio", "redis")


@pytest.mark.parametrize(
    "module", ["dpop_guard.proof", "dpop_guard.jwk", "dpop_guard.nonce", "dpop_guard.challenges"]
)
def test_pure_core_imports_nothing_async(module: str) -> None:
    """In a fresh interpreter, importing the pure core loads none of httpx, starlette,
    anyio or redis."""
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(  # noqa: S603 - our own interpreter
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
