"""dpop_guard: DPoP (RFC 9449) resource-server middleware for ASGI apps.

>>> from dpop_guard import DPoPGuardMiddleware, GuardSettings, Route
"""

from .challenges import build_challenge, challenge_for, parse_challenge
from .client import DPoPAuth, ProofSigner
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
from .introspection import Introspector, RequestFacts, TokenInfo
from .introspection._http import AsyncioHTTPClient
from .introspection.authlete import AuthleteIntrospector
from .introspection.cached import CachingIntrospector
from .jwk import jwk_thumbprint
from .middleware import DPoPCredentials, DPoPGuardMiddleware, DPoPUser
from .proof import ProofVerifier, VerifiedProof, compute_ath, verify_proof
from .replay import MemoryReplayStore, ReplayStore
from .settings import AuthleteSettings, GuardSettings, ProofPolicy, ResourceMetadata, Route

__version__ = "0.1.0"

__all__ = [
    "AsyncioHTTPClient",
    "AuthenticationRequired",
    "AuthleteIntrospector",
    "AuthleteSettings",
    "CachingIntrospector",
    "DPoPAuth",
    "DPoPCredentials",
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
    "jwk_thumbprint",
    "parse_challenge",
    "verify_proof",
]
