"""The consent page in a real browser: Debian's Chromium, headless, driven by Playwright
(``playwright-core`` from npm, kept in ``tests/browser/``). It loads the page the example
authorization server renders, submits consent, lands on the client's redirect URI; the
test then finishes the flow and calls the API with the token."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from dpop_guard.client import FAPIClient, OAuthError, ProofSigner
from tests._support.flow import CLIENT_ID, Stack, register, start_stack
from tests._support.servers import ServerThread

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

HERE = Path(__file__).parent / "browser"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(name="node", scope="module")
def _node() -> str:
    """node with playwright-core installed (``npm ci`` on first use). A missing browser or
    node is a failure, not a skip: CI must install them."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed (Debian: apt-get install nodejs npm)")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is needed (Debian: apt-get install chromium)")
    if not (HERE / "node_modules" / "playwright-core").exists():
        subprocess.run(  # noqa: S603 - npm with fixed arguments
            [npm, "ci", "--silent", "--no-audit", "--no-fund"], cwd=HERE, check=True
        )
    return node


async def landing(request: Request) -> HTMLResponse:
    return HTMLResponse("<!doctype html><title>Client</title><p>Back at the client.</p>")


@pytest.fixture(name="stack", scope="module")
def _stack() -> Iterator[Stack]:
    with start_stack() as stack:
        yield stack


@pytest.fixture(name="callback", scope="module")
def _callback() -> Iterator[str]:
    """The client's redirect URI, a real page on loopback."""
    with ServerThread(Starlette(routes=[Route("/cb", landing)])) as server:
        yield f"{server.url}/cb"


def browse(node: str, url: str, callback: str, button: str) -> dict[str, Any]:
    done = subprocess.run(  # noqa: S603 - node with our own script
        [node, "consent.mjs", url, callback, button],
        cwd=HERE,
        env=dict(os.environ, CHROMIUM=CHROMIUM),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.fixture(name="fapi")
async def _fapi(stack: Stack, callback: str, signers: dict[str, ProofSigner]) -> Any:
    register(stack.auth, signers["EdDSA"], signers["ES256"], redirect_uris=(callback,))
    async with httpx.AsyncClient(timeout=10) as http:
        yield await FAPIClient.discover(
            http,
            stack.authorization_server.url,
            client_id=str(CLIENT_ID),
            client_key=signers["EdDSA"],
            dpop_key=ProofSigner.generate("PS256"),
            redirect_uri=callback,
        )


class TestConsentInChromium:
    async def test_approve_then_accounts(
        self, node: str, stack: Stack, callback: str, fapi: FAPIClient
    ) -> None:
        """The browser shows the scopes, Approve lands on the callback with code and iss;
        the code buys a DPoP token that reads /accounts."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        seen = browse(node, pushed.authorization_url, callback, "approve")
        assert seen["title"] == "Authorize FAPI 2.0 client"
        assert seen["scopes"] == ["read:accounts"]
        assert "Back at the client" in seen["body"]
        landed = httpx.URL(seen["finalUrl"])
        assert landed.params["iss"] == stack.authorization_server.url
        tokens = await fapi.exchange_code(seen["finalUrl"], pushed)
        response = await fapi.http.get(f"{stack.api.url}/accounts", auth=fapi.auth(tokens))
        assert response.status_code == 200 and response.json()["subject"] == "alice"

    async def test_deny(self, node: str, callback: str, fapi: FAPIClient) -> None:
        """Deny lands on the callback with access_denied."""
        pushed = await fapi.push_authorization_request(scope="read:accounts")
        seen = browse(node, pushed.authorization_url, callback, "deny")
        with pytest.raises(OAuthError) as caught:
            fapi.code_from_callback(seen["finalUrl"], pushed)
        assert caught.value.error == "access_denied"
