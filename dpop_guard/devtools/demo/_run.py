"""``python -m dpop_guard.devtools.demo`` (or ``make demo``): the Authlete simulator, the example
authorization server and the accounts API on loopback, each in a process of its own; the
seven steps of the FAPI 2.0 code flow by :class:`~dpop_guard.client.FAPIClient`; then what
the API and the authorization server refuse, with the token the flow got; then, where nginx
is installed, certificate-bound tokens through nginx (:mod:`dpop_guard.devtools.demo._mtls`)."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from collections.abc import Awaitable, Sequence
from contextlib import ExitStack
from typing import Final

import httpx

from ...client import DPoPAuth, FAPIClient, OAuthError, ProofSigner
from ...testing import submit_consent
from ..simulator import DEFAULT_SERVICE_ID
from . import SERVICE_AUTH, authlete_api, free_port, process, simulator_env, tail
from ._flow import FlowResult, SevenSteps, StepFailed
from ._mtls import MTLSDeployment, MTLSLeg, deployment
from ._report import Exchanges, Report
from ._signing import MessageSigningSetup, SigningLeg, available

CLIENT_ID: Final = 2_718_281_828
CLIENT_NAME: Final = "dpop_guard demo client"
# Where the browser would be sent back; the demo reads the Location header instead, so
# nothing ever connects to it.
REDIRECT_URI: Final = "https://client.example.org/callback"
HTTP_TIMEOUT: Final = 10.0
DEMO_TIMEOUT: Final = 120.0
CACHE_CALLS: Final = 50
# Settings a user's shell may hold that would point the demo's servers elsewhere.
_INHERITED: Final = ("AUTHLETE_", "DPOP_GUARD_", "AS_")


class Demo:
    """The demo's client side, once the three servers run."""

    def __init__(
        self,
        *,
        simulator: str,
        authorization_server: str,
        api: str,
        api_version: str,
        dpop_alg: str = "ES256",
        mtls: MTLSDeployment | None = None,
        signing: MessageSigningSetup | None = None,
    ) -> None:
        self.simulator, self.issuer, self.api = simulator, authorization_server, api
        self.mtls, self.signing = mtls, signing
        self.api_version = api_version
        self.report = Report()
        self.exchanges = Exchanges()
        self.client_key = ProofSigner.generate("PS256")
        self.dpop_key = ProofSigner.generate(dpop_alg)

    async def register(self, http: httpx.AsyncClient) -> None:
        """Register the client in the simulated Authlete service (what one does once in
        Authlete's console), with the authorization server's public URLs.

        :raises StepFailed: when the simulator refuses.
        """
        response = await http.post(
            f"{self.simulator}/sim/authorization/clients",
            headers=SERVICE_AUTH,
            json={
                "client_id": CLIENT_ID,
                "client_name": CLIENT_NAME,
                "redirect_uris": [REDIRECT_URI],
                "jwks": {"keys": [dict(self.client_key.public_jwk)]},
                "service": {
                    "issuer": self.issuer,
                    "token_endpoint": f"{self.issuer}/token",
                    "pushed_auth_req_endpoint": f"{self.issuer}/par",
                },
            },
        )
        if response.status_code != 201:
            raise StepFailed(f"the simulator refused the client: {response.status_code}")

    async def run(self) -> int:
        print(f"\nClient {CLIENT_ID} ({CLIENT_NAME}), confidential, redirect URI {REDIRECT_URI}")
        print(f"  private_key_jwt key {self.client_key.alg}; DPoP key {self.dpop_key.alg}")
        timeout = httpx.Timeout(HTTP_TIMEOUT)
        async with httpx.AsyncClient(
            timeout=timeout, event_hooks={"response": [self.exchanges]}
        ) as http:
            try:
                await self.register(http)
            except httpx.HTTPError as exc:
                raise StepFailed(f"registering the client failed: {exc}") from exc
            try:
                fapi = await FAPIClient.discover(
                    http,
                    self.issuer,
                    client_id=str(CLIENT_ID),
                    client_key=self.client_key,
                    dpop_key=self.dpop_key,
                    redirect_uri=REDIRECT_URI,
                    **self.signing_options(),
                )
            except (OAuthError, httpx.HTTPError) as exc:
                raise StepFailed(f"discovery of {self.issuer} failed: {exc}") from exc
            print(f"  discovered {self.issuer}/.well-known/oauth-authorization-server (RFC 8414)")
            print("\nThe FAPI 2.0 code flow, the seven steps of Authlete's guide")
            flow = SevenSteps(
                fapi,
                self.exchanges,
                self.report,
                api=self.api,
                introspection=authlete_api(self.simulator, self.api_version),
            )
            result = await flow.run()
            print("\nWhat the API refuses, with that token")
            await self.api_refusals(http, result)
            await self.cache(http, result)
            if self.signing is None:
                print(
                    "The message-signing leg was skipped: the httpsig extra is not installed "
                    "(pip install 'dpop_guard[httpsig]')\n"
                )
            else:
                await SigningLeg(self.signing, self.api, self.report).run(
                    http, self.dpop_key, result.tokens.access_token
                )
                print()
            print("What the authorization server refuses")
            await self.as_refusals(fapi, result)
            if self.mtls is None:
                print(
                    "\nThe mTLS leg was skipped: nginx is not installed "
                    "(`make demo` installs it; or apt-get install nginx)"
                )
            else:
                await MTLSLeg(self.mtls, self.simulator, self.report).run(http)
        return self.report.failures

    def signing_options(self) -> dict[str, object]:
        """The FAPI client's message-signing options (none without the leg)."""
        if self.signing is None:
            return {}
        return {
            "signing_key": self.signing.client_key,
            "response_keys": self.signing.response_keys,
        }

    def auth(self, token: str) -> DPoPAuth:
        """The demo client's authentication: a DPoP proof, and a signature when signing."""
        if self.signing is None:
            return DPoPAuth(self.dpop_key, token)
        return self.signing.auth(self.dpop_key, token)

    async def api_refusals(self, http: httpx.AsyncClient, result: FlowResult) -> None:
        report, token, signer = self.report, result.tokens.access_token, self.dpop_key
        accounts = f"{self.api}/accounts"
        # One request's headers (proof, and signature when signing), to send twice.
        prepared = next(self.auth(token).sync_auth_flow(http.build_request("GET", accounts)))
        headers = dict(prepared.headers)
        first = await http.get(accounts, headers=headers)
        report.response("a proof sent once", first, 200)
        report.response(
            "the same proof a second time (replay)", await http.get(accounts, headers=headers), 401
        )
        thief = DPoPAuth(ProofSigner.generate("ES256"), token)
        report.response(
            "the token with a proof from another key",
            await http.get(accounts, auth=thief),
            401,
        )
        report.response(
            "GET /accounts/acc-1001/transactions (no scope)",
            await http.get(f"{self.api}/accounts/acc-1001/transactions", auth=self.auth(token)),
            403,
        )
        report.response(
            "an access token that was never issued",
            await http.get(accounts, auth=DPoPAuth(signer, "unknown-token-123")),
            401,
        )
        report.response(
            "the bound token sent as Bearer (downgrade)",
            await http.get(accounts, headers={"Authorization": f"Bearer {token}"}),
            401,
        )
        report.response("no credentials at all", await http.get(accounts), 401)
        report.response("GET /health (public)", await http.get(f"{self.api}/health"), 200)

    async def cache(self, http: httpx.AsyncClient, result: FlowResult) -> None:
        auth = self.auth(result.tokens.access_token)
        before = await self.calls(http)
        statuses = [
            (await http.get(f"{self.api}/accounts", auth=auth)).status_code
            for _ in range(CACHE_CALLS)
        ]
        after = await self.calls(http)
        good = statuses.count(200) == CACHE_CALLS
        print()
        self.report.line(
            good,
            f"{CACHE_CALLS} more calls with fresh proofs",
            f"{statuses.count(200)} x 200, {after - before} Authlete introspection calls "
            "(binding-safe cache hits)",
        )
        self.report.detail(f"Authlete introspection calls in total: {after}")
        print()

    async def as_refusals(self, fapi: FAPIClient, result: FlowResult) -> None:
        await self.refused(
            "the code presented a second time",
            fapi.exchange_code(result.callback, result.pushed),
            "invalid_grant",
        )
        await self.refused(
            "the request_uri opened a second time",
            submit_consent(fapi.http, result.pushed.authorization_url),
            "invalid_request_uri",
        )
        impostor = FAPIClient(
            fapi.http,
            fapi.metadata,
            client_id=fapi.client_id,
            client_key=ProofSigner.generate("PS256"),
            dpop_key=fapi.dpop_key,
            redirect_uri=fapi.redirect_uri,
        )
        await self.refused(
            "PAR with an assertion from an unknown key",
            impostor.push_authorization_request(scope="read:accounts"),
            "invalid_client",
        )

    async def refused(self, title: str, attempt: Awaitable[object], error: str) -> None:
        try:
            await attempt
        except OAuthError as exc:
            status = f"{exc.status} " if exc.status else ""
            self.report.line(exc.error == error, title, f"{status}{exc.error}")
            if exc.description:
                self.report.detail(f'"{exc.description}"')
            return
        except httpx.HTTPError as exc:
            self.report.line(False, title, f"no answer: {type(exc).__name__}")
            return
        self.report.line(False, title, f"accepted, expected {error}")

    async def calls(self, http: httpx.AsyncClient) -> int:
        stats = (await http.get(f"{self.simulator}/sim/stats", headers=SERVICE_AUTH)).json()
        return int(stats["calls"].get("auth/introspection", 0))


def _environment(simulator: str, api_version: str) -> dict[str, str]:
    """The servers' environment: ours, not whatever Authlete settings the shell holds."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED)}
    return simulator_env(simulator, api_version, base=base)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dpop_guard.devtools.demo [--api V3|V2] [--dpop-alg ES256|EdDSA]``: 0 when every
    step behaved."""
    parser = argparse.ArgumentParser(
        prog="python -m dpop_guard.devtools.demo",
        description="The FAPI 2.0 code flow and dpop_guard's refusals, on loopback.",
    )
    parser.add_argument(
        "--api", choices=("V3", "V2"), default="V3", help="the Authlete API version to speak"
    )
    parser.add_argument(
        "--dpop-alg",
        choices=("ES256", "EdDSA"),
        default="ES256",
        help="the algorithm of the DPoP key (the client assertion is PS256)",
    )
    args = parser.parse_args(argv)
    version = args.api
    sim_port, as_port, api_port = free_port(), free_port(), free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    issuer = f"http://127.0.0.1:{as_port}"
    api = f"http://127.0.0.1:{api_port}"
    env = _environment(simulator, version)
    signing = MessageSigningSetup.generate(str(CLIENT_ID)) if available() else None
    print("dpop_guard demo")
    print(
        f"  Authlete simulator    {simulator}  (Authlete API {version}, service "
        f"{DEFAULT_SERVICE_ID})"
    )
    print(f"  Authorization server  {issuer}  (dpop_guard.devtools.demo.authorization_server)")
    print(f"  Accounts API          {api}  (dpop_guard.devtools.demo.accounts, behind dpop_guard)")
    print("  (the simulator is for development only: its credentials are public)")
    uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--no-access-log"]
    servers = {
        "simulator": (
            [sys.executable, "-m", "dpop_guard.devtools.simulator", "--port", str(sim_port)],
            env,
            f"{simulator}/sim/stats",
        ),
        "authorization server": (
            [
                *uvicorn,
                "--factory",
                "dpop_guard.devtools.demo.authorization_server:create_app",
                "--port",
                str(as_port),
            ],
            dict(env, AS_ISSUER=issuer),
            f"{issuer}/.well-known/oauth-authorization-server",
        ),
        "accounts API": (
            [*uvicorn, "dpop_guard.devtools.demo.accounts:app", "--port", str(api_port)],
            dict(env, DPOP_GUARD_PUBLIC_URL=api, **(signing.environment() if signing else {})),
            f"{api}/health",
        ),
    }
    with ExitStack() as stack:
        # The servers' own output (the simulator's warning, uvicorn's) would interleave
        # with the steps; it is kept aside and shown when something goes wrong.
        logs = {name: stack.enter_context(tempfile.TemporaryFile()) for name in servers}
        for name, (command, environ, ready) in servers.items():
            stack.enter_context(process(command, environ, ready, SERVICE_AUTH, stderr=logs[name]))
        # The mTLS leg's API behind nginx (None, and the leg skipped, without nginx).
        try:
            mtls = stack.enter_context(deployment(uvicorn, dict(env)))
        except RuntimeError as exc:
            print(f"\nnginx, in front of the mTLS leg's API, did not start: {exc}")
            return 1
        demo = Demo(
            simulator=simulator,
            authorization_server=issuer,
            api=api,
            api_version=version,
            dpop_alg=args.dpop_alg,
            mtls=mtls,
            signing=signing,
        )
        try:
            failures = asyncio.run(asyncio.wait_for(demo.run(), DEMO_TIMEOUT))
        except StepFailed as exc:
            print(f"\nThe flow stopped: {exc} (the steps after it need its result)")
            failures = -1
        except httpx.HTTPError as exc:
            print(f"\nA server stopped answering: {type(exc).__name__} {exc}")
            failures = -1
        except TimeoutError:
            print(f"\nThe demo did not finish within {DEMO_TIMEOUT:.0f} s")
            failures = -1
        if failures:
            for name, log in logs.items():
                if text := tail(log):
                    print(f"\nWhat the {name} wrote on its standard error:\n{text}")
    if failures:
        if failures > 0:
            print(f"\n{failures} step(s) did not behave as expected")
        return 1
    print("\nEvery step behaved as expected.")
    return 0
