"""An Authlete-compatible stand-in for ``/auth/introspection`` and ``/auth/token/create``.

It speaks Authlete's HTTP API (V2: ``/api/auth/...`` with Basic key:secret; V3:
``/api/{serviceId}/auth/...`` with a Bearer service token), answers HTTP 200 with an
``action``, and checks DPoP bindings itself when sent ``dpop``, ``htm`` and ``htu``, as
described in Authlete's documentation. Its DPoP check is written independently of
:mod:`dpop_guard.proof` (it uses joserfc), so the two cross-check each other.

It is the embedded default for the demo, the tests and the benchmarks; production code
talks to it over real HTTP exactly as it talks to Authlete. Test hooks (latency, faults,
call counts) live under ``/sim/``. Run it with ``python -m dpop_guard.simulator`` or
``dpop-guard simulate`` (one code path: :func:`dpop_guard.simulator.main`).

Where Authlete's exact behaviour is not published (result codes for some failures, its
``iat`` window), the choices are marked ``[U]`` as in ``authlete-introspection.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final
from urllib.parse import parse_qsl

import anyio
from joserfc import jwk as jose_jwk
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ._state import DEFAULT_CLIENT_ID, SimulatorState

__all__ = ["create_simulator_app"]

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


@contextmanager
def _eddsa_accepted() -> Iterator[None]:
    """Authlete still lists "EdDSA"; joserfc warns on every use of the RFC 9864-deprecated
    name. Silence exactly that warning, only around the simulator's own joserfc calls (which
    never await), instead of for the whole process."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)
        yield


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


class _Simulator:
    def __init__(self, state: SimulatorState) -> None:
        self.state = state
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
        ctype = request.headers.get("content-type", "")
        raw = await request.body()
        if ctype.startswith("application/x-www-form-urlencoded"):
            try:
                pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                return None
            data: dict[str, Any] = dict(pairs)
            if "scopes" in data:
                data["scopes"] = data["scopes"].split()
            return data
        try:
            value = json.loads(raw or b"{}")
        except ValueError:
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

    def _introspect(self, body: dict[str, Any]) -> dict[str, Any]:
        state = self.state
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
        if record.expires_at <= time.time():
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
        required = body.get("scopes") or []
        if isinstance(required, str):
            required = required.split()
        missing = [s for s in required if s not in record.scopes]
        if missing:
            code = "A064302"
            msg = f"The access token does not cover the required scope '{missing[0]}'."
            return _result(
                "FORBIDDEN",
                code,
                msg,
                _challenge(scheme, "insufficient_scope", code, msg, scope=" ".join(required)),
                existent=True,
                usable=True,
                sufficient=False,
                scopes=list(record.scopes),
                subject=record.subject,
                clientId=record.client_id,
            )
        dpop = body.get("dpop")
        if record.jkt is not None:
            if not dpop:
                return _bound_refusal(
                    "invalid_token", "A065308", "Expected a DPoP header but none was provided."
                )
            try:
                self._check_proof(dpop, body, token, record.jkt)
            except _ProofError as exc:
                return _bound_refusal("invalid_dpop_proof", "A065311", str(exc))  # [U] code
        elif dpop and not state.accept_unbound_with_proof:
            code, msg = "A065312", "The access token is not bound to a DPoP key."  # [U]
            return _result(
                "UNAUTHORIZED", code, msg, _challenge("Bearer", "invalid_token", code, msg)
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
            clientIdAliasUsed=False,
            properties=[],
        )

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
        now = time.time()
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
        token = dict(parse_qsl(parameters)).get("token", "")
        record = self.state.tokens.get(token)
        if record is None or record.expires_at <= time.time():
            content: dict[str, Any] = {"active": False}
        else:
            # [U] whether Authlete adds cnf.jkt here is not documented; the simulator does,
            # as RFC 9449 section 6.2 asks of an introspection endpoint.
            content = {
                "active": True,
                "scope": " ".join(record.scopes),
                "client_id": str(record.client_id),
                "exp": int(record.expires_at),
                "token_type": "DPoP" if record.jkt else "Bearer",
            }
            if record.subject is not None:
                content["sub"] = record.subject
            if record.jkt is not None:
                content["cnf"] = {"jkt": record.jkt}
        code = "A145001"
        message = f"Introspection was performed successfully (active={content['active']})."
        return JSONResponse(_result("OK", code, message, json.dumps(content)))

    # -- /auth/token/create -----------------------------------------------------------
    async def token_create(self, request: Request) -> Response:
        gated = await self._gate(request, "auth/token/create")
        if isinstance(gated, Response):
            return gated
        scopes = gated.get("scopes") or []
        if isinstance(scopes, str):
            scopes = scopes.split()
        lifetime = float(gated.get("accessTokenDuration") or 3600)
        jkt = gated.get("dpopKeyThumbprint") or None
        token = self.state.create_token(
            subject=gated.get("subject"),
            scopes=scopes,
            lifetime=lifetime,
            jkt=jkt,
            client_id=int(gated.get("clientId") or DEFAULT_CLIENT_ID),
        )
        record = self.state.tokens[token]
        code = "A109001"
        return JSONResponse(
            _result(
                "OK",
                code,
                "An access token was created successfully.",
                "",
                accessToken=token,
                tokenType="DPoP" if jkt else "Bearer",
                expiresAt=int(record.expires_at * 1000),
                expiresIn=int(lifetime),
                subject=record.subject,
                scopes=list(record.scopes),
                clientId=record.client_id,
            )
        )

    # -- test hooks ----------------------------------------------------------------
    async def sim_stats(self, request: Request) -> Response:
        if not self._admin(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"calls": dict(self.state.calls), "tokens": len(self.state.tokens)})

    async def sim_faults(self, request: Request) -> Response:
        if not self._admin(request):
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        body = await request.json()
        try:
            self.state.set_fault(
                body.get("fault"), count=body.get("count"), latency=body.get("latency")
            )
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if body.get("reset_counters"):
            self.state.reset_counters()
        return JSONResponse({"fault": self.state.fault, "latency": self.state.latency})


def create_simulator_app(state: SimulatorState | None = None) -> Starlette:
    """The simulator as an ASGI app; ``app.state.simulator`` is its :class:`SimulatorState`."""
    sim = _Simulator(state or SimulatorState())
    app = Starlette(
        routes=[
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
            Route("/sim/stats", sim.sim_stats, methods=["GET"]),
            Route("/sim/faults", sim.sim_faults, methods=["POST"]),
        ]
    )
    app.state.simulator = sim.state
    return app
