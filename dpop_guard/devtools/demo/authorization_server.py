"""A small FAPI 2.0 authorization server built on Authlete, as Authlete's FAPI 2.0 guide
describes it: every decision is Authlete's, this program only carries requests to
Authlete's APIs and their ``responseContent`` back.

- ``POST /par``: pushed authorization requests (RFC 9126) → ``/pushed_auth_req``;
- ``GET /authorize``: the authorization endpoint → ``/auth/authorization``, then a consent
  page (a plain HTML form) whose answer goes to ``/auth/authorization/issue`` or
  ``/auth/authorization/fail``;
- ``POST /token``: the token endpoint → ``/auth/token`` (the ``DPoP`` header is passed on,
  so Authlete binds the token to the proof's key);
- ``GET /.well-known/oauth-authorization-server``: RFC 8414 metadata, so any FAPI 2.0
  client finds its way.

Run it against Authlete (or the simulator) with Authlete's own environment names::

    AUTHLETE_BASE_URL=https://jp.authlete.com AUTHLETE_API_VERSION=V3 \\
    AUTHLETE_SERVICE_APIKEY=<service id> AUTHLETE_SERVICE_ACCESSTOKEN=<token> \\
    AS_ISSUER=http://127.0.0.1:9000 \\
    uvicorn --factory dpop_guard.devtools.demo.authorization_server:create_app --port 9000

(V2: ``AUTHLETE_SERVICE_APIKEY`` and ``AUTHLETE_SERVICE_APISECRET``.) ``AS_ISSUER`` is the
public URL of this server, as registered in the Authlete service; the endpoints hang off
it, and the ``htu`` sent to Authlete is built from it, never from the ``Host`` header.

For the demo the consent page logs nobody in: it offers the demo users and an Approve /
Deny choice. A real server authenticates the user first (and keeps this page's anti-
clickjacking headers). The one-time ``ticket`` in the form is what ties the answer to the
request.
"""

from __future__ import annotations

import base64
import contextlib
import html
import os
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..._env import EnvReader
from ..._json import DOCUMENT_LIMITS, parse_object

MAX_BODY: Final = 65536
# An Authlete answer is read up to this size (a consent page's scopes and client names
# are a few KiB): a bigger one is an upstream failure, never a buffer that grows.
MAX_AUTHLETE_ANSWER: Final = 1 << 20
# The consent form has three fields; a few more are ignored, many more refused.
MAX_DECISION_FIELDS: Final = 8
DEMO_USERS: Final = ("alice", "bob")
FAPI2_ALGS: Final = ["PS256", "ES256", "EdDSA"]
NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# The consent page may not be framed (clickjacking) nor load anything.
PAGE_HEADERS: Final = {
    **NO_STORE,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


_NETLOC: Final = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _page_headers(redirect_uri: object) -> dict[str, str]:
    """The page headers; ``form-action`` also admits the client's redirect origin, since
    browsers apply it to the redirect that answers the form (CSP 3 §6.4.1)."""
    headers = dict(PAGE_HEADERS)
    try:
        target = urlsplit(str(redirect_uri or ""))
    except ValueError:  # Authlete's value, not ours to trust: e.g. "http://[bad"
        target = urlsplit("")
    # Only a plain host[:port] goes into the header (no ";", quote or control character).
    usable = target.scheme in ("http", "https") and _NETLOC.fullmatch(target.netloc)
    origin = f" {target.scheme}://{target.netloc}" if usable else ""
    headers["Content-Security-Policy"] += f"; form-action 'self'{origin}"
    return headers


@dataclass(frozen=True)
class Config:
    """Where Authlete is and who this server is, from the environment."""

    base_url: str
    api_version: str
    service_id: str
    api_secret: str | None
    access_token: str | None
    issuer: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """Read the settings with the package's one environment reader (values stripped,
        control characters refused: a secret or URL reaches an HTTP header or the issuer).

        :raises ValueError: naming the variable that is missing or not valid.
        """
        env = EnvReader(environ)
        version = env.choice("AUTHLETE_API_VERSION", ("V2", "V3"), "V3")
        return cls(
            base_url=env.required("AUTHLETE_BASE_URL").rstrip("/"),
            api_version=version,
            service_id=env.required("AUTHLETE_SERVICE_APIKEY"),
            api_secret=(
                env.required("AUTHLETE_SERVICE_APISECRET", secret=True) if version == "V2" else None
            ),
            access_token=(
                env.required("AUTHLETE_SERVICE_ACCESSTOKEN", secret=True)
                if version == "V3"
                else None
            ),
            issuer=env.required("AS_ISSUER").rstrip("/"),
        )

    def metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata for a FAPI 2.0 server (PAR, PKCE, private_key_jwt, DPoP)."""
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "pushed_authorization_request_endpoint": f"{self.issuer}/par",
            "require_pushed_authorization_requests": True,
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": FAPI2_ALGS,
            "dpop_signing_alg_values_supported": FAPI2_ALGS,
            "authorization_response_iss_parameter_supported": True,
            "scopes_supported": ["read:accounts", "read:transactions"],
        }


class Authlete:
    """Calls to Authlete's APIs; a transport failure is :class:`httpx.HTTPError`."""

    def __init__(self, config: Config, http: httpx.AsyncClient) -> None:
        self.config, self.http = config, http
        if config.api_version == "V3":
            self.prefix = f"{config.base_url}/api/{config.service_id}"
            credential = f"Bearer {config.access_token}"
        else:
            self.prefix = f"{config.base_url}/api"
            pair = f"{config.service_id}:{config.api_secret}".encode()
            credential = "Basic " + base64.b64encode(pair).decode()
        # identity: the answer is read raw and capped, so no decoder may expand it.
        self.headers = {"Authorization": credential, "Accept-Encoding": "identity"}

    async def call(self, api: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """One API call; the answer read up to :data:`MAX_AUTHLETE_ANSWER` and parsed
        strictly (depth-bounded, no ``NaN``, no repeated members).

        :raises httpx.HTTPError: a transport failure, an error status, or an answer that
            is too large or not an Authlete response object (:class:`httpx.DecodingError`).
        """
        request = self.http.build_request(
            "POST", f"{self.prefix}/{api}", json=dict(body), headers=self.headers
        )
        response = await self.http.send(request, stream=True)
        try:
            response.raise_for_status()
            data = bytearray()
            async for chunk in response.aiter_raw():
                data += chunk
                if len(data) > MAX_AUTHLETE_ANSWER:
                    raise httpx.DecodingError("Authlete answer too large")
        finally:
            await response.aclose()
        if response.headers.get("content-encoding", "identity") != "identity":
            raise httpx.DecodingError("compressed Authlete answer")
        try:
            result = parse_object(bytes(data), DOCUMENT_LIMITS)
        except ValueError:
            raise httpx.DecodingError("not an Authlete response") from None
        if not isinstance(result.get("action"), str):
            raise httpx.DecodingError("not an Authlete response")
        return result


def _content(result: Mapping[str, Any], status: int) -> Response:
    """``responseContent`` as the JSON body, with ``DPoP-Nonce`` when Authlete sent one."""
    headers = dict(NO_STORE)
    if result.get("dpopNonce"):
        headers["DPoP-Nonce"] = str(result["dpopNonce"])
    return Response(
        str(result.get("responseContent") or "{}"),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


def _unavailable() -> JSONResponse:
    # Fail closed: without Authlete no decision can be made.
    return JSONResponse(
        {"error": "temporarily_unavailable", "error_description": "try again later"},
        status_code=503,
        headers=NO_STORE,
    )


async def _form_body(request: Request) -> str | None:
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            return None
    try:
        return body.decode("ascii")  # a form body is percent-encoded ASCII
    except UnicodeDecodeError:
        return None


def _invalid(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=400,
        headers=NO_STORE,
    )


def consent_page(result: Mapping[str, Any]) -> str:
    """The consent form for an INTERACTION answer (every value escaped)."""
    # Authlete's answer, read defensively: a member of another type is left out rather
    # than raised on (the page is for a person; the ticket decides).
    client = result.get("client")
    client = client if isinstance(client, dict) else {}
    name = html.escape(str(client.get("clientName") or client.get("clientId") or "a client"))
    listed = result.get("scopes")
    scopes = "".join(
        f"<li><code>{html.escape(str(s.get('name')))}</code></li>"
        for s in (listed if isinstance(listed, list) else [])
        if isinstance(s, dict)
    )
    users = "".join(
        f'<option value="{u}"{" selected" if i == 0 else ""}>{u}</option>'
        for i, u in enumerate(DEMO_USERS)
    )
    ticket = html.escape(str(result["ticket"]), quote=True)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Authorize {name}</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}</style></head>
<body><h1>Authorize {name}</h1>
<p>{name} asks for access to:</p><ul>{scopes}</ul>
<form method="post" action="/authorize/decision" id="consent">
<input type="hidden" name="ticket" value="{ticket}">
<label>Signed in as (demo) <select name="subject" id="subject">{users}</select></label>
<p><button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button></p>
</form></body></html>"""


def create_app(environ: Mapping[str, str] | None = None) -> Starlette:
    """The authorization server, configured from ``environ`` (default ``os.environ``).

    :raises ValueError: when a required variable is missing.
    """
    config = Config.from_env(os.environ if environ is None else environ)
    http = httpx.AsyncClient(timeout=10.0)
    authlete = Authlete(config, http)

    async def metadata(request: Request) -> JSONResponse:
        return JSONResponse(config.metadata())

    async def par(request: Request) -> Response:
        body = await _form_body(request)
        if body is None:
            return _invalid("a form-encoded body of at most 64 KiB is required")
        call: dict[str, Any] = {"parameters": body}
        proof = request.headers.getlist("dpop")
        if len(proof) > 1:
            return _invalid("at most one DPoP header")
        if proof:
            call.update(dpop=proof[0], htm="POST", htu=f"{config.issuer}/par")
        try:
            result = await authlete.call("pushed_auth_req", call)
        except httpx.HTTPError:
            return _unavailable()
        status = {
            "CREATED": 201,
            "BAD_REQUEST": 400,
            "UNAUTHORIZED": 401,
            "FORBIDDEN": 403,
            "PAYLOAD_TOO_LARGE": 413,
        }.get(result["action"], 500)
        return _content(result, status)

    async def authorize(request: Request) -> Response:
        try:
            result = await authlete.call("auth/authorization", {"parameters": request.url.query})
        except httpx.HTTPError:
            return _unavailable()
        return _answer(result)

    async def decision(request: Request) -> Response:
        body = await _form_body(request)
        if body is None:
            return _invalid("a form-encoded body is required")
        try:
            fields = parse_qs(body, max_num_fields=MAX_DECISION_FIELDS)
        except ValueError:  # more fields than the bound: client input, not a 500
            return _invalid(f"at most {MAX_DECISION_FIELDS} form fields")
        form = {k: v[0] for k, v in fields.items() if len(v) == 1}
        ticket, subject = form.get("ticket", ""), form.get("subject", "")
        try:
            if form.get("decision") == "approve" and subject in DEMO_USERS:
                result = await authlete.call(
                    "auth/authorization/issue", {"ticket": ticket, "subject": subject}
                )
            else:
                result = await authlete.call(
                    "auth/authorization/fail", {"ticket": ticket, "reason": "DENIED"}
                )
        except httpx.HTTPError:
            return _unavailable()
        return _answer(result)

    def _answer(result: Mapping[str, Any]) -> Response:
        action = result["action"]
        if action == "INTERACTION":
            if not isinstance(result.get("ticket"), str) or not result["ticket"]:
                return _unavailable()  # Authlete's answer is not usable: fail closed
            return HTMLResponse(
                consent_page(result), headers=_page_headers(result.get("redirectUri"))
            )
        if action == "LOCATION":
            location = result.get("responseContent")
            if not isinstance(location, str) or not location:
                return _unavailable()
            # 303: the browser follows a POST's answer with a GET (RFC 9110 §15.4.4).
            return RedirectResponse(location, status_code=303, headers=NO_STORE)
        if action == "FORM":
            return HTMLResponse(str(result["responseContent"]), headers=PAGE_HEADERS)
        if action == "BAD_REQUEST":
            return _content(result, 400)
        # NO_INTERACTION (prompt=none) needs a logged-in user, which this demo has not.
        return _content(result, 500)

    async def token(request: Request) -> Response:
        body = await _form_body(request)
        if body is None:
            return _invalid("a form-encoded body of at most 64 KiB is required")
        call: dict[str, Any] = {"parameters": body, "htm": "POST", "htu": f"{config.issuer}/token"}
        proof = request.headers.getlist("dpop")
        if len(proof) > 1:
            return _invalid("at most one DPoP header")
        if proof:
            call["dpop"] = proof[0]
        try:
            result = await authlete.call("auth/token", call)
        except httpx.HTTPError:
            return _unavailable()
        status = {"OK": 200, "INVALID_CLIENT": 401, "BAD_REQUEST": 400}.get(result["action"], 500)
        if result["action"] not in ("OK", "INVALID_CLIENT", "BAD_REQUEST", "INTERNAL_SERVER_ERROR"):
            # PASSWORD, TOKEN_EXCHANGE, JWT_BEARER: grants this server does not offer.
            return JSONResponse(
                {"error": "unsupported_grant_type"}, status_code=400, headers=NO_STORE
            )
        return _content(result, status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await http.aclose()

    return Starlette(
        routes=[
            Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
            Route("/par", par, methods=["POST"]),
            Route("/authorize", authorize, methods=["GET"]),
            Route("/authorize/decision", decision, methods=["POST"]),
            Route("/token", token, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main() -> None:  # pragma: no cover - a command-line entry point
    """``python -m dpop_guard.devtools.demo.authorization_server [PORT]``, environment above."""
    import sys

    import uvicorn

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    uvicorn.run(create_app(), host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":  # pragma: no cover
    main()
