"""The seven steps of Authlete's FAPI 2.0 guide, walked by :class:`FAPIClient` against the
example authorization server (which fronts the simulator's Authlete APIs), then the API
call: each step printed with what went over the wire and checked."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from ...client import FAPIClient, OAuthError, PushedAuthorization, TokenResponse
from ...testing import submit_consent
from ._report import Exchanges, Report, short

T = TypeVar("T")

REQUEST_URI_PREFIX: Final = "urn:ietf:params:oauth:request_uri:"
SCOPE: Final = "read:accounts"
SUBJECT: Final = "alice"
# FAPI 2.0 §5.3.2.2: a request_uri lives less than 600 seconds.
MAX_REQUEST_URI_LIFETIME: Final = 600


class StepFailed(Exception):
    """A step did not behave; the flow cannot go on without its result."""


@dataclass(frozen=True)
class FlowResult:
    """What the refusals need from the flow."""

    pushed: PushedAuthorization
    callback: str
    tokens: TokenResponse


class SevenSteps:
    """The flow, one method per group of steps that share a round trip.

    :param fapi: the client; its ``http`` has ``exchanges`` as a response hook.
    :param introspection: the simulator's RFC 7662 introspection URL and credential, to
        show the key the token is bound to as the authorization server sees it.
    """

    def __init__(
        self,
        fapi: FAPIClient,
        exchanges: Exchanges,
        report: Report,
        *,
        api: str,
        introspection: tuple[str, dict[str, str]],
    ) -> None:
        self.fapi, self.exchanges, self.report = fapi, exchanges, report
        self.api, self.introspection = api, introspection

    def _ok(self, title: str, detail: str) -> None:
        self.report.line(True, title, detail)

    def _fail(self, title: str, detail: str) -> NoReturn:
        self.report.line(False, title, detail)
        raise StepFailed(f"step {title} did not behave")

    def _check(self, good: bool, title: str, detail: str) -> None:
        if not good:
            self._fail(title, detail)

    async def run(self) -> FlowResult:
        """Steps 1 to 7.

        :raises StepFailed: naming the step that did not behave (already printed).
        """
        fapi = self.fapi
        mark = self.exchanges.mark()
        title = "1 PAR, client authenticated by private_key_jwt"
        pushed = await self._guard(title, fapi.push_authorization_request(scope=SCOPE))
        self._ok(
            title,
            f"{self.exchanges.since(mark)}, assertion {fapi.client_key.alg}, PKCE S256, "
            f"scope {SCOPE}",
        )

        title = "2 request_uri back"
        self._check(
            pushed.request_uri.startswith(REQUEST_URI_PREFIX)
            and 0 < pushed.expires_in < MAX_REQUEST_URI_LIFETIME,
            title,
            f"unexpected request_uri or expires_in {pushed.expires_in}",
        )
        handle = pushed.request_uri.removeprefix(REQUEST_URI_PREFIX)
        self._ok(
            title,
            f"{REQUEST_URI_PREFIX}{short(handle)}, expires_in {pushed.expires_in} s",
        )

        mark = self.exchanges.mark()
        title = "3 authorization request, consent approved"
        callback = await self._guard(
            title, submit_consent(fapi.http, pushed.authorization_url, subject=SUBJECT)
        )
        self._ok(title, self.exchanges.since(mark))
        self.report.detail(f"the consent page's form submitted: Approve, signed in as {SUBJECT}")

        title = "4 code back on the redirect"
        code = self._guard_sync(title, lambda: fapi.code_from_callback(callback, pushed))
        params = dict(parse_qsl(urlsplit(callback).query))
        self._ok(title, f"code {short(code)}, state matches, iss {params.get('iss')}")
        self.report.detail(f"(the Location header, to {callback.split('?', 1)[0]})")

        mark = self.exchanges.mark()
        title = "5 token request, private_key_jwt + DPoP proof"
        tokens = await self._guard(title, fapi.exchange_code(callback, pushed))
        self._ok(
            title,
            f"{self.exchanges.since(mark)}, assertion {fapi.client_key.alg}, "
            f"DPoP proof {fapi.dpop_key.alg}, code_verifier",
        )

        await self._bound_token(tokens)
        await self._accounts(tokens)
        return FlowResult(pushed, callback, tokens)

    async def _bound_token(self, tokens: TokenResponse) -> None:
        title = "6 DPoP-bound access token back"
        jkt = self.fapi.dpop_key.jkt
        bound = await self._introspected_jkt(tokens.access_token)
        scopes = (tokens.scope or "").split()
        self._check(
            tokens.token_type == "DPoP"  # noqa: S105 - a token type, not a secret
            and SCOPE in scopes
            and bound == jkt,
            title,
            f"token_type {tokens.token_type}, scope {tokens.scope}, "
            f"cnf.jkt {short(bound or '')} (our key {short(jkt)})",
        )
        self._ok(
            title,
            f"token_type {tokens.token_type}, scope {tokens.scope}, "
            f"expires_in {tokens.expires_in} s",
        )
        self.report.detail(
            f"access token {short(tokens.access_token)}, cnf.jkt {short(jkt, 12)} "
            "(introspected) = the DPoP key's thumbprint"
        )

    async def _introspected_jkt(self, token: str) -> str | None:
        """``cnf.jkt`` of ``token`` from the simulator's RFC 7662 introspection (what an
        authorization server's introspection endpoint reports)."""
        prefix, headers = self.introspection
        response = await self.fapi.http.post(
            f"{prefix}/auth/introspection/standard",
            json={"parameters": urlencode({"token": token})},
            headers=headers,
        )
        if response.status_code != 200:
            return None
        content = json.loads(response.json().get("responseContent") or "{}")
        cnf = content.get("cnf") if content.get("active") is True else None
        jkt = cnf.get("jkt") if isinstance(cnf, dict) else None
        return jkt if isinstance(jkt, str) else None

    async def _accounts(self, tokens: TokenResponse) -> None:
        title = "7 GET /accounts with a fresh DPoP proof"
        mark = self.exchanges.mark()
        try:
            response = await self.fapi.http.get(f"{self.api}/accounts", auth=self.fapi.auth(tokens))
        except httpx.HTTPError as exc:
            self._fail(title, f"the API did not answer: {type(exc).__name__}")
        body = response.json() if response.status_code == 200 else {}
        accounts = body.get("accounts") or []
        self._check(
            response.status_code == 200 and body.get("subject") == SUBJECT and bool(accounts),
            title,
            self.exchanges.since(mark) or f"{response.status_code}",
        )
        self._ok(title, f"{self.exchanges.since(mark)}, {len(accounts)} accounts of {SUBJECT}:")
        if "signature-input" in response.request.headers:
            self.report.detail(
                "the request signed (RFC 9421, tag fapi-2-request), verified by the API; "
                "its signed answer verified by the client"
            )
        for account in accounts:
            self.report.detail(
                f"{account['account_id']}  {account['nickname']:<8} "
                f"{account['currency']} {account['balance']:>9}"
            )

    async def _guard(self, title: str, step: Awaitable[T]) -> T:
        try:
            return await step
        except OAuthError as exc:
            self._fail(title, f"refused: {exc}")
        except httpx.HTTPError as exc:
            self._fail(title, f"no answer: {type(exc).__name__}")

    def _guard_sync(self, title: str, step: Callable[[], T]) -> T:
        try:
            return step()
        except OAuthError as exc:
            self._fail(title, f"refused: {exc}")
