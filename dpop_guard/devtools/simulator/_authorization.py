"""The simulator's authorization-server APIs: ``/pushed_auth_req``, ``/auth/authorization``,
``/auth/authorization/issue``, ``/auth/authorization/fail`` and ``/auth/token``.

They answer as Authlete documents (HTTP 200, the decision in ``action``, the body for the
client in ``responseContent``), on both API versions (V2 ``/api/...`` with Basic
``apiKey:apiSecret``; V3 ``/api/{serviceId}/...`` with a Bearer service token), and they
enforce the configuration of Authlete's FAPI 2.0 guide. Each rule is a setting of
:class:`SimService` or :class:`SimClient` (Authlete's console names in the comments):

- grant type ``AUTHORIZATION_CODE`` and response type ``code`` (``supportedGrantTypes``,
  ``supportedResponseTypes``, the client's ``grantTypes``/``responseTypes``);
- the RFC 9207 ``iss`` response parameter (``issSuppressed`` false);
- client authentication ``PRIVATE_KEY_JWT`` (``tokenAuthMethod``) with PS256, ES256 or
  EdDSA (``tokenAuthSignAlg``), ``nbf`` required, ``aud`` one of the issuer, the token
  endpoint or the PAR endpoint, ``jti`` single-use, ``exp`` bounded;
- PKCE with S256 (``pkceRequired``, ``pkceS256Required``);
- PAR (``parRequired``), its ``request_uri`` single-use and short-lived
  (``pushedAuthReqDuration``);
- a confidential client (``clientType``) with registered redirect URIs;
- the FAPI 2.0 scope attribute ``fapi2=sp`` (on ``read:accounts``): a request for such a
  scope gets PAR, PKCE S256 and DPoP required whatever the service-wide flags say;
- at the token endpoint a DPoP proof (RFC 9449) that binds the token to its key: the
  token's ``jkt`` is the RFC 7638 thumbprint of the proof's key, as Authlete computes it.

Issued tokens are stored through :meth:`TokenStore.create_token`, the same call as
``/auth/token/create``, so ``/auth/introspection`` treats them like any other.

The proof and assertion checks use joserfc, independently of :mod:`dpop_guard.proof`, so
the two cross-check each other. Where Authlete's result codes are not published the codes
here are ours, marked ``[U]``; clients must key on ``action``, never on ``resultCode``.
A DPoP proof sent to ``/pushed_auth_req`` binds the code to its key (RFC 9449 §10); the
token request must then use the same key. The request's ``resource`` (RFC 8707, absolute
URIs, repeatable), ``acr_values`` (RFC 9470) and ``authorization_details`` (RFC 9396, a
JSON array of objects with a ``type``) are kept with the request; ``/auth/authorization/issue``
takes Authlete's ``acr``, ``authTime`` and ``consentedClaims``; the issued token carries
them all, as ``/auth/introspection`` then reports. Deliberately not done: refresh tokens,
``id_token``/OpenID Connect, JAR request objects, the ``dpop_jkt`` parameter, mTLS client
authentication and certificate-bound tokens. Issued tokens expire by the simulator's wall
clock (as minted ones do); ``AuthorizationService.clock`` drives every other time check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal, Protocol
from urllib.parse import parse_qsl, urlencode, urlsplit

from joserfc import jwk as jose_jwk
from joserfc import jws
from joserfc.errors import JoseError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._jose import eddsa_accepted

__all__ = [
    "MAX_API_BODY",
    "AuthorizationService",
    "SimClient",
    "SimService",
    "TokenStore",
    "authorization_routes",
    "details_elements",
]

JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REQUEST_URI_PREFIX: Final = "urn:ietf:params:oauth:request_uri:"
FAPI2_ALGS: Final = ("PS256", "ES256", "EdDSA")
DPOP_ALGS: Final = ("PS256", "ES256", "EdDSA", "ES384", "ES512", "PS384", "PS512")
MAX_JWT_BYTES: Final = 8192  # bounded before any base64 or signature work
MAX_PARAMETERS_BYTES: Final = 16384
MAX_FIELDS: Final = 64
MAX_API_BODY: Final = 65536
MAX_RSA_BYTES: Final = 512  # 4096-bit moduli at most: bounded before any RSA work
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 §4.1 and §4.2
MAX_KEYS: Final = 10  # a client's JWKS is tried key by key only up to this many
_ERROR_URI: Final = "https://docs.authlete.com/#"

TokenAuthMethod = Literal["PRIVATE_KEY_JWT", "CLIENT_SECRET_BASIC", "NONE"]
ClientType = Literal["CONFIDENTIAL", "PUBLIC"]


class TokenStore(Protocol):
    """What these routes need of the simulator's state: its API credentials and the call
    behind ``/auth/token/create``."""

    service_id: str
    api_secret: str
    service_token: str

    def create_token(
        self,
        *,
        subject: str | None,
        scopes: tuple[str, ...] | list[str],
        lifetime: float = 3600.0,
        jkt: str | None = None,
        client_id: int = ...,
        refreshable: bool = False,
        resources: tuple[str, ...] | list[str] = ...,
        acr: str | None = ...,
        auth_time: int | None = ...,
        authorization_details: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = ...,
        consented_claims: tuple[str, ...] | list[str] = ...,
    ) -> str:
        """Store a new access token and return it."""
        ...


MAX_DETAILS: Final = 32  # authorization_details elements


def details_elements(value: object) -> list[dict[str, Any]] | None:
    """RFC 9396 ``authorization_details`` as Authlete takes them: a list of objects each
    with a string ``type``, or Authlete's ``{"elements": [...]}`` wrapper; ``None`` when
    absent.

    :raises ValueError: for anything else, or more than :data:`MAX_DETAILS` elements.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        value = value.get("elements")
    if (
        not isinstance(value, list)
        or len(value) > MAX_DETAILS
        or not all(isinstance(item, dict) and isinstance(item.get("type"), str) for item in value)
    ):
        raise ValueError("authorization_details must be a list of objects with a type")
    return value


@dataclass
class SimClient:
    """One registered client, as Authlete's client settings name them.

    :param jwks: the client's public keys (``jwks``), for ``private_key_jwt``.
    :raises ValueError: on a value outside Authlete's sets or a key that is not public.
    """

    client_id: int
    redirect_uris: tuple[str, ...]
    jwks: tuple[Mapping[str, Any], ...]
    client_name: str = "FAPI 2.0 client"
    client_type: ClientType = "CONFIDENTIAL"
    token_auth_method: TokenAuthMethod = "PRIVATE_KEY_JWT"  # noqa: S105 - a method name
    token_auth_sign_alg: str | None = None  # None: any of the service's algorithms
    grant_types: tuple[str, ...] = ("AUTHORIZATION_CODE",)
    response_types: tuple[str, ...] = ("CODE",)
    par_required: bool = True
    dpop_required: bool = True

    def __post_init__(self) -> None:
        if self.client_type not in ("CONFIDENTIAL", "PUBLIC"):
            raise ValueError(f"client_type must be CONFIDENTIAL or PUBLIC: {self.client_type!r}")
        if self.token_auth_method not in ("PRIVATE_KEY_JWT", "CLIENT_SECRET_BASIC", "NONE"):
            raise ValueError(f"unsupported token_auth_method {self.token_auth_method!r}")
        if len(self.jwks) > MAX_KEYS:
            raise ValueError(f"jwks holds more than {MAX_KEYS} keys")
        for key in self.jwks:
            if any(member in key for member in ("d", "p", "q", "k")):
                raise ValueError("jwks must hold public keys only")
        for uri in self.redirect_uris:
            if not urlsplit(uri).scheme or "#" in uri:
                raise ValueError(f"redirect_uris must be absolute, without fragment: {uri!r}")


@dataclass
class SimService:
    """The service's settings, as Authlete's service settings name them. The defaults are
    those of Authlete's FAPI 2.0 guide.

    :param scopes: each supported scope and its attributes; ``{"fapi2": "sp"}`` makes a
        request for it a FAPI 2.0 Security Profile request.
    """

    issuer: str = "https://as.example.com"
    token_endpoint: str = "https://as.example.com/token"  # noqa: S105 - a URL
    pushed_auth_req_endpoint: str = "https://as.example.com/par"
    supported_grant_types: tuple[str, ...] = ("AUTHORIZATION_CODE",)
    supported_response_types: tuple[str, ...] = ("CODE",)
    scopes: Mapping[str, Mapping[str, str]] = field(
        default_factory=lambda: {
            "read:accounts": {"fapi2": "sp"},
            "read:transactions": {"fapi2": "sp"},
            "profile": {},
        }
    )
    iss_suppressed: bool = False
    par_required: bool = True
    pushed_auth_req_duration: int = 60
    pkce_required: bool = True
    pkce_s256_required: bool = True
    token_auth_sign_algs: tuple[str, ...] = FAPI2_ALGS
    client_assertion_nbf_required: bool = True
    client_assertion_max_lifetime: int = 300  # [U] Authlete's bound is not published
    clock_leeway: int = 10
    authorization_code_duration: int = 60
    ticket_duration: int = 600
    access_token_duration: int = 3600
    dpop_algs: tuple[str, ...] = DPOP_ALGS
    dpop_iat_window: int = 60
    dpop_nonce_required: bool = False
    dpop_nonce_duration: int = 60

    def __post_init__(self) -> None:
        for name in ("issuer", "token_endpoint", "pushed_auth_req_endpoint"):
            if urlsplit(getattr(self, name)).scheme not in ("http", "https"):
                raise ValueError(f"{name} must be an absolute http(s) URL")
        unknown = set(self.token_auth_sign_algs) - set(FAPI2_ALGS) - {"PS384", "ES384", "PS512"}
        if unknown or not self.token_auth_sign_algs:
            raise ValueError(f"token_auth_sign_algs: not asymmetric JWS algorithms: {unknown}")
        for name in (
            "pushed_auth_req_duration",
            "client_assertion_max_lifetime",
            "authorization_code_duration",
            "ticket_duration",
            "access_token_duration",
            "dpop_iat_window",
            "dpop_nonce_duration",
        ):
            if not 0 < getattr(self, name) <= 86_400:
                raise ValueError(f"{name} must be between 1 and 86400 seconds")

    def is_fapi2(self, scopes: tuple[str, ...]) -> bool:
        return any(self.scopes.get(s, {}).get("fapi2") == "sp" for s in scopes)


@dataclass
class _Request:
    """An authorization request once checked (from PAR or the query)."""

    client_id: int
    redirect_uri: str
    scopes: tuple[str, ...]
    state: str | None
    code_challenge: str | None
    fapi2: bool
    dpop_jkt: str | None = None
    resources: tuple[str, ...] = ()
    acr_values: tuple[str, ...] = ()
    authorization_details: list[dict[str, Any]] | None = None


@dataclass
class _Code:
    request: _Request
    subject: str
    expires_at: float
    acr: str | None = None
    auth_time: int | None = None
    consented_claims: tuple[str, ...] = ()


@dataclass
class AuthorizationService:
    """The authorization side of the simulator: settings, clients and the short-lived
    records (request URIs, tickets, codes, seen ``jti``). ``clock`` is injectable."""

    service: SimService = field(default_factory=SimService)
    clients: dict[int, SimClient] = field(default_factory=dict)
    clock: Callable[[], float] = time.time
    _request_uris: dict[str, tuple[_Request, float]] = field(default_factory=dict)
    _tickets: dict[str, tuple[_Request, float]] = field(default_factory=dict)
    _codes: dict[str, _Code] = field(default_factory=dict)
    _seen_jti: dict[str, float] = field(default_factory=dict)
    _nonce_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def register(self, client: SimClient) -> SimClient:
        self.clients[client.client_id] = client
        return client

    def _sweep(self, now: float) -> None:
        # Bounded memory: every record carries its expiry; drop the stale ones as we go.
        for store in (self._request_uris, self._tickets):
            for key in [k for k, (_, exp) in store.items() if exp <= now]:
                del store[key]
        for key in [k for k, c in self._codes.items() if c.expires_at <= now]:
            del self._codes[key]
        for key in [k for k, exp in self._seen_jti.items() if exp <= now]:
            del self._seen_jti[key]

    def _first_use(self, key: str, until: float) -> bool:
        if key in self._seen_jti:
            return False
        self._seen_jti[key] = until
        return True

    def nonce(self, now: float) -> str:
        step = int(now) // self.service.dpop_nonce_duration
        mac = hmac.new(self._nonce_key, str(step).encode(), hashlib.sha256).digest()
        return _b64(mac[:18])

    def nonce_ok(self, nonce: object, now: float) -> bool:
        if not isinstance(nonce, str) or not nonce.isascii():
            return False
        step = self.service.dpop_nonce_duration
        return any(hmac.compare_digest(nonce, self.nonce(now - k * step)) for k in (0, 1))


class _Refusal(Exception):
    """One rule broken: the action and the OAuth error for ``responseContent``."""

    def __init__(self, action: str, error: str, code: str, message: str) -> None:
        super().__init__(message)
        self.action, self.error, self.code, self.message = action, error, code, message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _result(action: str, code: str, message: str, content: str | None, **fields: Any) -> Any:
    body = {"resultCode": code, "resultMessage": f"[{code}] {message}", "action": action}
    if content is not None:
        body["responseContent"] = content
    body.update({k: v for k, v in fields.items() if v is not None})
    return body


def _error_content(error: str, code: str, message: str) -> str:
    return json.dumps(
        {
            "error": error,
            "error_description": f"[{code}] {message}",
            "error_uri": f"{_ERROR_URI}{code}",
        }
    )


def _refusal_body(refusal: _Refusal, **fields: Any) -> Any:
    return _result(
        refusal.action,
        refusal.code,
        refusal.message,
        _error_content(refusal.error, refusal.code, refusal.message),
        **fields,
    )


def _parse_parameters(raw: object) -> dict[str, str]:
    """An OAuth form body or query string; each parameter at most once (RFC 6749 §3.1)."""
    if not isinstance(raw, str) or len(raw) > MAX_PARAMETERS_BYTES:
        raise _Refusal(
            "BAD_REQUEST", "invalid_request", "A301201", "The 'parameters' are missing or too long."
        )
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as exc:  # more than MAX_FIELDS parameters
        raise _Refusal("BAD_REQUEST", "invalid_request", "A301203", "Too many parameters.") from exc
    values: dict[str, str] = {}
    for name, value in pairs:
        if name == "resource" and name in values:
            # RFC 8707 §2: repeatable; URIs hold no space, so joining by one is lossless.
            values[name] += " " + value
            continue
        if name in values:
            raise _Refusal(
                "BAD_REQUEST", "invalid_request", "A301202", f"The '{name}' parameter is repeated."
            )
        values[name] = value
    return values


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # NaN would slip through every time window


def _json(raw: bytes) -> Any:
    """Strict JSON: no NaN or Infinity (Python's json accepts them by default)."""
    return json.loads(raw, parse_constant=_refuse_constant)


def _number(value: object) -> float | None:
    """A finite JSON number, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _rsa_bounded(jwk: Mapping[str, Any]) -> bool:
    """Modulus at most 4096 bits, exponent at most 64 bits: RSA cost bounded up front."""
    n, e = jwk.get("n"), jwk.get("e")
    if not isinstance(n, str) or not isinstance(e, str):
        return False
    return len(n) <= -(-MAX_RSA_BYTES * 4 // 3) and len(e) <= 12


def _client_id(raw: object) -> int | None:
    """A numeric client ID as Authlete issues them (int64), or None; bounded before int()."""
    text = str(raw)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 19 else None


def _jwt_parts(token: str, what: str, action: str, error: str) -> tuple[dict[str, Any], Any]:
    """Header and unverified claims of a compact JWS, bounded first."""
    bad = _Refusal(action, error, "A301301", f"The {what} is not a well-formed JWT.")
    if len(token) > MAX_JWT_BYTES or token.count(".") != 2:
        raise bad
    try:
        head_b64, body_b64, _ = token.split(".")
        header = _json(base64.urlsafe_b64decode(head_b64 + "=" * (-len(head_b64) % 4)))
        claims = _json(base64.urlsafe_b64decode(body_b64 + "=" * (-len(body_b64) % 4)))
    except (ValueError, RecursionError) as exc:
        raise bad from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise bad
    return header, claims


class _Endpoints:
    def __init__(self, store: TokenStore, auth: AuthorizationService) -> None:
        self.store = store
        self.auth = auth
        self.registry = jws.JWSRegistry(algorithms=list(DPOP_ALGS))
        # joserfc's default 512-byte header cap refuses every RSA-2048 DPoP proof.
        self.registry.max_header_length = MAX_JWT_BYTES

    # -- the API caller ----------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        store = self.store
        service_id = request.path_params.get("service_id")
        if request.url.path.startswith("/sim/"):  # test hooks: either version's credential
            bearer = f"Bearer {store.service_token}".encode()
            if hmac.compare_digest(request.headers.get("authorization", "").encode(), bearer):
                return True
        if service_id is None:
            pair = f"{store.service_id}:{store.api_secret}".encode()
            expected = "Basic " + base64.b64encode(pair).decode()
        elif service_id != store.service_id:
            return False
        else:
            expected = f"Bearer {store.service_token}"
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), expected.encode())

    async def _body(self, request: Request, api: str) -> dict[str, Any] | Response:
        if not self._authorized(request):
            code = "A001202"
            return JSONResponse(
                {
                    "resultCode": code,
                    "resultMessage": f"[{code}] /{api}, Authorization header is missing.",
                },
                status_code=401,
            )
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_API_BODY:
                break
        try:
            if len(raw) > MAX_API_BODY:
                body: Any = None
            elif request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                body = dict(parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=64))
            else:
                body = _json(raw or b"{}")
        except (ValueError, RecursionError):
            body = None
        if not isinstance(body, dict):
            code = "A001201"
            return JSONResponse(
                {"resultCode": code, "resultMessage": f"[{code}] /{api}, malformed request body."},
                status_code=400,
            )
        return body

    # -- private_key_jwt (RFC 7523, FAPI 2.0 §5.3.2.1) ------------------------------------
    def _authenticate(self, params: dict[str, str], body: dict[str, Any], action: str) -> SimClient:
        service, now = self.auth.service, self.auth.clock()

        def refuse(code: str, message: str) -> _Refusal:
            return _Refusal(action, "invalid_client", code, message)

        assertion = params.get("client_assertion")
        if params.get("client_assertion_type") != JWT_BEARER or not assertion:
            raise refuse("A302301", "The client must authenticate with private_key_jwt.")
        header, claims = _jwt_parts(assertion, "client assertion", action, "invalid_client")
        alg = header.get("alg")
        if alg not in service.token_auth_sign_algs:
            raise refuse("A302302", f"The client assertion algorithm '{alg}' is not allowed.")
        issuer = claims.get("iss")
        claimed = params.get("client_id") or body.get("clientId")
        if not isinstance(issuer, str) or (claimed is not None and str(claimed) != issuer):
            raise refuse("A302303", "The client assertion's iss is not the client ID.")
        number = _client_id(issuer)
        client = self.auth.clients.get(number) if number is not None else None
        if client is None:
            raise refuse("A302304", "The client does not exist.")
        if client.token_auth_method != "PRIVATE_KEY_JWT":  # noqa: S105 - a method name
            raise refuse("A302305", "The client is not registered for private_key_jwt.")
        if client.token_auth_sign_alg is not None and alg != client.token_auth_sign_alg:
            raise refuse(
                "A302306", f"The client must sign its assertions with {client.token_auth_sign_alg}."
            )
        registry = jws.JWSRegistry(algorithms=[str(alg)])
        registry.max_header_length = MAX_JWT_BYTES
        kid = header.get("kid")
        for raw_key in client.jwks:
            if kid is not None and raw_key.get("kid") not in (None, kid):
                continue
            try:
                with eddsa_accepted():
                    jws.deserialize_compact(
                        assertion, jose_jwk.import_key(dict(raw_key)), registry=registry
                    )
                break
            except (JoseError, ValueError):
                continue
        else:
            raise refuse("A302307", "The signature of the client assertion is invalid.")
        if claims.get("sub") != issuer:
            raise refuse("A302308", "The client assertion's sub is not the client ID.")
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences
        allowed = {service.issuer, service.token_endpoint, service.pushed_auth_req_endpoint}
        if not isinstance(audiences, list) or not allowed.intersection(
            a for a in audiences if isinstance(a, str)
        ):
            raise refuse("A302309", "The client assertion's aud is not this server.")
        exp, nbf, leeway = _number(claims.get("exp")), claims.get("nbf"), service.clock_leeway
        bound = service.client_assertion_max_lifetime
        if exp is None:
            raise refuse("A302310", "The client assertion has no exp.")
        if exp <= now - leeway:
            raise refuse("A302311", "The client assertion has expired.")
        if exp > now + bound:
            raise refuse("A302312", f"The client assertion's exp is more than {bound}s ahead.")
        if nbf is None and service.client_assertion_nbf_required:
            raise refuse("A302313", "The client assertion has no nbf.")
        if nbf is not None:
            nbf = _number(nbf)
            if nbf is None or nbf > now + leeway:
                raise refuse("A302314", "The client assertion is not yet valid (nbf).")
            if nbf < now - bound:
                raise refuse("A302315", f"The client assertion's nbf is more than {bound}s old.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise refuse("A302316", "The client assertion has no jti.")
        if not self.auth._first_use(f"assertion:{issuer}:{jti}", exp + leeway):
            raise refuse("A302317", "The client assertion has been used before (jti).")
        return client

    # -- DPoP (RFC 9449 §4.3) ------------------------------------------------------------
    def _dpop_jkt(self, body: dict[str, Any], default_htu: str, action: str) -> str:
        """Verify the proof the AS forwarded; the RFC 7638 thumbprint of its key."""
        service, now = self.auth.service, self.auth.clock()

        def refuse(code: str, message: str) -> _Refusal:
            return _Refusal(action, "invalid_dpop_proof", code, message)

        proof = body.get("dpop")
        if not isinstance(proof, str) or not proof:
            raise refuse("A303301", "A DPoP proof JWT is required.")
        header, claims = _jwt_parts(proof, "DPoP proof", action, "invalid_dpop_proof")
        if header.get("typ") != "dpop+jwt":
            raise refuse("A303302", "The DPoP proof has an invalid typ.")
        if header.get("alg") not in service.dpop_algs:
            raise refuse("A303303", "The DPoP proof's algorithm is not allowed.")
        raw_jwk = header.get("jwk")
        if not isinstance(raw_jwk, dict) or any(m in raw_jwk for m in ("d", "p", "q", "k")):
            raise refuse("A303304", "The DPoP header did not include a public key in JWK format.")
        if raw_jwk.get("kty") == "RSA" and not _rsa_bounded(raw_jwk):
            raise refuse("A303312", "The DPoP proof's RSA key is too large.")
        try:
            with eddsa_accepted():
                key = jose_jwk.import_key(raw_jwk)
                jws.deserialize_compact(proof, key, registry=self.registry)
        except (JoseError, ValueError) as exc:
            raise refuse("A303305", "Signed JWT rejected: Invalid signature") from exc
        htm, htu = body.get("htm") or "POST", body.get("htu") or default_htu
        if claims.get("htm") != htm:
            raise refuse("A303306", "The htm claim does not match.")
        claimed_htu = claims.get("htu")
        if not isinstance(claimed_htu, str) or _strip(claimed_htu) != _strip(str(htu)):
            raise refuse("A303307", "The htu claim does not match.")
        iat = _number(claims.get("iat"))
        if iat is None or abs(now - iat) > service.dpop_iat_window:
            raise refuse("A303308", "The iat claim is out of range.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            raise refuse("A303309", "JWT missing required claims: [jti]")
        jkt = key.thumbprint()
        if service.dpop_nonce_required or body.get("dpopNonceRequired") is True:
            if not self.auth.nonce_ok(claims.get("nonce"), now):
                raise _Refusal(
                    action, "use_dpop_nonce", "A303310", "The DPoP proof must carry a fresh nonce."
                )
        if not self.auth._first_use(f"dpop:{jkt}:{jti}", now + 2 * service.dpop_iat_window):
            raise refuse("A303311", "The DPoP proof has been used before.")
        return jkt

    def _nonce_field(self, body: dict[str, Any]) -> str | None:
        if self.auth.service.dpop_nonce_required or body.get("dpopNonceRequired") is True:
            return self.auth.nonce(self.auth.clock())
        return None

    # -- the authorization request's own rules (RFC 6749 §4.1.1, RFC 7636, FAPI 2.0) -------
    def _check_request(self, params: dict[str, str], client: SimClient, action: str) -> _Request:
        service = self.auth.service

        def refuse(error: str, code: str, message: str) -> _Refusal:
            return _Refusal(action, error, code, message)

        if params.get("client_id") != str(client.client_id):
            raise refuse("invalid_request", "A304201", "The client_id is missing or different.")
        if "request_uri" in params or "request" in params:
            raise refuse("invalid_request", "A304202", "A pushed request may not hold request_uri.")
        if params.get("response_type") != "code" or "CODE" not in service.supported_response_types:
            raise refuse(
                "unsupported_response_type", "A304203", "The response_type must be 'code'."
            )
        if "CODE" not in client.response_types or "AUTHORIZATION_CODE" not in client.grant_types:
            raise refuse("unauthorized_client", "A304204", "The client may not use the code flow.")
        redirect_uri = params.get("redirect_uri")
        if redirect_uri is None or redirect_uri not in client.redirect_uris:
            raise refuse("invalid_request", "A304205", "The redirect_uri is not registered.")
        scopes = tuple(params.get("scope", "").split())
        unknown = [s for s in scopes if s not in service.scopes]
        if not scopes or unknown:
            raise refuse("invalid_scope", "A304206", f"Unsupported scope: {' '.join(unknown)}.")
        fapi2 = service.is_fapi2(scopes)
        if fapi2 and client.client_type != "CONFIDENTIAL":
            raise refuse(
                "unauthorized_client", "A304207", "FAPI 2.0 requires a confidential client."
            )
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge is None and (fapi2 or service.pkce_required):
            raise refuse("invalid_request", "A304208", "The code_challenge is required (PKCE).")
        if challenge is not None:
            if method != "S256" and (fapi2 or service.pkce_s256_required or method != "plain"):
                raise refuse(
                    "invalid_request", "A304209", "The code_challenge_method must be S256."
                )
            if not _UNRESERVED.fullmatch(challenge):
                raise refuse("invalid_request", "A304210", "The code_challenge is malformed.")
        resources = tuple(params.get("resource", "").split())
        for resource in resources:
            if not urlsplit(resource).scheme or "#" in resource:
                raise refuse(
                    "invalid_target", "A304211", "A resource must be an absolute URI."
                )  # RFC 8707 §2
        details: list[dict[str, Any]] | None = None
        if "authorization_details" in params:
            try:
                details = details_elements(_json(params["authorization_details"].encode()))
            except (ValueError, RecursionError) as exc:
                raise refuse(
                    "invalid_authorization_details",
                    "A304212",
                    "The authorization_details are malformed.",
                ) from exc  # RFC 9396 §5
        return _Request(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=params.get("state"),
            code_challenge=challenge,
            fapi2=fapi2,
            resources=resources,
            acr_values=tuple(params.get("acr_values", "").split()),
            authorization_details=details,
        )

    # -- /pushed_auth_req (RFC 9126) -----------------------------------------------------
    async def pushed_auth_req(self, request: Request) -> Response:
        body = await self._body(request, "pushed_auth_req")
        if isinstance(body, Response):
            return body
        auth, now = self.auth, self.auth.clock()
        auth._sweep(now)
        try:
            params = _parse_parameters(body.get("parameters"))
            client = self._authenticate(params, body, "UNAUTHORIZED")
            checked = self._check_request(params, client, "BAD_REQUEST")
            if body.get("dpop"):  # RFC 9449 §10.1: the code is then bound to this key
                checked.dpop_jkt = self._dpop_jkt(
                    body, auth.service.pushed_auth_req_endpoint, "BAD_REQUEST"
                )
        except _Refusal as refusal:
            return JSONResponse(_refusal_body(refusal, dpopNonce=self._nonce_field(body)))
        duration = auth.service.pushed_auth_req_duration
        request_uri = REQUEST_URI_PREFIX + secrets.token_urlsafe(24)
        auth._request_uris[request_uri] = (checked, now + duration)
        content = json.dumps({"expires_in": duration, "request_uri": request_uri})
        return JSONResponse(
            _result(
                "CREATED",
                "A245001",
                "The pushed authorization request was registered.",
                content,
                requestUri=request_uri,
                clientAuthMethod="PRIVATE_KEY_JWT",
                dpopNonce=self._nonce_field(body),
            )
        )

    # -- /auth/authorization -----------------------------------------------------------
    async def authorization(self, request: Request) -> Response:
        body = await self._body(request, "auth/authorization")
        if isinstance(body, Response):
            return body
        auth, now = self.auth, self.auth.clock()
        service = auth.service
        try:
            params = _parse_parameters(body.get("parameters"))
            raw_id = params.get("client_id", "")
            number = _client_id(raw_id)
            client = auth.clients.get(number) if number is not None else None
            if client is None:
                raise _Refusal(
                    "BAD_REQUEST", "invalid_request", "A304301", "The client does not exist."
                )
            request_uri = params.get("request_uri")
            if request_uri is not None:
                # Single use: taken out whatever follows (RFC 9126 §4, FAPI 2.0 §5.3.2.2).
                entry = auth._request_uris.pop(request_uri, None)
                if entry is None or entry[1] <= now:
                    raise _Refusal(
                        "BAD_REQUEST",
                        "invalid_request_uri",
                        "A304302",
                        "The request_uri is unknown, used or expired.",
                    )
                checked = entry[0]
                if checked.client_id != client.client_id:
                    raise _Refusal(
                        "BAD_REQUEST",
                        "invalid_request_uri",
                        "A304303",
                        "The request_uri belongs to another client.",
                    )
            else:
                checked = self._check_request(params, client, "BAD_REQUEST")
                if service.par_required or client.par_required or checked.fapi2:
                    raise _Refusal(
                        "BAD_REQUEST",
                        "invalid_request",
                        "A304304",
                        "A pushed authorization request (PAR) is required.",
                    )
        except _Refusal as refusal:
            return JSONResponse(_refusal_body(refusal))
        ticket = secrets.token_urlsafe(24)
        auth._tickets[ticket] = (checked, now + service.ticket_duration)
        return JSONResponse(
            _result(
                "INTERACTION",
                "A004001",
                "Authlete has successfully issued a ticket to the service.",
                None,
                ticket=ticket,
                client={"clientId": client.client_id, "clientName": client.client_name},
                scopes=[
                    {
                        "name": s,
                        "attributes": [
                            {"key": k, "value": v} for k, v in service.scopes[s].items()
                        ],
                    }
                    for s in checked.scopes
                ],
                redirectUri=checked.redirect_uri,
                state=checked.state,
                clientIdAliasUsed=False,
            )
        )

    def _take_ticket(self, body: dict[str, Any]) -> _Request | None:
        entry = self.auth._tickets.pop(str(body.get("ticket", "")), None)
        if entry is None or entry[1] <= self.auth.clock():
            return None
        return entry[0]

    def _redirect(self, checked: _Request, **values: str) -> str:
        params = dict(values)
        if checked.state is not None:
            params["state"] = checked.state
        if not self.auth.service.iss_suppressed:  # RFC 9207, required by FAPI 2.0
            params["iss"] = self.auth.service.issuer
        sep = "&" if "?" in checked.redirect_uri else "?"
        return f"{checked.redirect_uri}{sep}{urlencode(params)}"

    # -- /auth/authorization/issue and /fail ----------------------------------------------
    async def authorization_issue(self, request: Request) -> Response:
        body = await self._body(request, "auth/authorization/issue")
        if isinstance(body, Response):
            return body
        subject = body.get("subject")
        if not isinstance(subject, str) or not subject:
            # The AS's own mistake: Authlete answers it as a server error [U].
            code, msg = "A004201", "The 'subject' request parameter is missing."
            return JSONResponse(
                _result(
                    "INTERNAL_SERVER_ERROR", code, msg, _error_content("server_error", code, msg)
                )
            )
        checked = self._take_ticket(body)
        if checked is None:
            code, msg = "A004202", "The ticket is unknown, used or expired."
            return JSONResponse(
                _result("BAD_REQUEST", code, msg, _error_content("invalid_request", code, msg))
            )
        acr, auth_time = body.get("acr"), body.get("authTime")
        claims = body.get("consentedClaims") or []
        if (
            not (acr is None or isinstance(acr, str))
            or not (
                auth_time is None
                or (
                    isinstance(auth_time, int)
                    and not isinstance(auth_time, bool)
                    and auth_time >= 0
                )
            )
            or not isinstance(claims, list)
            or not all(isinstance(c, str) for c in claims)
        ):
            code, msg = "A004203", "The acr, authTime or consentedClaims parameter is malformed."
            return JSONResponse(
                _result(
                    "INTERNAL_SERVER_ERROR", code, msg, _error_content("server_error", code, msg)
                )
            )
        code_value = secrets.token_urlsafe(32)
        now = self.auth.clock()
        duration = self.auth.service.authorization_code_duration
        self.auth._codes[code_value] = _Code(
            checked,
            subject,
            now + duration,
            acr=acr or None,
            auth_time=auth_time or int(now),  # Authlete: the time of the authentication
            consented_claims=tuple(claims),
        )
        return JSONResponse(
            _result(
                "LOCATION",
                "A040001",
                "The authorization request was processed successfully.",
                self._redirect(checked, code=code_value),
                authorizationCode=code_value,
            )
        )

    async def authorization_fail(self, request: Request) -> Response:
        body = await self._body(request, "auth/authorization/fail")
        if isinstance(body, Response):
            return body
        checked = self._take_ticket(body)
        if checked is None:
            code, msg = "A004202", "The ticket is unknown, used or expired."
            return JSONResponse(
                _result("BAD_REQUEST", code, msg, _error_content("invalid_request", code, msg))
            )
        code = "A004301"
        msg = "The end-user denied the authorization request."
        location = self._redirect(checked, error="access_denied", error_description=msg)
        return JSONResponse(_result("LOCATION", code, msg, location))

    # -- /auth/token (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 9449 §5) ------------------------
    async def token(self, request: Request) -> Response:
        body = await self._body(request, "auth/token")
        if isinstance(body, Response):
            return body
        auth, now = self.auth, self.auth.clock()
        auth._sweep(now)
        service = auth.service
        code_value = ""
        try:
            params = _parse_parameters(body.get("parameters"))
            grant = params.get("grant_type")
            if grant != "authorization_code" or "AUTHORIZATION_CODE" not in (
                service.supported_grant_types
            ):
                raise _Refusal(
                    "BAD_REQUEST",
                    "unsupported_grant_type",
                    "A305201",
                    f"The grant type '{grant}' is not supported.",
                )
            client = self._authenticate(params, body, "INVALID_CLIENT")
            if "AUTHORIZATION_CODE" not in client.grant_types:
                raise _Refusal(
                    "BAD_REQUEST",
                    "unauthorized_client",
                    "A305202",
                    "The client may not use the authorization code grant.",
                )
            code_value = params.get("code", "")
            record = auth._codes.get(code_value)  # taken below, once every check passed
            if record is None or record.expires_at <= now:
                raise _Refusal(
                    "BAD_REQUEST",
                    "invalid_grant",
                    "A305203",
                    "The authorization code is unknown, used or expired.",
                )
            checked = record.request
            if checked.client_id != client.client_id:
                raise _Refusal(
                    "BAD_REQUEST",
                    "invalid_grant",
                    "A305204",
                    "The authorization code was issued to another client.",
                )
            if params.get("redirect_uri") != checked.redirect_uri:
                raise _Refusal(
                    "BAD_REQUEST", "invalid_grant", "A305205", "The redirect_uri does not match."
                )
            if checked.code_challenge is not None:
                verifier = params.get("code_verifier", "")
                computed = _b64(hashlib.sha256(verifier.encode("ascii", "replace")).digest())
                if not _UNRESERVED.fullmatch(verifier) or not hmac.compare_digest(
                    computed, checked.code_challenge
                ):
                    raise _Refusal(
                        "BAD_REQUEST",
                        "invalid_grant",
                        "A305206",
                        "The code_verifier does not match the code_challenge.",
                    )
            jkt: str | None = None
            if body.get("dpop") or checked.fapi2 or client.dpop_required:
                jkt = self._dpop_jkt(body, service.token_endpoint, "BAD_REQUEST")
            if checked.dpop_jkt is not None and jkt != checked.dpop_jkt:
                raise _Refusal(
                    "BAD_REQUEST",
                    "invalid_dpop_proof",
                    "A305207",
                    "The DPoP key differs from the one used at the PAR endpoint.",
                )
        except _Refusal as refusal:
            if refusal.error != "use_dpop_nonce" and refusal.action != "INVALID_CLIENT":
                # Single use: a code presented wrongly is burnt, except when the client is
                # asked to retry with a nonce (RFC 9449 §8) or failed to authenticate.
                auth._codes.pop(code_value, None)
            return JSONResponse(_refusal_body(refusal, dpopNonce=self._nonce_field(body)))
        del auth._codes[code_value]  # no await since the lookup: the check-and-take is atomic
        lifetime = service.access_token_duration
        token = self.store.create_token(
            subject=record.subject,
            scopes=checked.scopes,
            lifetime=lifetime,
            jkt=jkt,
            client_id=client.client_id,
            resources=checked.resources,
            acr=record.acr,
            auth_time=record.auth_time,
            authorization_details=checked.authorization_details,
            consented_claims=record.consented_claims,
        )
        token_type = "DPoP" if jkt else "Bearer"
        content = {
            "access_token": token,
            "token_type": token_type,
            "expires_in": lifetime,
            "scope": " ".join(checked.scopes),
        }
        return JSONResponse(
            _result(
                "OK",
                "A050001",
                "The token request (grant_type=authorization_code) was processed successfully.",
                json.dumps(content),
                accessToken=token,
                accessTokenDuration=lifetime,
                accessTokenExpiresAt=int((now + lifetime) * 1000),
                tokenType=token_type,
                grantType="AUTHORIZATION_CODE",
                clientId=client.client_id,
                clientAuthMethod="PRIVATE_KEY_JWT",
                subject=record.subject,
                scopes=list(checked.scopes),
                dpopNonce=self._nonce_field(body),
            )
        )

    # -- test hook: register a client over HTTP (for the demo's subprocess simulator) ------
    async def sim_clients(self, request: Request) -> Response:
        body = await self._body(request, "sim/authorization/clients")
        if isinstance(body, Response):
            return body
        try:
            number = _client_id(body["client_id"])
            if number is None:
                raise ValueError("client_id")
            client = SimClient(
                client_id=number,
                redirect_uris=tuple(body["redirect_uris"]),
                jwks=tuple(body["jwks"]["keys"]),
                client_name=str(body.get("client_name", "FAPI 2.0 client")),
            )
            if "service" in body:  # the AS's public URLs, as set in Authlete's console
                urls: dict[str, Any] = {
                    k: str(v)
                    for k, v in body["service"].items()
                    if k in ("issuer", "token_endpoint", "pushed_auth_req_endpoint")
                }
                nonces = {
                    k: v
                    for k, v in body["service"].items()
                    if k in ("dpop_nonce_required", "dpop_nonce_duration")
                }
                required, duration = (
                    nonces.get("dpop_nonce_required"),
                    nonces.get("dpop_nonce_duration"),
                )
                if not (required is None or isinstance(required, bool)) or not (
                    duration is None
                    or (isinstance(duration, int) and not isinstance(duration, bool))
                ):
                    raise TypeError("dpop_nonce_required is a boolean, dpop_nonce_duration seconds")
                # replace() runs SimService's own range checks (ValueError on a bad value).
                self.auth.service = replace(self.auth.service, **urls, **nonces)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return JSONResponse({"error": f"bad client: {type(exc).__name__}"}, status_code=400)
        self.auth.register(client)
        return JSONResponse({"client_id": client.client_id}, status_code=201)


def _strip(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


def authorization_routes(
    store: TokenStore, auth: AuthorizationService | None = None
) -> list[Route]:
    """The routes for both API versions, over ``store`` (the simulator's state: tokens
    issued here are introspected like minted ones) and ``auth`` (settings and clients).

    For example::

        auth = AuthorizationService()
        app = Starlette(routes=[*authorization_routes(state, auth), ...])
    """
    api = _Endpoints(store, auth if auth is not None else AuthorizationService())
    routes = []
    for path, endpoint in (
        ("pushed_auth_req", api.pushed_auth_req),
        ("auth/authorization", api.authorization),
        ("auth/authorization/issue", api.authorization_issue),
        ("auth/authorization/fail", api.authorization_fail),
        ("auth/token", api.token),
    ):
        routes.append(Route(f"/api/{path}", endpoint, methods=["POST"]))
        routes.append(Route(f"/api/{{service_id}}/{path}", endpoint, methods=["POST"]))
    routes.append(Route("/sim/authorization/clients", api.sim_clients, methods=["POST"]))
    return routes
