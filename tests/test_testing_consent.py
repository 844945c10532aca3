"""``dpop_guard.testing.submit_consent``: the consent step as a browser does it, one test per
rule. Pages of every shape come from a small Starlette app; the whole flow from the example
authorization server in front of the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dpop_guard.client import FAPIClient, OAuthError, ProofSigner
from dpop_guard.testing import MAX_CONSENT_PAGE, submit_consent
from tests._support.flow import CLIENT_ID, REDIRECT_URI, Stack, register, start_stack

DENY = {"X-Frame-Options": "DENY"}
FORM = """<form method="post" action="/decide">
<input type="hidden" name="ticket" value="t-1">
<select name="subject"><option value="alice">alice</option>
<option value="bob" selected>bob</option></select>
<button type="submit" name="decision" value="approve" id="approve">Approve</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button>
</form>
<form action="/elsewhere"><input type="hidden" name="other" value="x">
<button id="approve" name="decision" value="other">no</button></form>"""


async def page(request: Request) -> Response:
    kind = request.path_params["kind"]
    if kind == "frameable":
        return HTMLResponse(FORM)
    if kind == "refused":
        return JSONResponse({"error": "invalid_request_uri"}, status_code=400)
    if kind == "huge":
        return HTMLResponse(FORM + " " * MAX_CONSENT_PAGE, headers=DENY)
    if kind == "not-a-redirect":
        return HTMLResponse(FORM.replace("/decide", "/decide-badly"), headers=DENY)
    return HTMLResponse(FORM, headers=DENY)


async def decide(request: Request) -> Response:
    form = parse_qsl((await request.body()).decode())
    query = "&".join(f"{k}={v}" for k, v in sorted(form))
    return RedirectResponse(f"https://client.example/cb?{query}", status_code=303)


async def decide_badly(request: Request) -> Response:
    return JSONResponse({"error": "server_error"}, status_code=500)


APP = Starlette(
    routes=[
        Route("/page/{kind}", page),
        Route("/decide", decide, methods=["POST"]),
        Route("/decide-badly", decide_badly, methods=["POST"]),
    ]
)


@pytest.fixture(name="http")
async def _http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=APP), base_url="http://as.test"
    ) as http:
        yield http


class TestForm:
    async def test_first_form_with_hidden_fields_selected_option_and_button(
        self, http: httpx.AsyncClient
    ) -> None:
        """The first form's hidden fields, its selected option and the button's value are
        posted to its action; the redirect target comes back."""
        location = await submit_consent(http, "http://as.test/page/good")
        assert location == "https://client.example/cb?decision=approve&subject=bob&ticket=t-1"

    async def test_subject_chosen(self, http: httpx.AsyncClient) -> None:
        """``subject`` picks that option."""
        location = await submit_consent(http, "http://as.test/page/good", subject="alice")
        assert "subject=alice" in location

    async def test_other_button(self, http: httpx.AsyncClient) -> None:
        """``button`` names the button by id."""
        location = await submit_consent(http, "http://as.test/page/good", button="deny")
        assert "decision=deny" in location


class TestRefusals:
    async def test_frameable_page(self, http: httpx.AsyncClient) -> None:
        """A consent page without X-Frame-Options: DENY is refused (clickjacking)."""
        with pytest.raises(OAuthError, match="framed") as caught:
            await submit_consent(http, "http://as.test/page/frameable")
        assert caught.value.error == "invalid_response"

    async def test_page_refused_by_the_server(self, http: httpx.AsyncClient) -> None:
        """The server's own error comes back as it is."""
        with pytest.raises(OAuthError) as caught:
            await submit_consent(http, "http://as.test/page/refused")
        assert (caught.value.error, caught.value.status) == ("invalid_request_uri", 400)

    async def test_page_too_large(self, http: httpx.AsyncClient) -> None:
        """A page over the cap is not parsed."""
        with pytest.raises(OAuthError, match="too large"):
            await submit_consent(http, "http://as.test/page/huge")

    async def test_no_such_button(self, http: httpx.AsyncClient) -> None:
        """A button the form does not have is refused."""
        with pytest.raises(OAuthError, match="'later'"):
            await submit_consent(http, "http://as.test/page/good", button="later")

    async def test_subject_not_offered(self, http: httpx.AsyncClient) -> None:
        """A subject that is not among the options is refused, not sent."""
        with pytest.raises(OAuthError, match="'mallory'"):
            await submit_consent(http, "http://as.test/page/good", subject="mallory")

    async def test_answer_not_a_redirect(self, http: httpx.AsyncClient) -> None:
        """An answer to the form that is not a redirect is the server's error."""
        with pytest.raises(OAuthError) as caught:
            await submit_consent(http, "http://as.test/page/not-a-redirect")
        assert (caught.value.error, caught.value.status) == ("server_error", 500)


@pytest.fixture(name="stack", scope="module")
def _stack() -> Iterator[Stack]:
    with start_stack() as stack:
        yield stack


@pytest.mark.e2e
async def test_the_example_server_as_bob(stack: Stack) -> None:
    """Against the example authorization server: signed in as bob, the token is bob's and
    /accounts shows his account."""
    client_key, dpop_key = ProofSigner.generate("PS256"), ProofSigner.generate("EdDSA")
    register(stack.auth, client_key, dpop_key)
    async with httpx.AsyncClient(timeout=10) as http:
        fapi = await FAPIClient.discover(
            http,
            stack.authorization_server.url,
            client_id=str(CLIENT_ID),
            client_key=client_key,
            dpop_key=dpop_key,
            redirect_uri=REDIRECT_URI,
        )
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        callback = await submit_consent(http, pushed.authorization_url, subject="bob")
        tokens = await fapi.exchange_code(callback, pushed)
        response = await http.get(f"{stack.api.url}/accounts", auth=fapi.auth(tokens))
    assert response.status_code == 200
    assert response.json()["subject"] == "bob"
    assert [a["account_id"] for a in response.json()["accounts"]] == ["acc-2001"]
