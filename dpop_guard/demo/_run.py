"""``python -m dpop_guard.demo`` (or ``make demo``): the Authlete simulator and the accounts
API on loopback, and a DPoP client showing what passes and what is refused."""

from __future__ import annotations

import sys

import httpx

from ..challenges import parse_challenge
from ..client import DPoPAuth, ProofSigner
from ..simulator import DEFAULT_SERVICE_ID
from . import SERVICE_AUTH, free_port, mint_token, process, simulator_env


def outcome(response: httpx.Response) -> str:
    if response.status_code < 400:
        return f"{response.status_code} OK"
    challenge = response.headers.get("www-authenticate")
    if not challenge:
        return f"{response.status_code} {response.json().get('error', '')}"
    _, params = parse_challenge(challenge)
    if "error" not in params:
        return f"{response.status_code}, challenge: {challenge}"
    extra = f' scope="{params["scope"]}"' if "scope" in params else ""
    return (
        f"{response.status_code} {params.get('error', '')}{extra}\n"
        f'      "{params.get("error_description", "")}"'
    )


class Demo:
    def __init__(self, api: str, simulator: str) -> None:
        self.api, self.simulator = api, simulator
        self.failures = 0

    def step(self, title: str, response: httpx.Response, expected: int) -> None:
        mark = "ok " if response.status_code == expected else "!! "
        if response.status_code != expected:
            self.failures += 1
        print(f"  {mark}{title:<52} {outcome(response)}")

    def mint(self, signer: ProofSigner, scopes: list[str]) -> str:
        return mint_token(self.simulator, signer, scopes, lifetime=600)

    def run(self) -> int:
        signer = ProofSigner.generate("ES256")
        token = self.mint(signer, ["read:accounts"])
        print(f"\nClient key: ES256, thumbprint (jkt) {signer.jkt}")
        print("Access token: DPoP-bound to that key, scope read:accounts, subject alice")
        print(
            "  (issued by the simulator's /auth/token/create, standing in for PAR, the\n"
            "   authorization code and the token request with private_key_jwt)\n"
        )
        client = httpx.Client(base_url=self.api)
        accounts = f"{self.api}/accounts"

        ok = client.get("/accounts", auth=DPoPAuth(signer, token))
        self.step("GET /accounts with a fresh DPoP proof", ok, 200)
        if ok.status_code == 200:
            for account in ok.json()["accounts"]:
                print(
                    f"      {account['account_id']}  {account['nickname']:<8} "
                    f"{account['currency']} {account['balance']:>9}"
                )

        proof = signer.sign(htm="GET", htu=accounts, access_token=token)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        client.get("/accounts", headers=headers)
        self.step(
            "the same proof sent a second time (replay)",
            client.get("/accounts", headers=headers),
            401,
        )

        thief = ProofSigner.generate("ES256")
        self.step(
            "a stolen token with a proof from another key",
            client.get("/accounts", auth=DPoPAuth(thief, token)),
            401,
        )
        self.step(
            "GET /accounts/acc-1001/transactions (scope missing)",
            client.get("/accounts/acc-1001/transactions", auth=DPoPAuth(signer, token)),
            403,
        )
        self.step(
            "an access token that was never issued",
            client.get("/accounts", auth=DPoPAuth(signer, "unknown-token-123")),
            401,
        )
        self.step(
            "the bound token sent as Bearer (downgrade)",
            client.get("/accounts", headers={"Authorization": f"Bearer {token}"}),
            401,
        )
        self.step("no credentials at all", client.get("/accounts"), 401)
        self.step("GET /health (public)", client.get("/health"), 200)

        before = self.calls()
        n = 50
        statuses = [
            client.get("/accounts", auth=DPoPAuth(signer, token)).status_code for _ in range(n)
        ]
        after = self.calls()
        print(
            f"\n  {n} more calls with fresh proofs: {statuses.count(200)} x 200, "
            f"{after - before} Authlete introspection calls (binding-safe cache hits)"
        )
        print(f"  Authlete introspection calls in total: {after}\n")
        client.close()
        if self.failures:
            print(f"{self.failures} step(s) did not behave as expected")
            return 1
        print("Every step behaved as expected.")
        return 0

    def calls(self) -> int:
        stats = httpx.get(f"{self.simulator}/sim/stats", headers=SERVICE_AUTH).json()
        return int(stats["calls"].get("auth/introspection", 0))


def main() -> int:
    sim_port, api_port = free_port(), free_port()
    simulator = f"http://127.0.0.1:{sim_port}"
    api = f"http://127.0.0.1:{api_port}"
    env = dict(simulator_env(simulator), DPOP_GUARD_PUBLIC_URL=api)
    print("dpop_guard demo")
    print(f"  Authlete simulator  {simulator}  (Authlete API V3, service {DEFAULT_SERVICE_ID})")
    print(f"  Accounts API        {api}  (uvicorn dpop_guard.demo.accounts:app)")
    with (
        process(
            [sys.executable, "-m", "dpop_guard.simulator", "--port", str(sim_port)],
            env,
            f"{simulator}/sim/stats",
            SERVICE_AUTH,
        ),
        process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "dpop_guard.demo.accounts:app",
                "--port",
                str(api_port),
                "--log-level",
                "warning",
                "--no-access-log",
            ],
            env,
            f"{api}/health",
        ),
    ):
        return Demo(api, simulator).run()
