"""An Authlete-compatible stand-in for ``/auth/introspection`` and ``/auth/token/create``.

It speaks Authlete's HTTP API (V2: ``/api/auth/...`` with Basic key:secret; V3:
``/api/{serviceId}/auth/...`` with a Bearer service token), answers HTTP 200 with an
``action``, and checks DPoP bindings itself when sent ``dpop``, ``htm`` and ``htu``, as
described in Authlete's documentation. Its DPoP check is written independently of
:mod:`dpop_guard.proof` (it uses joserfc), so the two cross-check each other.

It is the embedded default for the demo, the tests and the benchmarks; production code
talks to it over real HTTP exactly as it talks to Authlete. Test hooks (latency, faults,
call counts) live under ``/sim/``. Run it with ``python -m dpop_guard.devtools.simulator`` or
``dpop-guard simulate`` (one code path: :func:`dpop_guard.devtools.simulator.main`).

Where Authlete's exact behaviour is not published (result codes for some failures, its
``iat`` window), the choices are marked ``[U]`` as in ``authlete-introspection.md``.

What ``/auth/introspection`` checks, in this order (each only when the request asks):
``token``; existence and expiry; ``subject`` (``FORBIDDEN``, ``invalid_request``);
``scopes`` (``FORBIDDEN``, ``insufficient_scope``); ``resources`` (RFC 8707: a token that
lists resources must cover each one sent, else ``FORBIDDEN``, ``invalid_target`` [U]; a
token issued without resources is not restricted [U]); the certificate binding
(``clientCertificate``, RFC 8705); the DPoP binding (``dpop``, ``htm``, ``htu``) and, when
the service's ``dpop_nonce_required`` (or the request's ``dpopNonceRequired``) is on, the
proof's ``nonce`` (``UNAUTHORIZED``, ``use_dpop_nonce``, with the expected ``dpopNonce``;
every answer then carries ``dpopNonce``); ``acrValues``/``maxAge`` (RFC 9470:
``UNAUTHORIZED``, ``insufficient_user_authentication`` [U]). ``OK`` carries the token's
facts: ``certificateThumbprint``, ``acr``, ``authTime`` (seconds; ``0`` when unknown, as
Authlete's Java DTO sends it), ``resources``/``accessTokenResources``,
``authorizationDetails`` (``{"elements": [...]}``), ``grantId``, ``consentedClaims``,
``clientIdAlias``/``clientIdAliasUsed``.

Every request body is bounded (:data:`MAX_API_BODY` bytes) and parsed as strict JSON
(no ``NaN``; nesting deeper than the parser allows is a malformed body), so a client
never gets a 500.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import anyio
from joserfc import jwk as jose_jwk
from joserfc import jws
from joserfc.errors import JoseError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._authorization import (
    MAX_API_BODY,
    AuthorizationService,
    authorization_routes,
    details_elements,
)
from ._jose import eddsa_accepted as _eddsa_accepted
from ._mtls import check_certificate_binding, confirmation, token_create_thumbprint
from ._rfc7662 import RFC7662_PATH, rfc7662_introspection
from ._signed import JWKS_PATH, JWT_RESPONSE_TYPE, SIGNED_FLAWS
from ._state import DEFAULT_CLIENT_ID, SimToken, SimulatorState

__all__ = ["MAX_API_BODY", "create_simulator_app"]

MAX_LIFETIME: Final = 10 * 365 * 86_400  # seconds: accessTokenDuration is bounded

_ALGS: Final = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
)
_ALGS_PARAM: Final = " ".join(_ALGS)
_ERROR_URI: Final = "https://docs.authlete.com/#"


def _challenge(scheme: str, error: str, code: str, message: str, **extra: str) -> str:
    # Authlete's format: attributes joined by "," with no space.
    parts = [
        f'error="{error}"',
        f'error_description="[{code}] {message}"',
        f'error_uri="{_ERROR_URI}{code}"',
    ]
    parts += [f'{k}="{v}"' for k, v in extra.items()]
    return f"{scheme} " + ",".join(parts)


def _result(action: str, code: str, message: str, content: str, **fields: Any) -> dict[str, Any]:
    return {
        "resultCode": code,
        "resultMessage": f"[{code}] {message}",
        "action": action,
        "responseContent": content,
        **fields,
    }


def _bound_refusal(error: str, code: str, message: str) -> dict[str, Any]:
    """UNAUTHORIZED for a DPoP-bound token, in the DPoP scheme with ``algs``."""
    return _result(
        "UNAUTHORIZED",
        code,
        message,
        _challenge("DPoP", error, code, message, algs=_ALGS_PARAM),
        existent=True,
        usable=True,
        sufficient=True,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _strip_query(url: str) -> str:
    return url.split("#", 1)[0].split("?", 1)[0]


class _ProofError(Exception):
    pass


class _NonceError(_ProofError):
    """The proof lacks the nonce Authlete expects (or carries a stale one)."""


class _BadField(ValueError):
    """A ``/auth/token/create`` field of the wrong type or range."""


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _client_id(raw: object) -> int | None:
    """A numeric client ID as Authlete issues them (int64), bounded before ``int()``."""
    if isinstance(raw, bool):
        return None
    text = str(raw)
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else None


def _str_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if isinstance(value, str):
        value = value.split()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _BadField(f"{name} must be a list of strings")
    return value


def _opt_str(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _BadField(f"{name} must be a string")
    return value


def _facts(record: SimToken) -> dict[str, Any]:
    """What an ``OK`` answer says about the token besides its scopes and expiry."""
    facts: dict[str, Any] = {
        "clientIdAliasUsed": record.client_id_alias_used,
        # Authlete's Java DTO holds authTime in a primitive long: 0 when unknown.
        "authTime": record.auth_time or 0,
    }
    if record.x5t_s256 is not None:
        facts["certificateThumbprint"] = record.x5t_s256
    if record.client_id_alias is not None:
        facts["clientIdAlias"] = record.client_id_alias
    if record.acr is not None:
        facts["acr"] = record.acr
    if record.resources:
        facts["resources"] = list(record.resources)
        facts["accessTokenResources"] = list(record.resources)
    if record.authorization_details is not None:
        facts["authorizationDetails"] = {"elements": list(record.authorization_details)}
    if record.grant_id is not None:
        facts["grantId"] = record.grant_id
    if record.consented_claims:
        facts["consentedClaims"] = list(record.consented_claims)
    return facts


class _Simulator:
    def __init__(self, state: SimulatorState, auth: AuthorizationService) -> None:
        self.state = state
        self.auth = auth
        self.signer = state.signer
        with _eddsa_accepted():
            self.registry = jws.JWSRegistry(algorithms=list(_ALGS))
        # joserfc's default 512-byte header cap refuses every RSA-2048 proof.
        self.registry.max_header_length = 8192

    # -- authentication of the API caller ---------------------------------------------
    def _authorized(self, request: Request, service_id: str | None) -> bool:
        auth = request.headers.get("authorization", "")
        state = self.state
        if service_id is None:  # V2: Basic apiKey:apiSecret
            expected = (
                "Basic "
                + base64.b64encode(f"{state.service_id}:{state.api_secret}".encode()).decode()
            )
        else:  # V3: Bearer service access token, and the path's service id
            if service_id != state.service_id:
                return False
            expected = f"Bearer {state.service_token}"
        return hmac.compare_digest(auth.encode(), expected.encode())

    def _admin(self, request: Request) -> bool:
        """The test hooks accept either API version's credentials."""
        return self._authorized(request, None) or self._authorized(request, self.state.service_id)

    async def _body(self, request: Request) -> dict[str, Any] | None:
        """The request body as a dict, or ``None`` when it is too large or malformed: read
        at most :data:`MAX_API_BODY` bytes, strict JSON, bounded form fields."""
        ctype = request.headers.get("content-type", "")
        raw = b""
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_API_BODY:
                return None
        if ctype.startswith("application/x-www-form-urlencoded"):
            try:
                pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, max_num_fields=64)
            except ValueError:  # UnicodeDecodeError included
                return None
            data: dict[str, Any] = dict(pairs)
            if "scopes" in data:
                data["scopes"] = data["scopes"].split()
            return data
        try:
            value = json.loads(raw or b"{}", parse_constant=_refuse_constant)
        except (ValueError, RecursionError):
            return None
        return value if isinstance(value, dict) else None

    async def _gate(self, request: Request, api: str) -> Response | dict[str, Any]:
        state = self.state
        service_id = request.path_params.get("service_id")
        if not self._authorized(request, service_id):
            code = "A001202"
            return JSONResponse(
                {
                    "resultCode": code,
                    "resultMessage": f"[{code}] /{api}, Authorization header is missing.",
                },
                status_code=401,
            )
        state.calls[api] += 1
        if state.latency:
            await anyio.sleep(state.latency)
        fault = state._take_fault()
        if fault == "hang":
            await anyio.sleep(3600)
        if fault == "http_500":
            return JSONResponse(
                {
                    "resultCode": "A001101",
                    "resultMessage": f"[A001101] /{api}, Authlete Server error.",
                },
                status_code=500,
            )
        if fault == "http_429":
            return JSONResponse(
                {"resultCode": "A001103", "resultMessage": "[A001103] Too many requests."},
                status_code=429,
            )
        if fault == "garbage":
            return Response(
                b"<html><body>502 Bad Gateway</body></html>", 200, media_type="text/html"
            )
        if fault == "truncated":
            return Response(b'{"action":"OK","subject":"al', 200, media_type="application/json")
        body = await self._body(request)
        if body is None:
            return JSONResponse(
                {
                    "resultCode": "A001201",
                    "resultMessage": f"[A001201] /{api}, the request body is malformed.",
                },
                status_code=400,
            )
        if fault == "internal_error":
            code = "A001101"
            return JSONResponse(
                _result(
                    "INTERNAL_SERVER_ERROR",
                    code,
                    "Authlete Server error.",
                    _challenge("Bearer", "server_error", code, "Authlete Server error."),
                )
            )
        return body

    # -- /auth/introspection ---------------------------------------------------------
    async def introspection(self, request: Request) -> Response:
        gated = await self._gate(request, "auth/introspection")
        if isinstance(gated, Response):
            return gated
        # The log is for tests: what was sent, with the token and the proof hashed.
        entry = {k: v for k, v in gated.items() if k not in ("token", "dpop")}
        for secret_field in ("token", "dpop"):
            if gated.get(secret_field):
                entry[f"{secret_field}_sha256"] = hashlib.sha256(
                    str(gated[secret_field]).encode()
                ).hexdigest()
        self.state.log.append(entry)
        return JSONResponse(self._introspect(gated))

    def _nonce_required(self, body: dict[str, Any]) -> bool:
        return self.auth.service.dpop_nonce_required or body.get("dpopNonceRequired") is True

    def _introspect(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = self._decide(body)
        if self._nonce_required(body):
            # When nonces are required every answer names the one expected next.
            answer["dpopNonce"] = self.auth.nonce(self.state.clock())
        return answer

    def _decide(self, body: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        now = state.clock()
        token = body.get("token")
        if not isinstance(token, str) or not token:
            code, msg = "A056201", "The request does not contain a valid access token."  # [U]
            return _result(
                "BAD_REQUEST", code, msg, _challenge("Bearer", "invalid_request", code, msg)
            )
        record = state.tokens.get(token)
        if record is None:
            code, msg = "A056202", "The access token does not exist."  # [U]
            return _result(
                "UNAUTHORIZED",
                code,
                msg,
                _challenge("Bearer", "invalid_token", code, msg),
                existent=False,
                usable=False,
                sufficient=False,
                refreshable=False,
            )
        scheme = "DPoP" if record.jkt else "Bearer"
        extra = {"algs": _ALGS_PARAM} if record.jkt else {}
        if record.expires_at <= now:
            # Authlete deletes an expired token on first sight: the next call says "does
            # not exist".
            del state.tokens[token]
            if record.refreshable:
                code = "A065301"
                msg = (
                    "The access token has expired but it can be refreshed using the "
                    "corresponding refresh token."
                )
            else:
                code, msg = "A065302", "The access token has expired."  # [U]
            return _result(
                "UNAUTHORIZED",
                code,
                msg,
                _challenge(scheme, "invalid_token", code, msg, **extra),
                existent=True,
                usable=False,
                sufficient=False,
                refreshable=record.refreshable,
            )
        known = {
            "existent": True,
            "usable": True,
            "scopes": list(record.scopes),
            "subject": record.subject,
            "clientId": record.client_id,
        }
        subject = body.get("subject")
        if subject is not None and subject != record.subject:
            code, msg = "A064301", "The subject does not match the access token."  # [U] code
            return _result(
                "FORBIDDEN",
                code,
                msg,
                _challenge(scheme, "invalid_request", code, msg),
                sufficient=True,
                **known,
            )
        required = body.get("scopes") or []
        if isinstance(required, str):
            required = required.split()
        if not isinstance(required, list):
            required = [str(required)]
        missing = [s for s in required if s not in record.scopes]
        if missing:
            code = "A064302"
            msg = f"The access token does not cover the required scope '{missing[0]}'."
            return _result(
                "FORBIDDEN",
                code,
                msg,
                _challenge(
                    scheme, "insufficient_scope", code, msg, scope=" ".join(map(str, required))
                ),
                sufficient=False,
                **known,
            )
        resources = body.get("resources") or []
        if not isinstance(resources, list):
            resources = [resources]
        uncovered = [r for r in resources if record.resources and r not in record.resources]
        if uncovered:
            code = "A064303"  # [U] code and error
            msg = "The access token does not cover the required resource."
            return _result(
                "FORBIDDEN",
                code,
                msg,
                _challenge(scheme, "invalid_target", code, msg),
                sufficient=True,
                **known,
            )
        refusal = check_certificate_binding(record.x5t_s256, body)
        if refusal is not None:
            return _result(
                "UNAUTHORIZED",
                refusal.code,
                refusal.message,
                _challenge("Bearer", "invalid_token", refusal.code, refusal.message),
                sufficient=True,
                **known,
            )
        dpop = body.get("dpop")
        if record.jkt is not None:
            if not dpop or not isinstance(dpop, str):
                return _bound_refusal(
                    "invalid_token", "A065308", "Expected a DPoP header but none was provided."
                )
            try:
                self._check_proof(dpop, body, token, record.jkt)
            except _NonceError as exc:
                return _bound_refusal("use_dpop_nonce", "A065313", str(exc))  # [U] code
            except _ProofError as exc:
                return _bound_refusal("invalid_dpop_proof", "A065311", str(exc))  # [U] code
        elif dpop and not state.accept_unbound_with_proof:
            code, msg = "A065312", "The access token is not bound to a DPoP key."  # [U]
            return _result(
                "UNAUTHORIZED", code, msg, _challenge("Bearer", "invalid_token", code, msg)
            )
        step_up = self._step_up(record, body, now)
        if step_up is not None:
            code = "A065314"  # [U] code and answer
            params = {
                k: v
                for k, v in (
                    ("acr_values", " ".join(map(str, body.get("acrValues") or []))),
                    ("max_age", str(body.get("maxAge") or "")),
                )
                if v
            }
            return _result(
                "UNAUTHORIZED",
                code,
                step_up,
                _challenge(scheme, "insufficient_user_authentication", code, step_up, **params),
                sufficient=True,
                **known,
            )
        code = "A056001"
        return _result(
            "OK",
            code,
            "The access token is valid.",
            'Bearer error="invalid_request"',
            clientId=record.client_id,
            subject=record.subject,
            scopes=list(record.scopes),
            existent=True,
            usable=True,
            sufficient=True,
            refreshable=record.refreshable,
            expiresAt=int(record.expires_at * 1000),
            grantType=record.grant_type,
            properties=[],
            **_facts(record),
        )

    @staticmethod
    def _step_up(record: SimToken, body: dict[str, Any], now: float) -> str | None:
        """RFC 9470: why the token's authentication falls short, or ``None``."""
        acr_values = body.get("acrValues") or []
        if isinstance(acr_values, str):  # a form body: space-separated, as scopes are
            acr_values = acr_values.split()
        if not isinstance(acr_values, list):
            acr_values = [acr_values]
        if acr_values and record.acr not in acr_values:
            return "The authentication context of the access token is not acceptable."
        max_age = body.get("maxAge")
        if isinstance(max_age, str) and max_age.isascii() and max_age.isdigit():
            max_age = int(max_age[:9])  # a form body; bounded before int()
        if isinstance(max_age, int) and not isinstance(max_age, bool) and max_age > 0:
            if record.auth_time is None or now - record.auth_time > max_age:
                return "The user authentication of the access token is too old."
        return None

    def _check_proof(self, proof: str, body: dict[str, Any], token: str, jkt: str) -> None:
        with _eddsa_accepted():
            self._verify_proof(proof, body, token, jkt)

    def _verify_proof(self, proof: str, body: dict[str, Any], token: str, jkt: str) -> None:
        try:
            compact = jws.extract_compact(proof.encode(), registry=self.registry)
            header = compact.protected
            if header.get("typ") != "dpop+jwt":
                raise _ProofError("The DPoP proof has an invalid typ.")
            raw_jwk = header.get("jwk")
            if not isinstance(raw_jwk, dict) or "d" in raw_jwk:
                raise _ProofError("The DPoP header did not include a public key in JWK format.")
            key = jose_jwk.import_key(raw_jwk)
            verified = jws.deserialize_compact(proof, key, registry=self.registry)
            claims = json.loads(verified.payload)
        except JoseError as exc:
            raise _ProofError("Signed JWT rejected: Invalid signature") from exc
        except ValueError as exc:
            raise _ProofError("The DPoP proof is malformed.") from exc
        if not isinstance(claims, dict):
            raise _ProofError("The DPoP proof is malformed.")
        if claims.get("htm") != body.get("htm"):
            raise _ProofError("The htm claim does not match.")
        htu, expected = claims.get("htu"), body.get("htu")
        if (
            not isinstance(htu, str)
            or not isinstance(expected, str)
            or _strip_query(htu) != _strip_query(expected)
        ):
            raise _ProofError("The htu claim does not match.")
        iat = claims.get("iat")
        now = self.state.clock()
        if not isinstance(iat, (int, float)) or abs(now - iat) > self.state.iat_skew:
            raise _ProofError("The iat claim is out of range.")
        if claims.get("ath") != _b64(hashlib.sha256(token.encode()).digest()):
            raise _ProofError(
                "JWT missing required claims: [ath]"
                if "ath" not in claims
                else "The ath claim does not match."
            )
        if key.thumbprint() != jkt:
            raise _ProofError(
                "Thumbprint of the provided DPoP key does not match the expected DPoP thumbprint."
            )
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _ProofError("JWT missing required claims: [jti]")
        seen = self.state._seen_jti
        if len(seen) > 100_000:
            for old in [k for k, t in seen.items() if t < now - 2 * self.state.iat_skew]:
                del seen[old]
        replay_key = f"{jkt}:{jti}"
        if replay_key in seen:
            raise _ProofError("The DPoP proof has been used before.")
        if self._nonce_required(body) and not self.auth.nonce_ok(claims.get("nonce"), now):
            # Checked last: a proof refused for its nonce is not recorded, so the client's
            # retry with the nonce is a new proof anyway.
            raise _NonceError("The DPoP proof does not carry the expected nonce.")
        seen[replay_key] = now

    # -- /auth/introspection/standard (RFC 7662 helper) -------------------------------
    async def introspection_standard(self, request: Request) -> Response:
        gated = await self._gate(request, "auth/introspection/standard")
        if isinstance(gated, Response):
            return gated
        parameters = gated.get("parameters")
        if not isinstance(parameters, str):
            code, msg = "A145201", "The 'parameters' request parameter is missing."  # [U]
            return JSONResponse(
                _result(
                    "BAD_REQUEST",
                    code,
                    msg,
                    json.dumps({"error": "invalid_request", "error_description": msg}),
                )
            )
        signed = gated.get("httpAcceptHeader") == JWT_RESPONSE_TYPE
        rs_uri, sign_alg = gated.get("rsUri"), gated.get("introspectionSignAlg")
        if signed and (not isinstance(rs_uri, str) or not rs_uri):
            code, msg = "A145202", "'rsUri' is required for a JWT introspection response."  # [U]
            return JSONResponse(
                _result(
                    "BAD_REQUEST",
                    code,
                    msg,
                    json.dumps({"error": "invalid_request", "error_description": msg}),
                )
            )
        if signed and sign_alg not in self.signer.algorithms:
            # [U] Authlete defaults to RS256; the simulator signs FAPI algorithms only.
            code, msg = "A145203", "'introspectionSignAlg' must be ES256 or PS256 here."
            return JSONResponse(
                _result(
                    "BAD_REQUEST",
                    code,
                    msg,
                    json.dumps({"error": "invalid_request", "error_description": msg}),
                )
            )
        token = dict(parse_qsl(parameters)).get("token", "")
        content = self.standard_content(token, rs_uri if isinstance(rs_uri, str) else None)
        code = "A145001"
        message = f"Introspection was performed successfully (active={content['active']})."
        flaw = self.state.signed_flaw
        if not signed or flaw == "unsigned":
            return JSONResponse(_result("OK", code, message, json.dumps(content)))
        assert isinstance(sign_alg, str) and isinstance(rs_uri, str)
        jwt = self.signer.sign(
            content,
            alg=sign_alg,
            issuer=self.auth.service.issuer,
            audience=rs_uri,
            now=int(self.state.clock()),
            flaw=flaw,
        )
        return JSONResponse(_result("JWT", code, message, jwt))

    def standard_content(self, token: str, rs_uri: str | None) -> dict[str, Any]:
        """The RFC 7662 answer for ``token``: ``active: false`` when unknown, expired, or
        for a resource server (``rs_uri``) not among the token's resources."""
        record = self.state.tokens.get(token)
        if record is None or record.expires_at <= self.state.clock():
            content: dict[str, Any] = {"active": False}
        else:
            # [U] whether Authlete adds cnf.jkt here is not documented; the simulator does,
            # as RFC 9449 section 6.2 asks of an introspection endpoint.
            content = {
                "active": True,
                "scope": " ".join(record.scopes),
                "client_id": str(record.client_id),
                "exp": int(record.expires_at),
                "token_type": "DPoP" if record.jkt else "Bearer",  # [U]
            }
            if record.subject is not None:
                content["sub"] = record.subject
            cnf = confirmation(jkt=record.jkt, x5t_s256=record.x5t_s256)
            if cnf is not None:
                content["cnf"] = cnf
            if record.resources:
                content["aud"] = list(record.resources)
            if record.acr is not None:
                content["acr"] = record.acr
            if record.auth_time is not None:
                content["auth_time"] = record.auth_time
            if record.authorization_details is not None:
                content["authorization_details"] = list(record.authorization_details)
        if (
            content["active"]
            and rs_uri is not None
            and record is not None
            and record.resources
            and rs_uri not in record.resources
        ):
            content = {"active": False}  # rsUri not among the token's audiences
        return content

    async def jwks(self, request: Request) -> Response:
        """The public keys RFC 9701 answers are signed with (the authorization server's
        ``jwks_uri``)."""
        return JSONResponse(self.signer.jwks())

    # -- /auth/token/create -----------------------------------------------------------
    async def token_create(self, request: Request) -> Response:
        gated = await self._gate(request, "auth/token/create")
        if isinstance(gated, Response):
            return gated
        try:
            fields = self._token_fields(gated)
        except (_BadField, ValueError) as exc:
            code, msg = "A109201", f"The token creation request is invalid: {exc}."  # [U]
            return JSONResponse(
                _result("BAD_REQUEST", code, msg, json.dumps({"error": "invalid_request"}))
            )
        token = self.state.create_token(**fields)
        record = self.state.tokens[token]
        code = "A109001"
        return JSONResponse(
            _result(
                "OK",
                code,
                "An access token was created successfully.",
                "",
                accessToken=token,
                tokenType="DPoP" if record.jkt else "Bearer",
                expiresAt=int(record.expires_at * 1000),
                expiresIn=int(fields["lifetime"]),
                subject=record.subject,
                scopes=list(record.scopes),
                clientId=record.client_id,
            )
        )

    def _token_fields(self, body: dict[str, Any]) -> dict[str, Any]:
        """The arguments of :meth:`SimulatorState.create_token` from a
        ``/auth/token/create`` body, every field type- and range-checked.

        :raises _BadField: naming the field.
        """
        duration = body.get("accessTokenDuration") or 3600
        if (
            isinstance(duration, bool)
            or not isinstance(duration, int | float)
            or not math.isfinite(duration)
            or not 0 < duration <= MAX_LIFETIME
        ):
            raise _BadField("accessTokenDuration must be a number of seconds")
        raw_client = body.get("clientId")
        client_id = DEFAULT_CLIENT_ID if raw_client in (None, "", 0) else _client_id(raw_client)
        if client_id is None:
            raise _BadField("clientId must be a number of at most 18 digits")
        resources = _str_list(body, "resources")
        for resource in resources:
            parts = urlsplit(resource)
            if not parts.scheme or "#" in resource:
                raise _BadField("resources must be absolute URIs without a fragment")
        auth_time = body.get("authTime")
        if auth_time in (None, 0):
            auth_time = None
        elif isinstance(auth_time, bool) or not isinstance(auth_time, int) or auth_time < 0:
            raise _BadField("authTime must be epoch seconds")
        return {
            "subject": _opt_str(body, "subject"),
            "scopes": _str_list(body, "scopes"),
            "lifetime": float(duration),
            "jkt": _opt_str(body, "dpopKeyThumbprint"),
            "client_id": client_id,
            "x5t_s256": token_create_thumbprint(body),
            "resources": resources,
            "acr": _opt_str(body, "acr"),
            "auth_time": auth_time,
            "authorization_details": details_elements(body.get("authorizationDetails")),
            "grant_id": _opt_str(body, "grantId"),
            "consented_claims": _str_list(body, "consentedClaims"),
            "client_id_alias": _opt_str(body, "clientIdAlias"),
            "client_id_alias_used": body.get("clientIdAliasUsed") is True,
        }

    # -- test hooks ----------------------------------------------------------------
    async def sim_stats(self, request: Request) -> Response:
        if not self._admin(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"calls": dict(self.state.calls), "tokens": len(self.state.tokens)})

    async def sim_faults(self, request: Request) -> Response:
        if not self._admin(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await self._body(request)
        if body is None:
            return JSONResponse({"error": "malformed body"}, status_code=400)
        try:
            self.state.set_fault(
                body.get("fault"), count=body.get("count"), latency=body.get("latency")
            )
        except (ValueError, TypeError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if "signed_flaw" in body:
            flaw = body["signed_flaw"]
            if flaw is not None and flaw not in SIGNED_FLAWS:
                return JSONResponse({"error": f"unknown signed_flaw {flaw!r}"}, status_code=400)
            self.state.signed_flaw = flaw
        if body.get("reset_counters"):
            self.state.reset_counters()
        return JSONResponse({"fault": self.state.fault, "latency": self.state.latency})


def create_simulator_app(
    state: SimulatorState | None = None, authorization: AuthorizationService | None = None
) -> Starlette:
    """The simulator as an ASGI app: ``app.state.simulator`` is its
    :class:`SimulatorState`, and ``app.state.authorization`` the
    :class:`~dpop_guard.devtools.simulator._authorization.AuthorizationService` behind its
    authorization-server APIs (PAR, ``/auth/authorization``, ``/auth/token``), whose tokens
    live in the same state as those of ``/auth/token/create``."""
    auth = authorization or AuthorizationService()
    sim = _Simulator(state or SimulatorState(), auth)
    app = Starlette(
        routes=[
            *authorization_routes(sim.state, auth),
            Route("/api/auth/introspection", sim.introspection, methods=["POST"]),
            Route("/api/{service_id}/auth/introspection", sim.introspection, methods=["POST"]),
            Route("/api/auth/introspection/standard", sim.introspection_standard, methods=["POST"]),
            Route(
                "/api/{service_id}/auth/introspection/standard",
                sim.introspection_standard,
                methods=["POST"],
            ),
            Route("/api/auth/token/create", sim.token_create, methods=["POST"]),
            Route("/api/{service_id}/auth/token/create", sim.token_create, methods=["POST"]),
            Route(JWKS_PATH, sim.jwks, methods=["GET"]),
            Route(RFC7662_PATH, rfc7662_introspection(sim), methods=["POST"]),
            Route("/sim/stats", sim.sim_stats, methods=["GET"]),
            Route("/sim/faults", sim.sim_faults, methods=["POST"]),
        ]
    )
    app.state.simulator = sim.state
    app.state.authorization = auth
    return app
