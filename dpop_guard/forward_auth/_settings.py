"""The forward-auth server's settings and each proxy's contract: the headers it sets on its
check request (:data:`CONTRACTS`), the identity facts an allow answer may carry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from .._env import ConfigurationError, EnvReader
from ..settings import ENV_PREFIX

__all__ = [
    "CONTRACTS",
    "DEFAULT_IDENTITY_HEADERS",
    "FLAVOURS",
    "IDENTITY_FACTS",
    "UNMATCHED",
    "Flavour",
    "ForwardAuthSettings",
    "ProxyContract",
    "Unmatched",
    "certificate_headers",
]

Flavour = Literal["nginx", "caddy", "traefik", "envoy"]
FLAVOURS: Final[tuple[Flavour, ...]] = ("nginx", "caddy", "traefik", "envoy")
Unmatched = Literal["protect", "refuse"]
UNMATCHED: Final[tuple[Unmatched, ...]] = ("protect", "refuse")


@dataclass(frozen=True, slots=True)
class ProxyContract:
    """The headers one proxy sets on its check request (lower-case names).

    :param method: names the original method; ``None``: the check request's own method.
    :param target: holds the original request target (path and query); ``None``: the
        check request's own target, below the configured path prefix.
    :param host: holds the original ``Host``.
    :param proto: holds the original scheme.
    """

    method: bytes | None
    target: bytes | None
    host: bytes
    proto: bytes


_X_FORWARDED: Final = ProxyContract(
    b"x-forwarded-method", b"x-forwarded-uri", b"x-forwarded-host", b"x-forwarded-proto"
)
CONTRACTS: Final[Mapping[Flavour, ProxyContract]] = {
    # Set by deploy/forward-auth/nginx.conf with proxy_set_header (replacing a client's).
    "nginx": ProxyContract(
        b"x-original-method", b"x-original-uri", b"x-forwarded-host", b"x-forwarded-proto"
    ),
    # Caddy's forward_auth and Traefik's ForwardAuth set these four themselves.
    "caddy": _X_FORWARDED,
    "traefik": _X_FORWARDED,
    # Envoy's ext_authz HTTP service keeps the method and prefixes the path.
    "envoy": ProxyContract(None, None, b"host", b"x-forwarded-proto"),
}
"""What each supported proxy sends, from its documentation (docs/forward-auth.md)."""

IDENTITY_FACTS: Final = (
    "subject",
    "client_id",
    "scope",
    "interaction_id",
    "jkt",
    "x5t_s256",
    "expires_at",
    "acr",
    "auth_time",
    "scheme",
    "grant_id",
)
"""The credentials' facts an identity header may carry."""
DEFAULT_IDENTITY_HEADERS: Final = (
    ("subject", "X-Auth-Subject"),
    ("client_id", "X-Auth-Client-Id"),
    ("scope", "X-Auth-Scope"),
    ("interaction_id", "X-Auth-Interaction-Id"),
)
_CERTIFICATE_HEADERS: Final[Mapping[str, tuple[bytes, ...]]] = {
    "rfc9440": (b"client-cert", b"client-cert-chain"),
    "envoy-xfcc": (b"x-forwarded-client-cert",),
    "aws-alb": (b"x-amzn-mtls-clientcert-leaf",),
}
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class ForwardAuthSettings:
    """What the adapter reads besides the guard's settings.

    :param proxy: which proxy's contract to believe (:data:`CONTRACTS`).
    :param path_prefix: Envoy's ``path_prefix``: the check request's path is this prefix
        followed by the original path (required for ``envoy``, refused for the others).
    :param identity_headers: ``(fact, header name)`` pairs the allow answer carries.
    :param unmatched: a path no route rule matches: ``protect`` (the middleware's rule: a
        valid token, no scope) or ``refuse`` (403 ``forward_auth_path_unmatched``, for an
        API whose router reads paths more broadly than the rules: case-insensitive, or
        ignoring a trailing slash).
    :raises ValueError: naming the field that is wrong.
    """

    proxy: Flavour
    path_prefix: str = ""
    identity_headers: tuple[tuple[str, str], ...] = DEFAULT_IDENTITY_HEADERS
    unmatched: Unmatched = "protect"

    def __post_init__(self) -> None:
        if self.proxy not in FLAVOURS:
            raise ValueError(f"proxy must be one of {', '.join(FLAVOURS)}, got {self.proxy!r}")
        if self.unmatched not in UNMATCHED:
            raise ValueError(f"unmatched must be one of {', '.join(UNMATCHED)}")
        prefix = self.path_prefix
        if self.proxy == "envoy":
            if not re.fullmatch(r"(/[A-Za-z0-9._~\-]+)+", prefix):
                raise ValueError(
                    "path_prefix is required for envoy (its ext_authz path_prefix, e.g. "
                    f"/check): without one a client's path could name a probe; got {prefix!r}"
                )
        elif prefix:
            raise ValueError("path_prefix applies only to envoy")
        names: set[str] = set()
        for fact, header in self.identity_headers:
            if fact not in IDENTITY_FACTS:
                raise ValueError(
                    f"identity_headers: {fact!r} is not one of {', '.join(IDENTITY_FACTS)}"
                )
            if not _TOKEN.fullmatch(header) or header.lower() in names:
                raise ValueError(f"identity_headers: {header!r} is not a new header name")
            names.add(header.lower())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ForwardAuthSettings:
        """``DPOP_GUARD_FORWARD_AUTH_PROXY`` (required), ``..._PATH_PREFIX``,
        ``..._IDENTITY_HEADERS`` (``fact=Header-Name`` items, e.g.
        ``subject=X-User jkt=X-Dpop-Jkt``; default: subject, client id, scope and
        interaction id as ``X-Auth-*``), ``..._UNMATCHED`` (``protect`` or ``refuse``).

        :raises ConfigurationError: naming the variable that is wrong.
        """
        env = EnvReader(environ, ENV_PREFIX)
        proxy = env.text("FORWARD_AUTH_PROXY")
        if proxy is None:
            raise ConfigurationError(
                ENV_PREFIX + "FORWARD_AUTH_PROXY",
                "is not set",
                f"set it to the proxy in front: {', '.join(FLAVOURS)}",
            )
        pairs: list[tuple[str, str]] = []
        for item in env.items("FORWARD_AUTH_IDENTITY_HEADERS"):
            fact, sep, header = item.partition("=")
            if not sep:
                raise ConfigurationError(
                    ENV_PREFIX + "FORWARD_AUTH_IDENTITY_HEADERS",
                    f"{item!r} is not fact=Header-Name",
                )
            pairs.append((fact.strip().lower(), header.strip()))
        flavour = env.choice("FORWARD_AUTH_PROXY", FLAVOURS, "nginx")
        prefix = env.text("FORWARD_AUTH_PATH_PREFIX", "") or ""
        unmatched = env.choice("FORWARD_AUTH_UNMATCHED", UNMATCHED, "protect")
        try:
            return cls(
                proxy=flavour,  # type: ignore[arg-type]
                unmatched=unmatched,  # type: ignore[arg-type]
                path_prefix=prefix,
                identity_headers=tuple(pairs) or DEFAULT_IDENTITY_HEADERS,
            )
        except ValueError as exc:
            field = "PATH_PREFIX" if "path_prefix" in str(exc) else "IDENTITY_HEADERS"
            raise ConfigurationError(ENV_PREFIX + "FORWARD_AUTH_" + field, str(exc)) from None


def certificate_headers(environ: Mapping[str, str]) -> tuple[bytes, ...]:
    """The client-certificate headers the configured source reads (handed on as sent).

    :raises ConfigurationError: ``asgi-tls``, whose certificate is the proxy's connection's.
    """
    env = EnvReader(environ, ENV_PREFIX)
    source = env.text("CLIENT_CERT_SOURCE")
    if source is None:
        return ()
    if source == "nginx":
        header = env.text("CLIENT_CERT_HEADER")
        return (header.lower().encode(),) if header else ()
    if source == "asgi-tls":
        raise ConfigurationError(
            ENV_PREFIX + "CLIENT_CERT_SOURCE",
            "is asgi-tls, but behind a proxy the TLS connection is the proxy's",
            "set it to the header the proxy passes the client's certificate in",
        )
    return _CERTIFICATE_HEADERS.get(source, ())
