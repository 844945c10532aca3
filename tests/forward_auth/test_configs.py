"""The shipped proxy configurations (deploy/forward-auth) agree with the server: each sets
the headers of its proxy's contract, copies every default identity header from the answer
(and nothing from the client), and fails closed. nginx and Caddy also run end to end
(test_proxies_e2e.py); Envoy and Traefik, not in Debian's archive, are held to their files
here, and their check requests are sent to the server in test_adapter.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dpop_guard.forward_auth import CONTRACTS, DEFAULT_IDENTITY_HEADERS

from ._support import environment

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "forward-auth"
IDENTITY = [header for _, header in DEFAULT_IDENTITY_HEADERS]


def _text(name: str) -> str:
    return (DEPLOY / name).read_text()


@pytest.mark.parametrize("name", ["nginx.conf", "nginx-mtls.conf"])
def test_nginx_sets_its_contract_and_the_identity(name: str) -> None:
    text = _text(name)
    contract = CONTRACTS["nginx"]
    for named in (contract.method, contract.target, contract.host, contract.proto):
        assert named is not None
        assert re.search(rf"proxy_set_header {named.decode()} \$\w+;", text, re.I), named
    for header in IDENTITY:
        variable = "$dpop_guard_" + header.lower().removeprefix("x-auth-").replace("-", "_")
        assert f"proxy_set_header {header} {variable};" in text
        assert f"$upstream_http_{header.lower().replace('-', '_')}" in text
    assert "keepalive" in text and "error_page 500 502 503 504 = @dpop_guard_unavailable" in text


def test_caddy_copies_the_identity_and_strips_the_clients() -> None:
    text = _text("Caddyfile")
    copied = re.search(r"^\s*copy_headers ([^{\n]+)", text, re.M)
    assert copied is not None and set(IDENTITY) <= set(copied.group(1).split())
    for prefix in ("X-Auth-", "X-Auth_", "X_Auth-", "X_Auth_"):
        assert f"request_header -{prefix}*" in text, prefix


def test_envoy_config_matches_the_server() -> None:
    text = _text("envoy.yaml")
    prefix = re.search(r"path_prefix: (\S+)", text)
    assert prefix is not None
    env = environment("http://simulator", "envoy", "https://api.example")
    assert prefix.group(1) == env["DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"]
    for header in ("dpop", "x-forwarded-proto"):
        assert f"- exact: {header}\n" in text
    upstream = text.split("allowed_upstream_headers:")[1].split("allowed_client_headers:")[0]
    for header in IDENTITY:
        assert f"- exact: {header.lower()}" in upstream
        assert f"- remove: {header.lower()}" in text
    assert "failure_mode_allow: false" in text
    assert "status_on_error: { code: ServiceUnavailable }" in text


def test_traefik_config_matches_the_server() -> None:
    text = _text("traefik-dynamic.yml")
    assert "trustForwardHeader: false" in text
    sent = text.split("authRequestHeaders:")[1].split("authResponseHeaders:")[0]
    assert {"Authorization", "DPoP"} <= set(re.findall(r"- (\S+)", sent))
    copied = text.split("authResponseHeaders:")[1].split("routers:")[0]
    assert set(IDENTITY) <= set(re.findall(r"- (\S+)", copied))
