"""dpop_guard: DPoP (RFC 9449) resource-server middleware for ASGI apps.

Names are imported on first use (PEP 562), so ``import dpop_guard.proof`` costs only the
pure verifier and pulls in neither httpx, starlette, anyio nor redis.

For example::

    import dpop_guard
    from dpop_guard import Route

    guard = dpop_guard.from_env(routes=(Route("/health", public=True),))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Where each public name lives; ``__getattr__`` imports the module on first access.
_EXPORTS: dict[str, str] = {
    "AsyncioHTTPClient": ".introspection._http",
    "AuthenticationRequired": ".errors",
    "AuthleteIntrospector": ".introspection.authlete",
    "AuthleteSettings": ".introspection.authlete",
    "CachingIntrospector": ".introspection.cached",
    "ConfigurationError": "._env",
    "DPoPAuth": ".client",
    "DPoPCredentials": ".credentials",
    "DPoPGuard": ".guard",
    "DPoPGuardError": ".errors",
    "DPoPGuardMiddleware": ".middleware",
    "DPoPUser": ".credentials",
    "GuardSettings": ".settings",
    "InsufficientScope": ".errors",
    "IntrospectionUnavailable": ".errors",
    "Introspector": ".introspection",
    "InvalidDPoPProof": ".errors",
    "InvalidRequest": ".errors",
    "InvalidToken": ".errors",
    "MemoryReplayStore": ".replay",
    "ProofPolicy": ".settings",
    "ProofSigner": ".client",
    "ProofVerifier": ".proof",
    "ReplayStore": ".replay",
    "ReplayStoreUnavailable": ".errors",
    "RequestFacts": ".facts",
    "ResourceMetadata": ".metadata",
    "Route": ".routes",
    "ServiceUnavailable": ".errors",
    "TokenInfo": ".facts",
    "UseDPoPNonce": ".errors",
    "VerifiedProof": ".proof",
    "build_challenge": ".challenges",
    "challenge_for": ".challenges",
    "compute_ath": ".proof",
    "from_env": ".guard",
    "jwk_thumbprint": ".jwk",
    "logging_config": ".logs",
    "parse_challenge": ".challenges",
    "verify_proof": ".proof",
}

__all__ = [
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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ above
    from ._env import ConfigurationError
    from .challenges import build_challenge, challenge_for, parse_challenge
    from .client import DPoPAuth, ProofSigner
    from .credentials import DPoPCredentials, DPoPUser
    from .errors import (
        AuthenticationRequired,
        DPoPGuardError,
        InsufficientScope,
        IntrospectionUnavailable,
        InvalidDPoPProof,
        InvalidRequest,
        InvalidToken,
        ReplayStoreUnavailable,
        ServiceUnavailable,
        UseDPoPNonce,
    )
    from .facts import RequestFacts, TokenInfo
    from .guard import DPoPGuard, from_env
    from .introspection import Introspector
    from .introspection._http import AsyncioHTTPClient
    from .introspection.authlete import AuthleteIntrospector, AuthleteSettings
    from .introspection.cached import CachingIntrospector
    from .jwk import jwk_thumbprint
    from .logs import logging_config
    from .metadata import ResourceMetadata
    from .middleware import DPoPGuardMiddleware
    from .proof import ProofVerifier, VerifiedProof, compute_ath, verify_proof
    from .replay import MemoryReplayStore, ReplayStore
    from .routes import Route
    from .settings import GuardSettings, ProofPolicy
