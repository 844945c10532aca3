"""Frozen configuration objects, each validated on creation, each readable from the
environment (``from_env``) with the mapping passed in so tests can hand it a dict.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import urlsplit

from ._proxy import parse_networks, parse_proxy_headers
from .jwk import DEFAULT_MAX_RSA_BITS, DEFAULT_MIN_RSA_BITS, SUPPORTED_ALGORITHMS
from .nonce import DEFAULT_NONCE_STEP

__all__ = [
    "DEFAULT_ALGORITHMS",
    "AuthleteSettings",
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
DEFAULT_AUTHLETE_TIMEOUT: Final = 5.0
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


_PLACEHOLDER = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


@dataclass(frozen=True, slots=True)
class Route:
    """A path rule. ``pattern`` is a path with ``{name}`` segments and an optional
    trailing ``*`` (any remainder). The first matching rule wins; paths that match no rule
    are protected with no scope requirement (fail closed).

    >>> Route("/accounts/{account_id}/transactions", scopes=("read:transactions",))
    """

    pattern: str
    scopes: tuple[str, ...] = ()
    public: bool = False
    methods: tuple[str, ...] | None = None
    nonce: bool | None = None
    """Require a server nonce on this route; ``None`` follows ``GuardSettings.nonce``."""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pattern.startswith("/"):
            raise ValueError(f"Route pattern must start with '/': {self.pattern!r}")
        if isinstance(self.scopes, str):
            raise ValueError("Route scopes must be a sequence of scope names, not one string")
        for scope in self.scopes:
            if not scope or " " in scope:
                raise ValueError(f"invalid scope name {scope!r}")
        pattern = self.pattern
        prefix = pattern.endswith("*")
        if prefix:
            pattern = pattern[:-1]
        parts: list[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(pattern):
            parts.append(re.escape(pattern[pos : match.start()]))
            parts.append("[^/]+")
            pos = match.end()
        parts.append(re.escape(pattern[pos:]))
        source = "".join(parts) + (".*" if prefix else "")
        object.__setattr__(self, "regex", re.compile(source, re.DOTALL))
        if self.methods is not None:
            object.__setattr__(self, "methods", tuple(m.upper() for m in self.methods))

    def matches(self, path: str, method: str) -> bool:
        """True if this rule covers ``method path``."""
        if self.methods is not None and method not in self.methods:
            return False
        return self.regex.fullmatch(path) is not None


def _is_redis_url(value: str) -> bool:
    return urlsplit(value).scheme in ("redis", "rediss", "unix")


def _origin(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_url must be an absolute http(s) URL, got {value!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("public_url must have no query, fragment or user info")
    return value.rstrip("/")


WELL_KNOWN: Final = "/.well-known/oauth-protected-resource"


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceMetadata:
    """OAuth 2.0 Protected Resource Metadata (RFC 9728) for this API.

    :param resource: the resource identifier, an https URL (usually the public URL).
    :param authorization_servers: issuer URLs of the authorization servers it trusts.
    :param scopes_supported: the scopes it uses; by default those its routes require.
    :param resource_name: a human-readable name.
    """

    resource: str
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] | None = None
    resource_name: str | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.resource)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or parts.query
            or parts.fragment
        ):
            raise ValueError("resource must be an absolute URL without query or fragment")
        object.__setattr__(self, "authorization_servers", tuple(self.authorization_servers))

    @property
    def path(self) -> str:
        """Where the document is served: the well-known prefix, then the resource's path
        (RFC 9728 section 3.1)."""
        return WELL_KNOWN + urlsplit(self.resource).path.rstrip("/")

    @property
    def url(self) -> str:
        """The document's URL, announced as ``resource_metadata`` in challenges."""
        parts = urlsplit(self.resource)
        return f"{parts.scheme}://{parts.netloc}{self.path}"


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
    :param proxy_headers: which headers the trusted proxies set (or overwrite, or strip):
        ``forwarded`` (RFC 7239), ``x-forwarded-for``, ``x-forwarded-proto``,
        ``x-forwarded-host``, ``x-forwarded-prefix``, or ``x-forwarded`` for all four.
        Required whenever ``trusted_proxies`` is set; the headers not named are ignored even
        from trusted proxies, since a proxy passes those through from the client.
    :param max_token_bytes: longer access tokens are refused before any other work.
    :param cache_ttl: how long introspection results are reused; revocations are seen up
        to this late. ``0`` disables the cache.
    :param cache_maxsize: introspection cache entries.
    :param replay_maxsize: in-memory replay store entries; when full, requests fail closed.
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
    proxy_headers: tuple[str, ...] = ()
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    cache_ttl: float = DEFAULT_CACHE_TTL
    cache_maxsize: int = DEFAULT_CACHE_MAXSIZE
    replay_maxsize: int = DEFAULT_REPLAY_MAXSIZE

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
        object.__setattr__(
            self,
            "proxy_headers",
            parse_proxy_headers(self.proxy_headers, trusted_proxies=bool(self.trusted_proxies)),
        )
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
        """The first rule matching ``method path``, or ``None`` (protected, no scopes)."""
        for route in self.routes:
            if route.matches(path, method):
                return route
        return None

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
        ``RESOURCE_NAME``, ``TRUSTED_PROXIES`` (addresses or CIDRs), ``PROXY_HEADERS``
        (e.g. ``x-forwarded-for x-forwarded-proto``), ``CACHE_TTL``,
        ``CACHE_MAXSIZE``, ``REPLAY_MAXSIZE``.

        :raises ValueError: naming the variable that is wrong.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(prefix + name)
            return value.strip() if value is not None and value.strip() else None

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise ValueError(f"{prefix}{name} must be a number, got {raw!r}") from None

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
                proxy_headers=tuple(re.split(r"[\s,]+", get("PROXY_HEADERS") or "")),
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


ApiVersion = Literal["V2", "V3"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthleteSettings:
    """How to reach Authlete's ``/auth/introspection``.

    V2: ``POST {base_url}/api/auth/introspection`` with Basic ``api_key:api_secret``.
    V3: ``POST {base_url}/api/{api_key}/auth/introspection`` with Bearer ``access_token``
    (``api_key`` is then the service id).

    :param timeout: seconds for one introspection in total, retries included.
    :param retries: extra attempts after a connection failure or a 502/503/504.
    """

    base_url: str
    api_version: ApiVersion = "V3"
    api_key: str
    api_secret: str | None = field(default=None, repr=False)
    access_token: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_AUTHLETE_TIMEOUT
    retries: int = 1

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"base_url must be an absolute http(s) URL, got {self.base_url!r}")
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        version = self.api_version.upper()
        if version not in ("V2", "V3"):
            raise ValueError(f"api_version must be V2 or V3, got {self.api_version!r}")
        object.__setattr__(self, "api_version", version)
        if not self.api_key:
            raise ValueError("api_key (the service API key / service id) is required")
        if version == "V2" and not self.api_secret:
            raise ValueError("api_secret is required for the V2 API")
        if version == "V3":
            if not self.access_token:
                raise ValueError("access_token is required for the V3 API")
            if not self.api_key.isdigit():
                raise ValueError("api_key must be the numeric service id for the V3 API")
        _positive("timeout", self.timeout)
        if self.retries < 0:
            raise ValueError("retries must not be negative")

    @property
    def introspection_url(self) -> str:
        """The endpoint for this API version."""
        if self.api_version == "V2":
            return f"{self.base_url}/api/auth/introspection"
        return f"{self.base_url}/api/{self.api_key}/auth/introspection"

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value for calls to Authlete."""
        if self.api_version == "V2":
            raw = f"{self.api_key}:{self.api_secret}".encode()
            return "Basic " + base64.b64encode(raw).decode("ascii")
        return f"Bearer {self.access_token}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AuthleteSettings:
        """Read Authlete's own variable names: ``AUTHLETE_BASE_URL``,
        ``AUTHLETE_API_VERSION``, ``AUTHLETE_SERVICE_APIKEY``,
        ``AUTHLETE_SERVICE_APISECRET``, ``AUTHLETE_SERVICE_ACCESSTOKEN``, plus our
        ``DPOP_GUARD_AUTHLETE_TIMEOUT``.

        :raises ValueError: naming what is missing or wrong (never a secret's value).
        """
        env = os.environ if environ is None else environ
        base_url = env.get("AUTHLETE_BASE_URL", "").strip()
        if not base_url:
            raise ValueError("AUTHLETE_BASE_URL is not set")
        api_key = env.get("AUTHLETE_SERVICE_APIKEY", "").strip()
        if not api_key:
            raise ValueError("AUTHLETE_SERVICE_APIKEY is not set")
        timeout_raw = env.get(ENV_PREFIX + "AUTHLETE_TIMEOUT", "").strip()
        try:
            timeout = float(timeout_raw) if timeout_raw else DEFAULT_AUTHLETE_TIMEOUT
        except ValueError:
            raise ValueError(f"{ENV_PREFIX}AUTHLETE_TIMEOUT must be a number") from None
        try:
            return cls(
                base_url=base_url,
                api_version=env.get("AUTHLETE_API_VERSION", "V3").strip().upper() or "V3",  # type: ignore[arg-type]
                api_key=api_key,
                api_secret=env.get("AUTHLETE_SERVICE_APISECRET") or None,
                access_token=env.get("AUTHLETE_SERVICE_ACCESSTOKEN") or None,
                timeout=timeout,
            )
        except ValueError as exc:
            raise ValueError(f"AUTHLETE_*: {exc}") from None
