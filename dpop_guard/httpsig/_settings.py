"""RFC 9421 message signing from the environment: what :func:`dpop_guard.from_env` hands to
:class:`~dpop_guard.httpsig.HTTPSignatureMiddleware`, so an operator switches it on without
code.

- ``DPOP_GUARD_HTTPSIG``: ``off`` (the default: nothing is added), ``optional`` or
  ``required`` for every path, or space-separated ``prefix=mode`` pairs
  (``/payments=required /health=off``); a path that no prefix matches is ``required``
  (the middleware's rule: fail closed), so list ``/=off`` to leave the rest alone.
- ``DPOP_GUARD_HTTPSIG_CLIENT_JWKS``: the clients' public keys, as JSON: a JWK Set
  (``{"keys": [...]}``, any client's key found by ``keyid``), or ``{client_id: JWK Set}``
  (each client's own keys, matched with the access token's ``client_id``). Required.
- ``DPOP_GUARD_HTTPSIG_SIGNING_KEY``: the resource server's private JWK (with ``kid``, sent
  as ``keyid``; ``alg`` PS256 or PS512 for RSA), as JSON; unset: responses are not signed.
- ``DPOP_GUARD_HTTPSIG_UNSIGNED_RESPONSES``: path prefixes whose responses are never signed
  (endless streams).
- ``DPOP_GUARD_HTTPSIG_MAX_BODY_BYTES`` (default 1 MiB), ``_MAX_RESPONSE_BYTES`` (1 MiB): the
  largest request body verified as it streams, and response body held to be signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk as jose_jwk
from joserfc.errors import JoseError

from .._env import ConfigurationError, EnvReader
from ..replay import ReplayStore
from ..settings import ENV_NAMES
from ._keys import KeySource, SigningKey, StaticJWKS
from ._middleware import Mode

__all__ = ["HTTPSignatureSettings"]

_PREFIX: Final = "DPOP_GUARD_HTTPSIG"
_MODES: Final = ("off", "optional", "required")
_DEFAULT_BOUND: Final = 1 << 20
_PRIVATE: Final = (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)


def _mode(text: str) -> Mode | dict[str, Mode]:
    words = text.split()
    if len(words) == 1 and "=" not in words[0]:
        return _one_mode(words[0])
    modes: dict[str, Mode] = {}
    for word in words:
        prefix, sep, mode = word.partition("=")
        if not sep or not prefix.startswith("/") or prefix in modes:
            raise ConfigurationError(
                _PREFIX,
                f"must be one of {', '.join(_MODES)}, or prefix=mode pairs; got {word!r}",
                "e.g. DPOP_GUARD_HTTPSIG='/payments=required /=off'",
            )
        modes[prefix] = _one_mode(mode)
    return modes


def _one_mode(word: str) -> Mode:
    if word.lower() not in _MODES:
        raise ConfigurationError(_PREFIX, f"must be one of {', '.join(_MODES)}; got {word!r}")
    return cast(Mode, word.lower())


def _signing_key(jwk: dict[str, Any]) -> SigningKey:
    name = _PREFIX + "_SIGNING_KEY"
    try:
        key = jose_jwk.import_key(jwk)
        private = key.private_key
    except (JoseError, ValueError, TypeError) as exc:
        raise ConfigurationError(name, "must be a private JWK (EC P-256, Ed25519 or RSA)") from exc
    if not isinstance(private, _PRIVATE) or not key.kid:
        raise ConfigurationError(
            name, "must be a private EC P-256, Ed25519 or RSA JWK with a kid (sent as keyid)"
        )
    try:
        return SigningKey(private, key.kid, jwk.get("alg"))
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(name, str(exc)) from None


def _key_source(jwks: dict[str, Any]) -> KeySource:
    name = _PREFIX + "_CLIENT_JWKS"
    try:
        if "keys" in jwks:
            return StaticJWKS(jwks)
        if not all(isinstance(v, dict) for v in jwks.values()):
            raise ValueError('must be a JWK Set or {"client_id": JWK Set, ...}')
        return StaticJWKS.per_client(jwks)
    except ValueError as exc:
        raise ConfigurationError(name, str(exc)) from None


@dataclass(frozen=True, slots=True)
class HTTPSignatureSettings:
    """The middleware's configuration, read from the environment (see the module)."""

    mode: Mode | dict[str, Mode]
    key_source: KeySource
    signing_key: SigningKey | None
    unsigned_responses: tuple[str, ...]
    max_body_bytes: int
    max_response_bytes: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> HTTPSignatureSettings | None:
        """The settings, or ``None`` when ``DPOP_GUARD_HTTPSIG`` is unset or ``off`` (then
        none of the others may be set).

        :raises ConfigurationError: naming the variable.
        """
        env = EnvReader(environ, _PREFIX)
        text = env.text("")
        mode = _mode(text) if text else "off"
        if mode == "off":
            for name in ENV_NAMES:  # the one list of variables, in dpop_guard.settings
                if name.startswith("HTTPSIG_") and env.is_set(name.removeprefix("HTTPSIG")):
                    raise ConfigurationError(
                        "DPOP_GUARD_" + name, f"is set but {_PREFIX} is off", f"set {_PREFIX}"
                    )
            return None
        jwks = env.json_object("_CLIENT_JWKS", what="a JWK Set in JSON")
        if jwks is None:
            raise ConfigurationError(
                _PREFIX + "_CLIENT_JWKS",
                "is required when message signatures are verified: the clients' public keys",
            )
        signing = env.json_object("_SIGNING_KEY", what="a private JWK in JSON", secret=True)
        names = ("_MAX_BODY_BYTES", "_MAX_RESPONSE_BYTES")
        bounds = [env.integer(name, _DEFAULT_BOUND) for name in names]
        for name, value in zip(names, bounds, strict=True):
            if value < 0:
                raise ConfigurationError(_PREFIX + name, "must not be negative")
        unsigned = env.items("_UNSIGNED_RESPONSES")
        if any(not p.startswith("/") for p in unsigned):
            raise ConfigurationError(
                _PREFIX + "_UNSIGNED_RESPONSES", "must be path prefixes starting with '/'"
            )
        return cls(
            mode=mode,
            key_source=_key_source(jwks),
            signing_key=None if signing is None else _signing_key(signing),
            unsigned_responses=unsigned,
            max_body_bytes=bounds[0],
            max_response_bytes=bounds[1],
        )

    def middleware_options(
        self, *, public_url: str | None, replay_store: ReplayStore
    ) -> dict[str, Any]:
        """Keyword arguments for :class:`~dpop_guard.httpsig.HTTPSignatureMiddleware`.

        :param public_url: the guard's public URL; its origin is what ``@target-uri`` and
            ``@authority`` are built from (``None``: the request's own).
        :param replay_store: the guard's, so a signature replayed on another node is seen.
        """
        origin = None
        if public_url is not None:
            scheme, _, rest = public_url.partition("://")
            origin = f"{scheme}://{rest.split('/', 1)[0]}"
        return {
            "key_source": self.key_source,
            "signing_key": self.signing_key,
            "mode": self.mode,
            "max_body_bytes": self.max_body_bytes,
            "max_response_bytes": self.max_response_bytes,
            "unsigned_responses": self.unsigned_responses,
            "public_url": origin,
            "replay_store": replay_store,
        }
