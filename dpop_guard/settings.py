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
from ._proxy import parse_networks, parse_proxy_headers
from ._url import is_redis_url
from .metadata import ResourceMetadata
from .nonce import DEFAULT_NONCE_STEP
from .proof import DEFAULT_ALGORITHMS, ProofPolicy  # ProofPolicy lives with the verifier
from .replay._guard import DEFAULT_FLEET_SKEW
from .routes import Route, route_for

__all__ = [
    "DEFAULT_ALGORITHMS",
    "GuardSettings",
    "ProofPolicy",
    "ResourceMetadata",
    "Route",
]

DEFAULT_MAX_TOKEN_BYTES: Final = 8192
DEFAULT_REPLAY_MAXSIZE: Final = 1_000_000
DEFAULT_REPLAY_FLEET_SKEW: Final = DEFAULT_FLEET_SKEW
"""Seconds two nodes' wall clocks may differ (or one clock be stepped back) with replays
still refused: every replay record lives this much longer (docs/replay-and-fleets.md)."""
ENV_PREFIX: Final = "DPOP_GUARD_"


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value!r}")


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
    :param replay_maxsize: in-memory replay store entries; when full, requests fail closed.
    :param replay_fleet_skew: seconds the wall clocks of the nodes sharing a replay store
        may differ (or a clock be stepped back) while a replay is still refused; each
        record lives the proof's acceptance window plus this.
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
    metadata: ResourceMetadata | None = None
    trusted_proxies: tuple[str, ...] = ()
    proxy_headers: tuple[str, ...] = ()
    max_token_bytes: int = DEFAULT_MAX_TOKEN_BYTES
    replay_maxsize: int = DEFAULT_REPLAY_MAXSIZE
    replay_fleet_skew: int = DEFAULT_REPLAY_FLEET_SKEW
    date_header: bool = False

    def __post_init__(self) -> None:
        if self.public_url is not None:
            object.__setattr__(self, "public_url", _origin(self.public_url))
        if self.nonce not in ("off", "required"):
            raise ValueError(f"nonce must be 'off' or 'required', got {self.nonce!r}")
        if self.nonce_secret is not None and len(self.nonce_secret) < 16:
            raise ValueError("nonce_secret must be at least 16 bytes")
        _positive("nonce_step", self.nonce_step)
        if self.replay_store != "memory" and not is_redis_url(self.replay_store):
            raise ValueError("replay_store must be 'memory' or a redis:// or rediss:// URL")
        object.__setattr__(self, "trusted_proxies", tuple(self.trusted_proxies))
        parse_networks(self.trusted_proxies)  # raises ValueError naming a bad entry
        object.__setattr__(
            self,
            "proxy_headers",
            parse_proxy_headers(self.proxy_headers, trusted_proxies=bool(self.trusted_proxies)),
        )
        _positive("max_token_bytes", self.max_token_bytes)
        _positive("replay_maxsize", self.replay_maxsize)
        if not 0 <= self.replay_fleet_skew <= 3600:
            raise ValueError("replay_fleet_skew must be 0 to 3600 seconds")
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

        The proof policy's variables (see :meth:`ProofPolicy.from_env`), and
        ``MAX_TOKEN_BYTES``, ``PUBLIC_URL``, ``REALM``, ``ALLOW_UNBOUND_TOKENS``
        (``true``/``false``), ``NONCE`` (``off``/``required``), ``NONCE_SECRET``,
        ``NONCE_STEP``, ``REPLAY_STORE`` (``memory`` or a Redis URL),
        ``AUTHORIZATION_SERVERS`` (space-separated issuers; turns on RFC 9728 metadata for
        ``RESOURCE``, by default ``PUBLIC_URL``),
        ``RESOURCE_NAME``, ``TRUSTED_PROXIES`` (addresses or CIDRs), ``PROXY_HEADERS``
        (e.g. ``x-forwarded-for x-forwarded-proto``), ``REPLAY_MAXSIZE``,
        ``REPLAY_FLEET_SKEW`` (seconds). The cache's
        variables are the builder's (:class:`~dpop_guard.guard.StoreSettings`): the
        middleware never reads them.

        :raises ValueError: naming the variable that is wrong.
        """
        # One reader for every from_env: stripped, no control characters, finite numbers.
        reader = EnvReader(environ, prefix)
        get = reader.text

        def number(name: str, default: float, kind: type[int] | type[float]) -> float:
            if kind is int:
                return reader.integer(name, int(default))
            return reader.number(name, default)

        policy = ProofPolicy.from_env(environ, prefix=prefix)
        secret = get("NONCE_SECRET")
        servers = get("AUTHORIZATION_SERVERS")
        resource = get("RESOURCE") or get("PUBLIC_URL")
        unbound = (get("ALLOW_UNBOUND_TOKENS") or "false").lower()
        if unbound not in ("true", "false", "1", "0"):
            raise ValueError(f"{prefix}ALLOW_UNBOUND_TOKENS must be true or false")
        try:
            return cls(
                policy=policy,
                routes=tuple(routes),
                public_url=get("PUBLIC_URL"),
                realm=get("REALM"),
                allow_unbound_tokens=unbound in ("true", "1"),
                nonce=(get("NONCE") or "off").lower(),  # type: ignore[arg-type]
                nonce_secret=secret.encode() if secret else None,
                nonce_step=int(number("NONCE_STEP", DEFAULT_NONCE_STEP, int)),
                replay_store=get("REPLAY_STORE") or "memory",
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
                max_token_bytes=int(number("MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES, int)),
                replay_maxsize=int(number("REPLAY_MAXSIZE", DEFAULT_REPLAY_MAXSIZE, int)),
                replay_fleet_skew=int(number("REPLAY_FLEET_SKEW", DEFAULT_REPLAY_FLEET_SKEW, int)),
            )
        except ValueError as exc:
            raise ValueError(f"{prefix}*: {exc}") from None
