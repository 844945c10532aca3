"""Frozen configuration objects, each validated on creation, each readable from the
environment (``from_env``) with the mapping passed in so tests can hand it a dict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from ._env import EnvReader
from ._proxy import parse_networks
from .jwk import DEFAULT_MAX_RSA_BITS, DEFAULT_MIN_RSA_BITS, SUPPORTED_ALGORITHMS
from .metadata import ResourceMetadata
from .nonce import DEFAULT_NONCE_STEP
from .routes import Route, route_for

__all__ = [
    "DEFAULT_ALGORITHMS",
    "GuardSettings",
    "ProofPolicy",
    "ResourceMetadata",
    "Route",
]

# FAPI 2.0 Security Profile section 5.4: PS256, ES256 or EdDSA (Ed25519).
DEFAULT_ALGORITHMS: Final = ("ES256", "PS256", "EdDSA")
# How old a proof's iat may be. RFC 9449 section 11.1 asks for a short window; peers use
# 25-300 s. 60 s tolerates slow clients while keeping the replay store small.
DEFAULT_IAT_WINDOW: Final = 60
# Clock skew tolerated in both directions (a proof from slightly in the future).
DEFAULT_IAT_LEEWAY: Final = 5
DEFAULT_MAX_PROOF_BYTES: Final = 8192
DEFAULT_MAX_TOKEN_BYTES: Final = 8192
DEFAULT_MAX_JTI_LENGTH: Final = 256
DEFAULT_MAX_JSON_DEPTH: Final = 8
DEFAULT_CACHE_TTL: Final = 60.0
DEFAULT_CACHE_MAXSIZE: Final = 100_000
DEFAULT_REPLAY_MAXSIZE: Final = 1_000_000
ENV_PREFIX: Final = "DPOP_GUARD_"


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ProofPolicy:
    """What a DPoP proof must satisfy (RFC 9449 section 4.3).

    :param algorithms: the ``alg`` allow-list, also advertised in ``algs``. ``EdDSA``
        also admits RFC 9864's ``Ed25519``. ``none`` and HMAC can never be listed.
    :param iat_window: seconds a proof stays acceptable after its ``iat``.
    :param iat_leeway: clock skew tolerated on both sides of the window.
    :param max_proof_bytes: the ``DPoP`` header is refused above this, before parsing.
    :param max_jti_length: ``jti`` longer than this is refused.
    :param max_json_depth: header and payload JSON nested deeper than this is refused.
    :param min_rsa_bits, max_rsa_bits: accepted RSA modulus sizes.
    """

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    iat_window: int = DEFAULT_IAT_WINDOW
    iat_leeway: int = DEFAULT_IAT_LEEWAY
    max_proof_bytes: int = DEFAULT_MAX_PROOF_BYTES
    max_jti_length: int = DEFAULT_MAX_JTI_LENGTH
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    min_rsa_bits: int = DEFAULT_MIN_RSA_BITS
    max_rsa_bits: int = DEFAULT_MAX_RSA_BITS

    def __post_init__(self) -> None:
        if not self.algorithms:
            raise ValueError("algorithms must not be empty")
        unknown = [a for a in self.algorithms if a not in SUPPORTED_ALGORITHMS]
        if unknown:
            raise ValueError(
                f"algorithms: unsupported {unknown!r}; choose from {sorted(SUPPORTED_ALGORITHMS)}"
            )
        _positive("iat_window", self.iat_window)
        if self.iat_leeway < 0:
            raise ValueError("iat_leeway must not be negative")
        _positive("max_proof_bytes", self.max_proof_bytes)
        _positive("max_jti_length", self.max_jti_length)
        _positive("max_json_depth", self.max_json_depth)
        if not 1024 <= self.min_rsa_bits <= self.max_rsa_bits:
            raise ValueError("min_rsa_bits must be >= 1024 and <= max_rsa_bits")

    @property
    def accepted_algorithms(self) -> frozenset[str]:
        """The allow-list with ``Ed25519`` added wherever ``EdDSA`` is listed."""
        algs = set(self.algorithms)
        if "EdDSA" in algs:
            algs.add("Ed25519")
        return frozenset(algs)

    @property
    def replay_ttl(self) -> int:
        """Seconds a used ``jti`` must be remembered: as long as any clock in the fleet
        could still accept the proof (window plus leeway on both sides)."""
        return self.iat_window + 2 * self.iat_leeway


def _is_redis_url(value: str) -> bool:
    return urlsplit(value).scheme in ("redis", "rediss", "unix")


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_url must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("public_url must have no query, fragment or user info")
    return value.rstrip("/")


@dataclass(frozen=True, kw_only=True, slots=True)
class GuardSettings:
    """How the middleware protects an app.

    :param policy: the proof checks.
    :param routes: path rules; see :class:`Route`.
    :param public_url: the origin (and optional mount prefix) clients address, e.g.
        ``https://api.example.com/bank``. When set, ``htu`` is checked against it instead of
        the ``Host`` header, which a proxy (or an attacker) controls. Set it in production.
    :param realm: the optional ``realm`` challenge parameter.
    :param allow_unbound_tokens: accept tokens that are not DPoP-bound (on the ``Bearer``
        scheme, or on ``DPoP`` with a proof). FAPI 2.0 forbids this: default ``False``.
    :param nonce: ``required`` makes every protected route demand a server nonce (RFC 9449
        section 9); a :class:`Route` may override it.
    :param nonce_secret: the HMAC secret shared by the fleet (at least 16 bytes); without it
        nonces are only valid in the process that issued them.
    :param nonce_step: seconds per nonce time step; a nonce lives two steps.
    :param replay_store: ``memory`` or a ``redis://``/``rediss://`` URL (a shared store).
    :param introspection_cache: optional ``redis://`` URL of a shared second-level
        introspection cache.
    :param metadata: serve RFC 9728 metadata and announce it in challenges.
    :param trusted_proxies: addresses or CIDRs of the proxies whose ``Forwarded`` /
        ``X-Forwarded-Proto``/``-Host``/``-Prefix`` headers are believed when ``public_url``
        is not set; from anyone else they are ignored.
    :param max_token_bytes: longer access tokens are refused before any other work.
    :param cache_ttl: how long introspection results are reused; revocations are seen up
        to this late. ``0`` disables the cache.
    :param cache_maxsize: introspection cache entries.
    :param replay_maxsize: in-memory replay store entries; when full, requests fail closed.
    :param date_header: add a ``Date`` to every response that lacks one. Off by default:
        uvicorn, hypercorn and daphne send their own, and a second ``Date`` breaks RFC 9110
        (section 6.6.1); turn it on under a server that sends none.
    """

    policy: ProofPolicy = field(default_factory=ProofPolicy)
    routes: tuple[Route, ...] = ()
    public_url: str | None = None
    realm: str | None = None
    allow_unbound_tokens: bool = False
    nonce: Literal["off", "required"] = "off"
    nonce_secret: bytes | None = field(default=None, repr=False)
    nonce_step: int = DEFAULT_NONCE_STEP
    replay_store: str = "memory"
    introspection_cache: str | None = None
    metadata: ResourceMetadata | None = None
    trusted_proxies: tuple[str, ...] = ()
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    cache_ttl: float = DEFAULT_CACHE_TTL
    cache_maxsize: int = DEFAULT_CACHE_MAXSIZE
    replay_maxsize: int = DEFAULT_REPLAY_MAXSIZE
    date_header: bool = False

    def __post_init__(self) -> None:
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _origin(self.public_url))
        if self.nonce not in ("off", "required"):
            raise ValueError(f"nonce must be 'off' or 'required', got {self.nonce!r}")
        if self.nonce_secret is not None and len(self.nonce_secret) < 16:
            raise ValueError("nonce_secret must be at least 16 bytes")
        _positive("nonce_step", self.nonce_step)
        if self.replay_store != "memory" and not _is_redis_url(self.replay_store):
            raise ValueError("replay_store must be 'memory' or a redis:// or rediss:// URL")
        if self.introspection_cache is not None and not _is_redis_url(self.introspection_cache):
            raise ValueError("introspection_cache must be a redis:// or rediss:// URL")
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        parse_networks(self.trusted_proxies)  # raises ValueError naming a bad entry
        if self.cache_ttl < 0:
            raise ValueError("cache_ttl must not be negative")
        _positive("max_token_bytes", self.max_token_bytes)
        _positive("cache_maxsize", self.cache_maxsize)
        _positive("replay_maxsize", self.replay_maxsize)
        object.__setattr__(self, "routes", tuple(self.routes))

    @property
    def nonce_routes(self) -> bool:
        """Whether any request can require a nonce."""
        return self.nonce == "required" or any(r.nonce for r in self.routes)

    def nonce_required(self, route: Route | None) -> bool:
        """Whether a request on ``route`` (``None``: no rule matched) needs a nonce."""
        if route is not None and route.nonce is not None:
            return route.nonce
        return self.nonce == "required"

    def route_for(self, path: str, method: str) -> Route | None:
        """The first rule matching ``method path``, or ``None`` (protected, no scopes);
        see :func:`dpop_guard.routes.route_for`."""
        return route_for(self.routes, path, method)

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        prefix: str = ENV_PREFIX,
        routes: Sequence[Route] = (),
    ) -> GuardSettings:
        """Read ``DPOP_GUARD_*`` settings. Routes are code, not environment.

        ``ALGORITHMS`` (space- or comma-separated), ``IAT_WINDOW``, ``IAT_LEEWAY``,
        ``MAX_PROOF_BYTES``, ``MAX_TOKEN_BYTES``, ``MAX_JTI_LENGTH``, ``MAX_JSON_DEPTH``,
        ``MIN_RSA_BITS``, ``MAX_RSA_BITS``, ``PUBLIC_URL``, ``REALM``, ``ALLOW_UNBOUND_TOKENS``
        (``true``/``false``), ``NONCE`` (``off``/``required``), ``NONCE_SECRET``,
        ``NONCE_STEP``, ``REPLAY_STORE`` (``memory`` or a Redis URL),
        ``INTROSPECTION_CACHE`` (a Redis URL), ``AUTHORIZATION_SERVERS`` (space-separated
        issuers; turns on RFC 9728 metadata for ``RESOURCE``, by default ``PUBLIC_URL``),
        ``RESOURCE_NAME``, ``TRUSTED_PROXIES`` (addresses or CIDRs), ``CACHE_TTL``,
        ``CACHE_MAXSIZE``, ``REPLAY_MAXSIZE``.

        :raises ValueError: naming the variable that is wrong.
        """
        # One reader for every from_env: stripped, no control characters, finite numbers.
        reader = EnvReader(environ, prefix)
        get = reader.text

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            if kind is int:
                return reader.integer(name, int(default))
            return reader.number(name, default)

        policy_kwargs: dict[str, object] = {}
        if (algs := get("ALGORITHMS")) is not None:
            policy_kwargs["algorithms"] = tuple(a for a in re.split(r"[\s,]+", algs) if a)
        policy_kwargs["iat_window"] = int(number("IAT_WINDOW", DEFAULT_IAT_WINDOW, int))
        policy_kwargs["iat_leeway"] = int(number("IAT_LEEWAY", DEFAULT_IAT_LEEWAY, int))
        for field_name, default in (
            ("max_proof_bytes", DEFAULT_MAX_PROOF_BYTES),
            ("max_jti_length", DEFAULT_MAX_JTI_LENGTH),
            ("max_json_depth", DEFAULT_MAX_JSON_DEPTH),
            ("min_rsa_bits", DEFAULT_MIN_RSA_BITS),
            ("max_rsa_bits", DEFAULT_MAX_RSA_BITS),
        ):
            policy_kwargs[field_name] = int(number(field_name.upper(), default, int))
        secret = get("NONCE_SECRET")
        servers = get("AUTHORIZATION_SERVERS")
        resource = get("RESOURCE") or get("PUBLIC_URL")
        unbound = (get("ALLOW_UNBOUND_TOKENS") or "false").lower()
        if unbound not in ("true", "false", "1", "0"):
            raise ValueError(f"{prefix}ALLOW_UNBOUND_TOKENS must be true or false")
        try:
            return cls(
                policy=ProofPolicy(**policy_kwargs),  # type: ignore[arg-type]
                routes=tuple(routes),
                public_url=get("PUBLIC_URL"),
                realm=get("REALM"),
                allow_unbound_tokens=unbound in ("true", "1"),
                nonce=(get("NONCE") or "off").lower(),  # type: ignore[arg-type]
                nonce_secret=secret.encode() if secret else None,
                nonce_step=int(number("NONCE_STEP", DEFAULT_NONCE_STEP, int)),
                replay_store=get("REPLAY_STORE") or "memory",
                introspection_cache=get("INTROSPECTION_CACHE"),
                trusted_proxies=tuple(
                    p for p in re.split(r"[\s,]+", get("TRUSTED_PROXIES") or "") if p
                ),
                metadata=None
                if not (servers and resource)
                else ResourceMetadata(
                    resource=resource,
                    authorization_servers=tuple(servers.split()),
                    resource_name=get("RESOURCE_NAME"),
                ),
                cache_ttl=number("CACHE_TTL", DEFAULT_CACHE_TTL, float),
                cache_maxsize=int(number("CACHE_MAXSIZE", DEFAULT_CACHE_MAXSIZE, int)),
                max_token_bytes=int(number("MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES, int)),
                replay_maxsize=int(number("REPLAY_MAXSIZE", DEFAULT_REPLAY_MAXSIZE, int)),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}*: {exc}") from None
