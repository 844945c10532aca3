"""dpop_guard: DPoP (RFC 9449) resource-server middleware for ASGI apps.

>>> from dpop_guard import DPoPGuardMiddleware, GuardSettings, Route
"""

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
from .introspection import Introspector, RequestFacts, TokenInfo
from .introspection.authlete import AuthleteIntrospector
from .introspection.cached import CachingIntrospector
from .introspection.transport import AsyncioHTTPClient
from .jwk import jwk_thumbprint
from .metadata import ResourceMetadata
from .middleware import DPoPGuardMiddleware
from .proof import ProofVerifier, VerifiedProof, compute_ath, verify_proof
from .replay import MemoryReplayStore, ReplayStore
from .routes import Route
from .settings import AuthleteSettings, GuardSettings, ProofPolicy

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
