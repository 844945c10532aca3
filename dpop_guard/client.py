"""Client side: sign DPoP proofs and attach them to httpx requests, and a small FAPI 2.0
client (PAR, PKCE, ``private_key_jwt``, DPoP-bound token requests) to get real tokens.

Used by the demo, the tests and the benchmarks, and meant for our users' clients and
test suites.

A DPoP-protected call::

    signer = ProofSigner.generate("ES256")
    auth = DPoPAuth(signer, access_token)
    httpx.get("https://api.example.com/accounts", auth=auth)

The whole FAPI 2.0 code flow against any RFC 8414 authorization server::

    client = await FAPIClient.discover(http, "https://as.example.com", client_id="app",
        client_key=ProofSigner.generate("PS256"), dpop_key=signer,
        redirect_uri="https://app.example.com/cb")
    started = await client.push_authorization_request(scope="read:accounts")
    # the browser visits started.authorization_url, and comes back to the redirect URI
    tokens = await client.exchange_code(callback_url, started)
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwk as jose_jwk

from ._b64 import b64url_encode
from ._json import DOCUMENT_LIMITS, JSONError, parse_object
from .jwk import jwk_thumbprint
from .proof import DPOP_TYP, compute_ath

if TYPE_CHECKING:
    from .httpsig._client import MessageSigning
    from .httpsig._components import Message
    from .httpsig._keys import KeySource, SigningKey

__all__ = [
    "PKCE",
    "AuthorizationServerMetadata",
    "DPoPAuth",
    "FAPIClient",
    "OAuthError",
    "ProofSigner",
    "PushedAuthorization",
    "TokenResponse",
    "client_assertion",
]

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

_EC_ALGS: Final[dict[str, tuple[str, Callable[[], hashes.HashAlgorithm], int]]] = {
    "P-256": ("ES256", hashes.SHA256, 32),
    "P-384": ("ES384", hashes.SHA384, 48),
    "P-521": ("ES512", hashes.SHA512, 66),
}
_RSA_HASHES: Final[dict[str, Callable[[], hashes.HashAlgorithm]]] = {
    "256": hashes.SHA256,
    "384": hashes.SHA384,
    "512": hashes.SHA512,
}
_CURVES: Final[dict[str, Callable[[], ec.EllipticCurve]]] = {
    "ES256": ec.SECP256R1,
    "ES384": ec.SECP384R1,
    "ES512": ec.SECP521R1,
}


def _uint_b64(value: int) -> str:
    return b64url_encode(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _public_jwk(key: PrivateKey) -> dict[str, str]:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        crv = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}[key.curve.name]
        size = _EC_ALGS[crv][2]
        return {
            "kty": "EC",
            "crv": crv,
            "x": b64url_encode(numbers.x.to_bytes(size, "big")),
            "y": b64url_encode(numbers.y.to_bytes(size, "big")),
        }
    if isinstance(key, rsa.RSAPrivateKey):
        pub = key.public_key().public_numbers()
        return {"kty": "RSA", "n": _uint_b64(pub.n), "e": _uint_b64(pub.e)}
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}


class ProofSigner:
    """Holds a client's private key and signs DPoP proofs with it (RFC 9449 section 4.2).

    :param key: an EC (P-256/384/521), RSA or Ed25519 private key from ``cryptography``.
    :param alg: the JWS algorithm; defaults to ES* for EC, PS256 for RSA, EdDSA for Ed25519.
    """

    def __init__(self, key: PrivateKey, *, alg: str | None = None) -> None:
        self.key = key
        self.public_jwk: Mapping[str, str] = _public_jwk(key)
        if isinstance(key, ec.EllipticCurvePrivateKey):
            default_alg, hash_cls, self._ec_size = _EC_ALGS[self.public_jwk["crv"]]
            self._hash: hashes.HashAlgorithm | None = hash_cls()
        elif isinstance(key, rsa.RSAPrivateKey):
            default_alg = "PS256"
            self._hash = _RSA_HASHES[(alg or default_alg)[2:]]()
        else:
            default_alg, self._hash = "EdDSA", None
        self.alg = alg or default_alg
        self.jkt = jwk_thumbprint(self.public_jwk)
        self._header_b64 = self._encode(
            {"typ": DPOP_TYP, "alg": self.alg, "jwk": dict(self.public_jwk)}
        )

    @classmethod
    def generate(cls, alg: str = "ES256") -> ProofSigner:
        """A signer with a fresh key for ``alg`` (ES256/384/512, PS*/RS*, EdDSA/Ed25519)."""
        key: PrivateKey
        if alg in _CURVES:
            key = ec.generate_private_key(_CURVES[alg]())
        elif alg[:2] in ("PS", "RS") and alg[2:] in _RSA_HASHES:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg in ("EdDSA", "Ed25519"):
            key = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(f"unsupported alg {alg!r}")
        return cls(key, alg=alg)

    @classmethod
    def from_jwk(cls, private_jwk: Mapping[str, Any], *, alg: str | None = None) -> ProofSigner:
        """A signer from a private JWK (``d`` and friends present)."""
        imported = jose_jwk.import_key(dict(private_jwk))
        key = imported.private_key
        if not isinstance(
            key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey)
        ):
            raise ValueError("the JWK is not an EC, RSA or Ed25519 private key")
        return cls(key, alg=alg or private_jwk.get("alg"))

    @staticmethod
    def _encode(obj: Mapping[str, Any]) -> str:
        return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())

    def _signature(self, signing_input: bytes) -> bytes:
        key = self.key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            assert self._hash is not None
            r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(self._hash)))
            return r.to_bytes(self._ec_size, "big") + s.to_bytes(self._ec_size, "big")
        if isinstance(key, rsa.RSAPrivateKey):
            assert self._hash is not None
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(self._hash), salt_length=self._hash.digest_size)
                if self.alg.startswith("PS")
                else padding.PKCS1v15()
            )
            return key.sign(signing_input, pad, self._hash)
        return key.sign(signing_input)

    def sign_raw(self, header: Mapping[str, Any] | None, claims: Mapping[str, Any]) -> str:
        """Sign arbitrary ``claims`` under ``header`` (``None``: the standard DPoP header).
        Tests use this to build proofs that are wrong on purpose."""
        header_b64 = self._header_b64 if header is None else self._encode(header)
        signing_input = f"{header_b64}.{self._encode(claims)}"
        return f"{signing_input}.{b64url_encode(self._signature(signing_input.encode()))}"

    def sign(
        self,
        *,
        htm: str,
        htu: str,
        access_token: str | None = None,
        nonce: str | None = None,
        iat: float | None = None,
        jti: str | None = None,
    ) -> str:
        """A fresh proof for ``htm htu``, with ``ath`` when ``access_token`` is given."""
        claims: dict[str, Any] = {
            "jti": jti or secrets.token_urlsafe(16),
            "htm": htm,
            "htu": htu,
            "iat": int(time.time() if iat is None else iat),
        }
        if access_token is not None:
            claims["ath"] = compute_ath(access_token)
        if nonce is not None:
            claims["nonce"] = nonce
        return self.sign_raw(None, claims)


class DPoPAuth(httpx.Auth):
    """httpx authentication: ``Authorization: DPoP <token>`` and a fresh ``DPoP`` proof on
    every request. A ``DPoP-Nonce`` from the server is remembered per origin and used in
    later proofs; a ``use_dpop_nonce`` answer is retried once with the new nonce.

    With the ``httpsig`` extra, it also speaks the FAPI 2.0 HTTP Signatures profile
    (RFC 9421; see ``docs/message-signing.md``):

    :param signing_key: signs every request (:class:`dpop_guard.httpsig.SigningKey`:
        ES256, PS256 or Ed25519, with its ``keyid``), covering ``@method``,
        ``@target-uri``, ``authorization``, ``dpop`` and, for a request with content, the
        ``content-digest`` it adds; ``created``, ``keyid``, ``tag="fapi-2-request"``.
    :param response_keys: the resource server's public keys (a JWK Set, one JWK with
        its ``kid``, or a :class:`dpop_guard.httpsig.KeySource`): every response must
        then carry a valid ``tag="fapi-2-response"`` signature covering ``@status``, its
        ``content-digest`` (checked against the body), and this request with ``;req``,
        or :class:`~dpop_guard.httpsig.ResponseSignatureError` is raised instead of
        returning it. An error status without any signature (a refusal the server's
        middleware sends unsigned) is returned as it is. Responses are asked for
        uncompressed (their digest is over the bytes sent).
    :param clock: wall-clock seconds, for ``iat``, ``created`` and the response window.
    """

    def __init__(
        self,
        signer: ProofSigner,
        access_token: str | None,
        *,
        signing_key: SigningKey | None = None,
        response_keys: KeySource | Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signer = signer
        self.access_token = access_token
        self.clock = clock
        self._nonces: dict[str, str] = {}
        self._signing: MessageSigning | None = None
        if signing_key is not None or response_keys is not None:
            from .httpsig._client import MessageSigning

            self._signing = MessageSigning.build(signing_key, response_keys)
            self.requires_request_body = signing_key is not None
            self.requires_response_body = response_keys is not None

    def _apply(self, request: httpx.Request, origin: str) -> Message | None:
        htu = str(request.url.copy_with(query=None, fragment=None))
        now = self.clock()
        if self.access_token is not None:
            request.headers["Authorization"] = f"DPoP {self.access_token}"
        request.headers["DPoP"] = self.signer.sign(
            htm=request.method,
            htu=htu,
            access_token=self.access_token,
            nonce=self._nonces.get(origin),
            iat=now,
        )
        if self._signing is None:
            return None
        return self._signing.sign(request, now=int(now))

    def _flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, tuple[httpx.Response, Message | None]]:
        """The requests to send; returns the last response and the request it answers,
        as it was signed."""
        origin = f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"
        sent = self._apply(request, origin)
        response = yield request
        nonce = response.headers.get("dpop-nonce")
        if nonce:
            self._nonces[origin] = nonce
            challenge = response.headers.get("www-authenticate", "")
            if response.status_code in (400, 401) and "use_dpop_nonce" in challenge:
                sent = self._apply(request, origin)
                response = yield request
        return response, sent

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        yield from self._flow(request)

    def sync_auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        if self.requires_request_body:
            request.read()
        flow = self._flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if self._signing is not None:
                self._signing.check_encoding(response)
            if self.requires_response_body:
                response.read()
            try:
                outgoing = flow.send(response)
            except StopIteration as done:
                last, sent = done.value
                break
        if self._signing is not None and sent is not None:
            self._signing.verify_now(last, sent, now=int(self.clock()))

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        if self.requires_request_body:
            await request.aread()
        flow = self._flow(request)
        outgoing = next(flow)
        while True:
            response = yield outgoing
            if self._signing is not None:
                self._signing.check_encoding(response)
            if self.requires_response_body:
                await response.aread()
            try:
                outgoing = flow.send(response)
            except StopIteration as done:
                last, sent = done.value
                break
        if self._signing is not None and sent is not None:
            await self._signing.verify(last, sent, now=int(self.clock()))


# -- the FAPI 2.0 client -----------------------------------------------------------------

JWT_BEARER: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEFAULT_ASSERTION_LIFETIME: Final = 60
MAX_METADATA_BYTES: Final = 65536
"""Bytes of a metadata document, PAR or token response read at most: a hostile or broken
server cannot make the client buffer more (the cap holds while reading, not after)."""


class OAuthError(Exception):
    """An authorization server refused, or answered something we cannot use.

    :param error: the OAuth ``error`` code (RFC 6749 §5.2), or ``invalid_response``.
    :param status: the HTTP status, when the server answered.
    """

    def __init__(self, error: str, description: str = "", *, status: int | None = None) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error, self.description, self.status = error, description, status


@dataclass(frozen=True, slots=True)
class PKCE:
    """An RFC 7636 verifier and its S256 challenge (the only method FAPI 2.0 allows)."""

    verifier: str
    challenge: str
    method: str = "S256"

    @classmethod
    def generate(cls) -> PKCE:
        """A fresh verifier: 64 characters of the unreserved set (RFC 7636 §4.1)."""
        return cls.from_verifier(secrets.token_urlsafe(48))

    @classmethod
    def from_verifier(cls, verifier: str) -> PKCE:
        """The S256 challenge of ``verifier``: base64url(SHA-256(ASCII(verifier))).

        :raises ValueError: when the verifier is not 43 to 128 characters long.
        """
        if not 43 <= len(verifier) <= 128:
            raise ValueError("a code verifier has 43 to 128 characters")
        return cls(verifier, b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest()))


def client_assertion(
    signer: ProofSigner,
    *,
    client_id: str,
    audience: str,
    now: float | None = None,
    lifetime: int = DEFAULT_ASSERTION_LIFETIME,
    kid: str | None = None,
) -> str:
    """A ``private_key_jwt`` client assertion (RFC 7523 §3, FAPI 2.0 §5.3.2.1): ``iss`` and
    ``sub`` the client ID, ``aud`` the issuer, a fresh ``jti``, ``iat``/``nbf`` now and
    ``exp`` ``lifetime`` seconds later, signed by ``signer``'s key (PS256, ES256, EdDSA).
    """
    issued = int(time.time() if now is None else now)
    header: dict[str, Any] = {"alg": signer.alg, "typ": "JWT"}
    if kid is not None:
        header["kid"] = kid
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "jti": secrets.token_urlsafe(16),
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime,
    }
    return signer.sign_raw(header, claims)


@dataclass(frozen=True, slots=True)
class AuthorizationServerMetadata:
    """The members of RFC 8414 metadata this client uses, the rest kept in ``raw``."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    pushed_authorization_request_endpoint: str
    iss_parameter_supported: bool = False
    dpop_signing_alg_values_supported: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_document(
        cls, document: Mapping[str, Any], *, issuer: str
    ) -> AuthorizationServerMetadata:
        """Validate a metadata document fetched for ``issuer``.

        :raises OAuthError: ``invalid_response`` when the issuer differs (RFC 8414 §3.3) or
            an endpoint FAPI 2.0 needs is missing.
        """
        if document.get("issuer") != issuer:
            raise OAuthError("invalid_response", "the metadata issuer is not the one asked for")
        values: dict[str, str] = {}
        for name in (
            "authorization_endpoint",
            "token_endpoint",
            "pushed_authorization_request_endpoint",
        ):
            value = document.get(name)
            if not isinstance(value, str) or urlsplit(value).scheme not in ("http", "https"):
                raise OAuthError("invalid_response", f"the metadata has no usable {name}")
            values[name] = value
        algs = document.get("dpop_signing_alg_values_supported")
        if algs is None:
            algs = []
        if not isinstance(algs, list) or not all(isinstance(a, str) for a in algs):
            raise OAuthError(
                "invalid_response", "dpop_signing_alg_values_supported is not a list of names"
            )
        return cls(
            issuer=issuer,
            iss_parameter_supported=document.get("authorization_response_iss_parameter_supported")
            is True,
            dpop_signing_alg_values_supported=tuple(algs),
            raw=dict(document),
            **values,
        )


@dataclass(frozen=True, slots=True)
class PushedAuthorization:
    """A pushed request (RFC 9126): where to send the browser, and what the callback needs."""

    request_uri: str
    expires_in: int
    authorization_url: str
    state: str
    pkce: PKCE = field(repr=False)


@dataclass(frozen=True, slots=True)
class TokenResponse:
    """The token endpoint's answer (RFC 6749 §5.1); ``token_type`` is ``DPoP`` when bound."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    scope: str | None
    raw: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Answer:
    """A response read in full, but never beyond :data:`MAX_METADATA_BYTES`."""

    status_code: int
    headers: httpx.Headers
    content: bytes

    def json_object(self) -> dict[str, Any] | None:
        """The body as a strict JSON object (no repeated member, NaN or lone surrogate, at
        most 32 levels deep), or ``None`` for anything else."""
        try:
            return parse_object(self.content, DOCUMENT_LIMITS)
        except JSONError:
            return None


async def _request(http: httpx.AsyncClient, method: str, url: str, **options: Any) -> _Answer:
    """Send one request and read the answer, bounded while it arrives.

    Compression is declined (``Accept-Encoding: identity``) and a compressed answer refused:
    a decoder expands a small chunk into megabytes before any cap could look at it.

    :raises OAuthError: ``invalid_response`` for a body over the cap or a compressed one.
    """
    headers = {**options.pop("headers", {}), "Accept-Encoding": "identity"}
    async with http.stream(method, url, headers=headers, **options) as response:
        if response.headers.get("content-encoding", "identity").strip().lower() != "identity":
            raise OAuthError("invalid_response", "a compressed answer", status=response.status_code)
        body = bytearray()
        # Identity only (checked above), so the decoded bytes are the bytes received.
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_METADATA_BYTES:
                raise OAuthError(
                    "invalid_response", "the answer is too large", status=response.status_code
                )
    return _Answer(response.status_code, response.headers, bytes(body))


def _whole_number(value: object) -> int | None:
    """``value`` if it is a JSON integer (not a boolean), else ``None``."""
    return value if type(value) is int else None


def _well_known(issuer: str) -> str:
    # RFC 8414 §3.1: the well-known segment goes between the host and the issuer's path.
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}/.well-known/oauth-authorization-server{path}"


def _error_from(response: _Answer) -> OAuthError:
    body = response.json_object()
    if body is not None and isinstance(body.get("error"), str):
        return OAuthError(
            body["error"], str(body.get("error_description", "")), status=response.status_code
        )
    return OAuthError(
        "invalid_response", f"HTTP {response.status_code}", status=response.status_code
    )


class FAPIClient:
    """A confidential FAPI 2.0 client: PAR with ``private_key_jwt``, PKCE S256, the RFC 9207
    ``iss`` check on the callback, and a token request with a DPoP proof (one retry on
    ``use_dpop_nonce``, RFC 9449 §8). It keeps no session: :meth:`push_authorization_request`
    returns what :meth:`exchange_code` needs.

    :param http: an ``httpx.AsyncClient`` (the caller owns it; no redirects are followed).
    :param client_key: signs the client assertions; ``client_kid`` names it in its header.
    :param dpop_key: the key the tokens are bound to.
    :param assertion_audience: ``aud`` of the assertions; default the issuer, which FAPI 2.0
        requires servers to accept.
    :param signing_key: signs the API calls made with :meth:`auth` (FAPI 2.0 HTTP
        Signatures), and ``response_keys`` verifies their responses: see
        :class:`DPoPAuth`.

    Deliberately not done: refresh tokens, OpenID Connect (``id_token``), JAR, mTLS.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        metadata: AuthorizationServerMetadata,
        *,
        client_id: str,
        client_key: ProofSigner,
        dpop_key: ProofSigner,
        redirect_uri: str,
        client_kid: str | None = None,
        assertion_audience: str | None = None,
        signing_key: SigningKey | None = None,
        response_keys: KeySource | Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.signing_key, self.response_keys = signing_key, response_keys
        self.http, self.metadata = http, metadata
        self.client_id, self.redirect_uri = client_id, redirect_uri
        self.client_key, self.client_kid, self.dpop_key = client_key, client_kid, dpop_key
        self.assertion_audience = assertion_audience or metadata.issuer
        self.clock = clock
        self._nonces: dict[str, str] = {}

    @classmethod
    async def discover(cls, http: httpx.AsyncClient, issuer: str, **options: Any) -> FAPIClient:
        """Read ``issuer``'s RFC 8414 metadata and build the client from it.

        :raises OAuthError: ``invalid_response`` on an unusable document.
        """
        headers = {"Accept": "application/json"}
        response = await _request(http, "GET", _well_known(issuer), headers=headers)
        if response.status_code == 404:
            # RFC 8414 §5: an OpenID provider may publish the same members only under
            # OpenID Connect Discovery's name (appended to the issuer).
            openid = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
            response = await _request(http, "GET", openid, headers=headers)
        if response.status_code != 200:
            raise OAuthError("invalid_response", "no authorization server metadata")
        document = response.json_object()
        if document is None:
            raise OAuthError("invalid_response", "the metadata is not a JSON object")
        return cls(
            http, AuthorizationServerMetadata.from_document(document, issuer=issuer), **options
        )

    def _authentication(self) -> dict[str, str]:
        return {
            "client_id": self.client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": client_assertion(
                self.client_key,
                client_id=self.client_id,
                audience=self.assertion_audience,
                now=self.clock(),
                kid=self.client_kid,
            ),
        }

    async def _post(self, url: str, form: Mapping[str, str]) -> _Answer:
        """POST ``form`` with fresh client authentication and a DPoP proof for ``url``;
        once more with the server's nonce if it asks for one."""
        origin = f"{urlsplit(url).scheme}://{urlsplit(url).netloc}"
        response: _Answer | None = None
        for _ in range(2):
            proof = self.dpop_key.sign(
                htm="POST", htu=url, nonce=self._nonces.get(origin), iat=self.clock()
            )
            response = await _request(
                self.http,
                "POST",
                url,
                data={**form, **self._authentication()},
                headers={"DPoP": proof, "Accept": "application/json"},
            )
            nonce = response.headers.get("dpop-nonce")
            if nonce:
                self._nonces[origin] = nonce
            if not (
                nonce
                and response.status_code in (400, 401)
                and _error_code(response) == "use_dpop_nonce"
            ):
                break
        assert response is not None
        return response

    async def push_authorization_request(
        self, *, scope: str, extra: Mapping[str, str] | None = None
    ) -> PushedAuthorization:
        """Step 1 and 2: push the request (RFC 9126), get the ``request_uri``.

        :raises OAuthError: with the server's ``error`` when it refuses.
        """
        pkce, state = PKCE.generate(), secrets.token_urlsafe(16)
        form = {
            "response_type": "code",
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": pkce.challenge,
            "code_challenge_method": pkce.method,
            **(extra or {}),
        }
        response = await self._post(self.metadata.pushed_authorization_request_endpoint, form)
        if response.status_code not in (200, 201):
            raise _error_from(response)
        body = response.json_object() or {}
        request_uri, expires_in = body.get("request_uri"), _whole_number(body.get("expires_in"))
        if not isinstance(request_uri, str) or not request_uri or expires_in is None:
            raise OAuthError("invalid_response", "the PAR response lacks request_uri/expires_in")
        query = urlencode({"client_id": self.client_id, "request_uri": request_uri})
        endpoint = self.metadata.authorization_endpoint
        url = f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"
        return PushedAuthorization(request_uri, expires_in, url, state, pkce)

    def code_from_callback(self, callback_url: str, pushed: PushedAuthorization) -> str:
        """Step 4: the code from the redirect, once ``state`` and ``iss`` (RFC 9207) match.

        :raises OAuthError: the server's ``error``, or ``invalid_response`` on a mismatch.
        """
        try:
            pairs = parse_qsl(urlsplit(callback_url).query, max_num_fields=64)
        except ValueError as exc:
            raise OAuthError("invalid_response", "the callback has too many parameters") from exc
        params = dict(pairs)
        if len(params) != len(pairs):
            # RFC 6749 §3.1: no parameter twice; which copy a reader takes decides whether
            # the mix-up (iss) and CSRF (state) checks look at the values that are used.
            raise OAuthError("invalid_response", "a callback parameter is repeated")
        if params.get("iss") != self.metadata.issuer:
            # FAPI 2.0 §5.3.3.2: a response without the right iss may be a mix-up attack.
            raise OAuthError("invalid_response", "the iss response parameter is missing or wrong")
        if not secrets.compare_digest(params.get("state", "").encode(), pushed.state.encode()):
            raise OAuthError("invalid_response", "the state does not match")
        if "error" in params:
            raise OAuthError(params["error"], params.get("error_description", ""))
        code = params.get("code")
        if not code:
            raise OAuthError("invalid_response", "the callback has no code")
        return code

    async def exchange_code(self, callback_url: str, pushed: PushedAuthorization) -> TokenResponse:
        """Steps 5 and 6: the token request with ``private_key_jwt``, the PKCE verifier and
        a DPoP proof; the token that comes back is bound to ``dpop_key``.

        :raises OAuthError: the server's ``error``, or ``invalid_response``.
        """
        code = self.code_from_callback(callback_url, pushed)
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": pushed.pkce.verifier,
        }
        response = await self._post(self.metadata.token_endpoint, form)
        if response.status_code != 200:
            raise _error_from(response)
        body = response.json_object()
        if body is None:
            raise OAuthError("invalid_response", "the token response is not a JSON object")
        token, token_type = body.get("access_token"), body.get("token_type")
        if not isinstance(token, str) or not isinstance(token_type, str):
            raise OAuthError("invalid_response", "the token response lacks access_token/token_type")
        if token_type.lower() != "dpop":
            # A Bearer token would be a downgrade FAPI 2.0 forbids (sender-constrained only).
            raise OAuthError("invalid_response", f"expected a DPoP token, got {token_type!r}")
        expires_in, scope = body.get("expires_in"), body.get("scope")
        return TokenResponse(
            access_token=token,
            token_type=token_type,
            expires_in=_whole_number(expires_in),
            scope=scope if isinstance(scope, str) else None,
            raw=body,
        )

    def auth(self, tokens: TokenResponse) -> DPoPAuth:
        """Step 7: httpx authentication for the API calls, with ``dpop_key`` (and the
        message-signing options, when given)."""
        return DPoPAuth(
            self.dpop_key,
            tokens.access_token,
            signing_key=self.signing_key,
            response_keys=self.response_keys,
            clock=self.clock,
        )


def _error_code(response: _Answer) -> str | None:
    body = response.json_object()
    if body is not None and isinstance(body.get("error"), str):
        return str(body["error"])
    challenge = response.headers.get("www-authenticate", "")
    return "use_dpop_nonce" if 'error="use_dpop_nonce"' in challenge else None
