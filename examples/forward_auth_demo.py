"""``make demo-forward-auth``: an API with no Python in it, protected through nginx.

The API is nginx itself, answering a fixed JSON account that names the owner it was told
(``X-Auth-Subject``). In front: Debian's nginx with the shipped
``deploy/forward-auth/nginx.conf``, asking ``dpop-guard forward-auth`` about every request;
behind that, the Authlete simulator. The demo mints a DPoP-bound token and shows a request
passing, its replay, a request without a token, another key, and a client forging its
identity, each with what the client got.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

from dpop_guard.client import ProofSigner
from dpop_guard.devtools.demo import free_port, mint_token, simulator_env
from dpop_guard.devtools.demo import process as serve
from dpop_guard.devtools.demo._nginx import ProxyProcess, find_command, render

ROOT = Path(__file__).resolve().parents[1]
PUBLIC_HOST = "127.0.0.1"
API_CONF = """worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr error;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{body}\\n';
        }}
    }}
}}
"""
# The account, with the owner and scopes nginx was told (by the forward-auth answer only).
BODY = (
    '{{"account_id": "acc-1001", "owner": "$http_x_auth_subject", "scope": "$http_x_auth_scope"}}'
)
ROUTES = "dpop_guard.devtools.demo.accounts:ROUTES"


def _nginx(directory: Path, conf: str, port: int) -> ProxyProcess:
    command = find_command("nginx")
    if command is None:
        raise SystemExit("nginx is missing: run tools/ensure-command nginx nginx")
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    argv = [command, "-e", "stderr", "-p", str(directory), "-c", str(path), "-g", "daemon off;"]
    return ProxyProcess(argv, port, directory / "nginx.log")


@contextmanager
def stack(directory: Path) -> Iterator[tuple[str, str]]:
    """The simulator, the API, the forward-auth server and nginx; yields the public URL
    and the simulator's."""
    with ExitStack() as stack:
        sim_port, api_port, auth_port, front_port = (free_port() for _ in range(4))
        simulator = f"http://127.0.0.1:{sim_port}"
        public = f"http://{PUBLIC_HOST}:{front_port}"
        env = simulator_env(simulator) | {"DPOP_GUARD_PUBLIC_URL": public}
        sim = [sys.executable, "-m", "dpop_guard.devtools.simulator", "--port", str(sim_port)]
        stack.enter_context(serve(sim, env, f"{simulator}/sim/stats"))
        api_dir = directory / "api"
        stack.enter_context(
            _nginx(api_dir, API_CONF.format(prefix=api_dir, port=api_port, body=BODY), api_port)
        )
        auth_env = env | {
            "DPOP_GUARD_FORWARD_AUTH_PROXY": "nginx",
            "DPOP_GUARD_TRUSTED_PROXIES": "127.0.0.1",
        }
        auth = [
            *(sys.executable, "-m", "dpop_guard.cli", "forward-auth"),
            *("--port", str(auth_port), "--routes", ROUTES),
        ]
        stack.enter_context(
            serve(auth, auth_env, f"http://127.0.0.1:{auth_port}/livez", cwd=str(ROOT))
        )
        front_dir = directory / "front"
        front_dir.mkdir()
        conf = render(
            ROOT / "deploy" / "forward-auth" / "nginx.conf",
            {
                "listen": f"127.0.0.1:{front_port}",
                "auth": f"127.0.0.1:{auth_port}",
                "upstream": f"127.0.0.1:{api_port}",
                "prefix": str(front_dir),
            },
        )
        stack.enter_context(_nginx(front_dir, conf, front_port))
        yield public, simulator


def _show(title: str, response: httpx.Response) -> None:
    print(f"\n== {title}: {response.status_code}")
    for name in ("www-authenticate", "dpop-nonce", "x-fapi-interaction-id", "cache-control"):
        if name in response.headers:
            print(f"   {name}: {response.headers[name]}")
    print(f"   {response.text.strip()}")


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp)) as (public, simulator):
        print(f"nginx with deploy/forward-auth/nginx.conf on {public}, in front of an nginx API")
        signer = ProofSigner.generate("ES256")
        token = mint_token(simulator, signer, ["read:accounts"], lifetime=600)
        url = public + "/accounts"
        proof = signer.sign(htm="GET", htu=url, access_token=token)
        headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        _show("a DPoP-bound token and a fresh proof", httpx.get(url, headers=headers))
        _show("the same proof again (a replay)", httpx.get(url, headers=headers))
        _show("no token", httpx.get(url))
        thief = ProofSigner.generate("ES256")
        stolen = {
            "Authorization": f"DPoP {token}",
            "DPoP": thief.sign(htm="GET", htu=url, access_token=token),
        }
        _show("the token with another key's proof", httpx.get(url, headers=stolen))
        forged = {"X-Auth-Subject": "mallory", "X-Original-URI": "/health"}
        _show("a client forging its identity and the target", httpx.get(url, headers=forged))
        proof = signer.sign(htm="GET", htu=url, access_token=token)
        forged_ok = {"Authorization": f"DPoP {token}", "DPoP": proof, "X-Auth-Subject": "mallory"}
        _show("a good request carrying a forged X-Auth-Subject", httpx.get(url, headers=forged_ok))
    return 0


if __name__ == "__main__":
    sys.exit(main())
