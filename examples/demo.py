"""The demo: the Authlete simulator and the accounts API on loopback, and a DPoP client
showing what passes and what is refused. Run ``make demo`` (or ``python -m examples.demo``
from the repository root)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from dpop_guard.challenges import parse_challenge
from dpop_guard.client import DPoPAuth, ProofSigner
from dpop_guard.introspection.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN

ROOT = Path(__file__).resolve().parent.parent
SERVICE_AUTH = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def process(
    args: list[str], env: dict[str, str], ready_url: str, headers: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args`` from the repository root until the block ends; ready once ``ready_url``
    answers below 500. Also used by the benchmarks."""
    proc = subprocess.Popen(args, cwd=ROOT, env=env)  # noqa: S603 - our own interpreter
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(args)} exited with {proc.returncode}")
            try:
                if httpx.get(ready_url, headers=headers, timeout=0.5).status_code < 500:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{ready_url} did not come up")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def simulator_env(simulator: str) -> dict[str, str]:
    """The environment that points the example (Authlete API V3) at a running simulator."""
    return dict(
        os.environ,
        AUTHLETE_BASE_URL=simulator,
        AUTHLETE_API_VERSION="V3",
        AUTHLETE_SERVICE_APIKEY=DEFAULT_SERVICE_ID,
        AUTHLETE_SERVICE_ACCESSTOKEN=DEFAULT_SERVICE_TOKEN,
    )


def mint_token(simulator: str, signer: ProofSigner, scopes: list[str], *, lifetime: int) -> str:
    """A token for alice bound to ``signer``, from the simulator's /auth/token/create (what
    the authorization server would issue after PAR, the code and the token request)."""
    response = httpx.post(
        f"{simulator}/api/{DEFAULT_SERVICE_ID}/auth/token/create",
        headers=SERVICE_AUTH,
        json={
            "grantType": "AUTHORIZATION_CODE",
            "subject": "alice",
            "scopes": scopes,
            "dpopKeyThumbprint": signer.jkt,
            "accessTokenDuration": lifetime,
        },
    )
    response.raise_for_status()
    token: str = response.json()["accessToken"]
    return token


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
    print(f"  Accounts API        {api}  (uvicorn examples.accounts:app)")
    with (
        process(
            [sys.executable, "-m", "dpop_guard.introspection.simulator", "--port", str(sim_port)],
            env,
            f"{simulator}/sim/stats",
            SERVICE_AUTH,
        ),
        process(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "examples.accounts:app",
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


if __name__ == "__main__":
    sys.exit(main())
