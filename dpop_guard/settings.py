"""Frozen configuration objects, each validated on creation, each readable from the
environment (``from_env``) with the mapping passed in so tests can hand it a dict.

Rules that live here: every ``DPOP_GUARD_*`` variable is named once, in :data:`ENV_NAMES`
(anything else under the prefix stops start-up, with the closest name suggested); the proof
policy's variables are read here (:func:`proof_policy_from_env`), not by the verifier; every
value goes through the one reader, :class:`~dpop_guard._env.EnvReader` (one boolean dialect,
one control-character rule); every error is a one-line
:class:`~dpop_guard._env.ConfigurationError` naming the variable, never a field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._env import ConfigurationError, EnvReader, check_names
from ._proxy import parse_networks, parse_proxy_headers
from ._url import is_redis_url
from .metadata import ResourceMetadata
from .nonce import DEFAULT_NONCE_STEP
from .proof import DEFAULT_ALGORITHMS, ProofPolicy  # ProofPolicy lives with the verifier
from .replay._guard import DEFAULT_FLEET_SKEW
from .routes import Route, route_for

__all__ = [
    "DEFAULT_ALGORITHMS",
    "ENV_NAMES",
    "PUBLIC_URL_FROM_REQUEST",
    "GuardSettings",
    "ProofPolicy",
    "ResourceMetadata",
    "Route",
    "check_env_names",
    "field_error",
    "proof_policy_from_env",
]

DEFAULT_MAX_TOKEN_BYTES: Final = 8192
DEFAULT_REPLAY_MAXSIZE: Final = 1_000_000
DEFAULT_REPLAY_FLEET_SKEW: Final = DEFAULT_FLEET_SKEW
"""Seconds two nodes' wall clocks may differ (or one clock be stepped back) with replays
still refused: every replay record lives this much longer (docs/replay-and-fleets.md)."""
ENV_PREFIX: Final = "DPOP_GUARD_"
PUBLIC_URL_FROM_REQUEST: Final = "request"
"""``DPOP_GUARD_PUBLIC_URL=request``: the explicit choice to check ``htu`` against the
request's ``Host`` (or a trusted proxy's headers) instead of a configured URL."""

ENV_NAMES: Final[Mapping[str, str]] = {
    # -- the proof (read by proof_policy_from_env)
    "ALGORITHMS": "the DPoP proof alg allow-list",
    "PROOF_MAX_AGE": "seconds a proof stays acceptable after its iat",
    "PROOF_MAX_FUTURE_SKEW": "seconds a proof's iat may lie ahead of the server clock",
    "MAX_PROOF_BYTES": "the DPoP header size limit",
    "MAX_JTI_LENGTH": "the jti length limit",
    "MAX_JSON_DEPTH": "the proof's JSON nesting limit",
    "MIN_RSA_BITS": "the smallest RSA key accepted",
    "MAX_RSA_BITS": "the largest RSA key accepted",
    "RSA_EXPONENT_65537_ONLY": "accept only e = 65537",
    "ALLOW_ED448": "let EdDSA name Ed448 keys",
    # -- the middleware (GuardSettings.from_env)
    "PUBLIC_URL": "the URL clients address, or 'request'",
    "REALM": "the challenge's realm",
    "ALLOW_UNBOUND_TOKENS": "accept tokens that are not DPoP-bound",
    "NONCE": "off or required",
    "NONCE_SECRET": "the fleet's nonce HMAC secret",
    "NONCE_STEP": "seconds per nonce time step",
    "MAX_TOKEN_BYTES": "the access-token size limit",
    "REPLAY_STORE": "memory or a Redis URL",
    "REPLAY_MAXSIZE": "entries of the in-memory replay store",
    "REPLAY_FLEET_SKEW": "seconds node clocks may differ; replay records live this much longer",
    "AUTHORIZATION_SERVERS": "issuers announced in RFC 9728 metadata",
    "RESOURCE": "the RFC 9728 resource identifier",
    "RESOURCE_NAME": "the RFC 9728 resource name",
    "TRUSTED_PROXIES": "addresses or CIDRs of trusted proxies",
    "PROXY_HEADERS": "which headers the trusted proxies set",
    # -- the builder (dpop_guard.guard)
    "INTROSPECTION": "authlete, authlete-standard, rfc7662 or jwt",
    "DEVELOPMENT_SIMULATOR": "run against the embedded simulator",
    "INTROSPECTION_CACHE": "a Redis URL for the shared introspection cache",
    "CACHE_SECRET": "the fleet's HMAC secret for shared cache entries",
    "CACHE_TTL": "seconds introspection results are reused",
    "CACHE_MAXSIZE": "entries of the local introspection cache",
    "RESOURCES": "this API's RFC 8707 resource identifiers",
    "START_DEGRADED": "start even when a dependency fails its start-up probe",
    "FREEZE_HEAP": "freeze the heap built before serving out of the cyclic GC, at start-up",
    "READINESS_PATH": "where the readiness probe answers ('off': nowhere)",
    "LIVENESS_PATH": "where the liveness probe answers ('off': nowhere)",
    "READINESS_TIMEOUT": "seconds the readiness probe may take",
    # -- the introspectors
    "AUTHLETE_TIMEOUT": "seconds for one call to Authlete, retries included",
    "AUTHLETE_BINDING_TTL": "seconds a token's binding probe answer is reused (0: never)",
    "INTROSPECTION_URL": "the RFC 7662 endpoint",
    "INTROSPECTION_CLIENT_ID": "our client id at the RFC 7662 endpoint",
    "INTROSPECTION_CLIENT_SECRET": "its secret (client_secret_basic)",
    "INTROSPECTION_PRIVATE_KEY": "its private JWK (private_key_jwt)",
    "INTROSPECTION_AUDIENCE": "the aud an RFC 7662 answer must name",
    "INTROSPECTION_TIMEOUT": "seconds for one RFC 7662 call",
    "INTROSPECTION_SIGNED": "off or required: RFC 9701 signed introspection answers",
    "INTROSPECTION_ISSUER": "the authorization server whose signed answers are accepted",
    "INTROSPECTION_JWKS_URI": "where that server's signing keys are",
    "INTROSPECTION_SIGNED_AUDIENCE": "the aud a signed answer must name",
    "INTROSPECTION_SIGNED_ALGORITHMS": "the signed answers' alg allow-list",
    "INTROSPECTION_SIGNED_MAX_AGE": "seconds a signed answer's iat may lie in the past",
    "JWT_ISSUER": "the JWT access tokens' issuer",
    "JWT_AUDIENCE": "the aud a JWT access token must name",
    "JWT_JWKS_URI": "where the issuer's keys are",
    "JWT_ALGORITHMS": "the JWT access tokens' alg allow-list",
    "JWT_REVOCATION_PATHS": "paths that also ask an introspector",
    "JWT_REVOCATION_INTROSPECTION": "which introspector those paths ask",
    # -- RFC 9421 message signatures (dpop_guard.httpsig._settings)
    "HTTPSIG": "off, optional, required, or prefix=mode pairs",
    "HTTPSIG_CLIENT_JWKS": "the clients' public keys (a JWK Set, or one per client id)",
    "HTTPSIG_SIGNING_KEY": "the private JWK responses are signed with",
    "HTTPSIG_UNSIGNED_RESPONSES": "path prefixes whose responses are not signed",
    "HTTPSIG_MAX_BODY_BYTES": "the largest request body verified",
    "HTTPSIG_MAX_RESPONSE_BYTES": "the largest response body held to be signed",
    # -- client certificates (dpop_guard.mtls)
    "CLIENT_CERT_SOURCE": "where client certificates come from",
    "CLIENT_CERT_HEADER": "nginx's certificate header",
    # -- the forward-auth server (dpop_guard.forward_auth)
    "FORWARD_AUTH_PROXY": "the proxy in front: nginx, caddy, traefik or envoy",
    "FORWARD_AUTH_PATH_PREFIX": "Envoy's ext_authz path_prefix",
    "FORWARD_AUTH_IDENTITY_HEADERS": "fact=Header-Name pairs the allow answer carries",
    "FORWARD_AUTH_UNMATCHED": "protect or refuse a path no route rule covers",
}
"""Every ``DPOP_GUARD_*`` variable, without the prefix, with what it sets: the one list
:func:`check_env_names` holds the environment against (docs/configuration.md has them all)."""

_RENAMED_ENV: Final = {"IAT_WINDOW": "PROOF_MAX_AGE", "IAT_LEEWAY": "PROOF_MAX_FUTURE_SKEW"}


def check_env_names(environ: Mapping[str, str], prefix: str = ENV_PREFIX) -> None:
    """Refuse a ``DPOP_GUARD_*`` variable that nothing reads (a former name is told its
    successor; a misspelt one, the closest name).

    :raises ConfigurationError: naming the variable.
    """
    for old, new in _RENAMED_ENV.items():
        if prefix + old in environ:
            raise ConfigurationError(prefix + old, "is no longer read", f"set {prefix}{new}")
    check_names(
        environ,
        prefix,
        frozenset(prefix + name for name in ENV_NAMES),
        what="a dpop_guard setting",
    )


def field_error(
    exc: ValueError,
    fields: Mapping[str, str],
    *,
    fallback: str,
    fixes: Mapping[str, str] | None = None,
) -> ConfigurationError:
    """``exc``, raised by a settings class about its fields, as a one-line
    :class:`ConfigurationError` that names the variables instead of the fields
    (``access_token is required`` becomes ``AUTHLETE_SERVICE_ACCESSTOKEN is required``).

    :param fields: field name to variable name.
    :param fallback: the variable blamed when the message names none.
    :param fixes: variable name to the fix its message ends with.
    """
    if isinstance(exc, ConfigurationError):
        variable, message, fix = exc.variable, exc.problem, exc.fix
    else:
        # A settings class's own "AUTHLETE_*: " prefix says less than the names below.
        message = re.sub(r"^[A-Z][A-Z0-9_]*\*: ", "", str(exc))
        if fields:
            names = sorted(fields, key=len, reverse=True)
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")\b")
            message = pattern.sub(lambda m: fields[m.group(1)], message)
        first = re.match(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+", message)
        variable = first.group(0) if first else fallback
        fix = ""
    if not fix and fixes:
        fix = fixes.get(variable or "", "")
    return ConfigurationError(variable, message, fix)


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
    replay_store: str = field(default="memory", repr=False)  # a URL may carry a password
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
    def certificate_routes(self) -> tuple[str, ...]:
        """The patterns of the rules that accept certificate-bound tokens (``mtls`` or
        ``either``): the guard needs a certificate source when there is any."""
        return tuple(r.pattern for r in self.routes if r.sender_constraint != "dpop")

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

        The proof policy's variables (see :func:`proof_policy_from_env`), and
        ``MAX_TOKEN_BYTES``, ``PUBLIC_URL`` (``request``: believe the request's host),
        ``REALM``, ``ALLOW_UNBOUND_TOKENS``
        (``true``/``false``), ``NONCE`` (``off``/``required``), ``NONCE_SECRET``,
        ``NONCE_STEP``, ``REPLAY_STORE`` (``memory`` or a Redis URL),
        ``AUTHORIZATION_SERVERS`` (space-separated issuers; turns on RFC 9728 metadata for
        ``RESOURCE``, by default ``PUBLIC_URL``),
        ``RESOURCE_NAME``, ``TRUSTED_PROXIES`` (addresses or CIDRs), ``PROXY_HEADERS``
        (e.g. ``x-forwarded-for x-forwarded-proto``), ``REPLAY_MAXSIZE``,
        ``REPLAY_FLEET_SKEW`` (seconds). The cache's
        variables are the builder's (:class:`~dpop_guard.guard.StoreSettings`): the
        middleware never reads them.

        :raises ConfigurationError: naming the variable that is wrong.
        """
        env = EnvReader(environ, prefix)
        policy = proof_policy_from_env(environ, prefix=prefix)
        secret = env.text("NONCE_SECRET", secret=True)
        servers = env.items("AUTHORIZATION_SERVERS")
        public_url = env.text("PUBLIC_URL")
        if public_url is not None and public_url.lower() == PUBLIC_URL_FROM_REQUEST:
            public_url = None
        resource = env.text("RESOURCE") or public_url
        try:
            return cls(
                policy=policy,
                routes=tuple(routes),
                public_url=public_url,
                realm=env.text("REALM"),
                allow_unbound_tokens=env.flag("ALLOW_UNBOUND_TOKENS", False),
                nonce=env.choice("NONCE", ("off", "required"), "off"),  # type: ignore[arg-type]
                nonce_secret=secret.encode() if secret else None,
                nonce_step=env.integer("NONCE_STEP", DEFAULT_NONCE_STEP),
                replay_store=env.text("REPLAY_STORE", "memory") or "memory",
                trusted_proxies=env.items("TRUSTED_PROXIES"),
                proxy_headers=env.items("PROXY_HEADERS"),
                metadata=None
                if not (servers and resource)
                else ResourceMetadata(
                    resource=resource,
                    authorization_servers=servers,
                    resource_name=env.text("RESOURCE_NAME"),
                ),
                max_token_bytes=env.integer("MAX_TOKEN_BYTES", DEFAULT_MAX_TOKEN_BYTES),
                replay_maxsize=env.integer("REPLAY_MAXSIZE", DEFAULT_REPLAY_MAXSIZE),
                replay_fleet_skew=env.integer("REPLAY_FLEET_SKEW", DEFAULT_REPLAY_FLEET_SKEW),
            )
        except ValueError as exc:
            raise field_error(exc, _guard_fields(prefix), fallback=prefix + "*") from None


def _guard_fields(prefix: str) -> dict[str, str]:
    """GuardSettings' fields (and ResourceMetadata's), each to its variable."""
    names = (
        "public_url realm nonce_secret nonce_step nonce replay_store trusted_proxies "
        "proxy_headers max_token_bytes replay_maxsize replay_fleet_skew resource_name resource"
    ).split()
    table = {name: prefix + name.upper() for name in names}
    table["authorization_servers"] = prefix + "AUTHORIZATION_SERVERS"
    return table


_POLICY_INTEGERS: Final = {
    "max_age": "PROOF_MAX_AGE",
    "max_future_skew": "PROOF_MAX_FUTURE_SKEW",
    "max_proof_bytes": "MAX_PROOF_BYTES",
    "max_jti_length": "MAX_JTI_LENGTH",
    "max_json_depth": "MAX_JSON_DEPTH",
    "min_rsa_bits": "MIN_RSA_BITS",
    "max_rsa_bits": "MAX_RSA_BITS",
}
_POLICY_FLAGS: Final = {
    "rsa_exponent_65537_only": "RSA_EXPONENT_65537_ONLY",
    "allow_ed448": "ALLOW_ED448",
}


def proof_policy_from_env(
    environ: Mapping[str, str] | None = None, *, prefix: str = ENV_PREFIX
) -> ProofPolicy:
    """The :class:`ProofPolicy` from ``{prefix}*`` variables: ``ALGORITHMS`` (space- or
    comma-separated), ``PROOF_MAX_AGE``, ``PROOF_MAX_FUTURE_SKEW``, ``MAX_PROOF_BYTES``,
    ``MAX_JTI_LENGTH``, ``MAX_JSON_DEPTH``, ``MIN_RSA_BITS``, ``MAX_RSA_BITS``,
    ``RSA_EXPONENT_65537_ONLY`` and ``ALLOW_ED448`` (booleans as
    :meth:`~dpop_guard._env.EnvReader.flag` reads them). The former ``IAT_WINDOW`` and
    ``IAT_LEEWAY`` are refused with a message naming their successors, so an old setting
    is never silently lost.

    :raises ConfigurationError: naming the variable that is wrong.
    """
    env = EnvReader(environ, prefix)
    for old, new in _RENAMED_ENV.items():
        if env.is_set(old):
            raise ConfigurationError(env.name(old), "is no longer read", f"set {prefix}{new}")
    kwargs: dict[str, Any] = {}
    if algorithms := env.items("ALGORITHMS"):
        kwargs["algorithms"] = algorithms
    for field_name, key in _POLICY_INTEGERS.items():
        if env.is_set(key):
            kwargs[field_name] = env.integer(key, 0)
    for field_name, key in _POLICY_FLAGS.items():
        kwargs[field_name] = env.flag(key, False)
    fields = {f: prefix + k for f, k in {**_POLICY_INTEGERS, **_POLICY_FLAGS}.items()}
    try:
        return ProofPolicy(**kwargs)
    except ValueError as exc:
        fields["algorithms"] = prefix + "ALGORITHMS"
        raise field_error(exc, fields, fallback=prefix + "ALGORITHMS") from None
