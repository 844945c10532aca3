"""The refusal log: its fields, the shipped JSON formatter and dictConfig, and that no
formatted record ever holds a token, a proof or a header value."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route as Endpoint

import dpop_guard
from dpop_guard import AuthleteIntrospector, DPoPAuth, ProofSigner, Route
from dpop_guard._decision import FIELDS, MAX_FIELD_CHARS
from dpop_guard.devtools.demo import free_port
from dpop_guard.devtools.simulator import DEFAULT_CLIENT_ID
from dpop_guard.introspection._breaker import CircuitBreaker
from dpop_guard.logs import JSONFormatter, logging_config
from dpop_guard.starlette import requires_dpop
from dpop_guard.testing import make_proof
from tests._support.harness import ORIGIN, Harness, authlete_settings

ROOT = Path(__file__).resolve().parent.parent
_CONFIGURED = ("dpop_guard", "uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture(name="configured")
def _configured() -> Iterator[Callable[[], list[str]]]:
    """``logging_config()`` applied, its stderr handler writing to a buffer, the loggers
    restored afterwards; yields a function returning the lines written so far."""
    saved = {
        name: (lg.handlers[:], lg.level, lg.propagate)
        for name in _CONFIGURED
        for lg in [logging.getLogger(name)]
    }
    logging.config.dictConfig(logging_config())
    buffer = io.StringIO()
    (handler,) = logging.getLogger("dpop_guard").handlers
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield lambda: buffer.getvalue().splitlines()
    finally:
        for name, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(name)
            for old in lg.handlers:
                if old not in handlers:
                    old.close()
            lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def _records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if hasattr(r, "dpop_guard_outcome")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestRefusalRecord:
    async def test_fields_after_the_token_was_looked_up(
        self, h: Harness, signer: ProofSigner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A token without the route's scope (403): the record names the method, the
        path without its query string, the peer, the token's client and subject, the
        status, the wire error and the internal reason."""
        caplog.set_level(logging.INFO, logger="dpop_guard")
        token = h.token(signer, scopes=("other",))
        proof = make_proof(signer, htm="GET", htu=ORIGIN + "/accounts", access_token=token)
        response = await h.client.get(
            "/accounts?secret=query",
            headers={"Authorization": f"DPoP {token}", "DPoP": proof},
        )
        assert response.status_code == 403
        (record,) = _records(caplog)
        assert record.levelno == logging.INFO
        fields = {name: getattr(record, name) for name in FIELDS}
        assert fields | {"dpop_guard_latency_ms": 0} == {
            "dpop_guard_outcome": "rejected",
            "dpop_guard_reason": "scope_missing",
            "dpop_guard_error": "insufficient_scope",
            "dpop_guard_status": 403,
            "dpop_guard_method": "GET",
            "dpop_guard_path": "/accounts",
            "dpop_guard_peer": "127.0.0.1",
            "dpop_guard_client_id": str(DEFAULT_CLIENT_ID),
            "dpop_guard_subject": "alice",
            "dpop_guard_latency_ms": 0,
            "dpop_guard_cache_hit": False,
            "dpop_guard_interaction_id": response.headers["x-fapi-interaction-id"],
        }
        message = record.getMessage()
        assert "GET /accounts: scope_missing (403 insufficient_scope)" in message
        assert "subject=alice" in message and "secret=query" not in message

    async def test_fields_before_any_lookup(
        self, h: Harness, signer: ProofSigner, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A proof for another method (401): no client or subject is known, the rest is
        there."""
        caplog.set_level(logging.INFO, logger="dpop_guard")
        token = h.token(signer)
        assert (await h.call(token, signer, method="POST", claims={"htm": "GET"})).status_code
        (record,) = _records(caplog)
        assert (record.dpop_guard_method, record.dpop_guard_path) == ("POST", "/accounts")  # type: ignore[attr-defined]
        assert record.dpop_guard_error == "invalid_dpop_proof"  # type: ignore[attr-defined]
        assert record.dpop_guard_reason == "htm_mismatch"  # type: ignore[attr-defined]
        assert record.dpop_guard_client_id is None  # type: ignore[attr-defined]
        assert record.dpop_guard_subject is None  # type: ignore[attr-defined]

    async def test_outage_refusal(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A 503 from an unreachable Authlete: the refusal says temporarily_unavailable and
        the reason; the outage itself is one WARNING on dpop_guard.introspection."""
        caplog.set_level(logging.INFO, logger="dpop_guard")
        http = httpx.AsyncClient()
        url = f"http://127.0.0.1:{_closed_port()}"
        h = make_harness(
            introspector=AuthleteIntrospector(
                http, authlete_settings(url), breaker=CircuitBreaker(threshold=5)
            )
        )
        h.http = http
        token = h.token(signer)
        for _ in range(2):
            assert (await h.call(token, signer)).status_code == 503
        refusals = _records(caplog)
        assert [r.dpop_guard_error for r in refusals] == ["temporarily_unavailable"] * 2  # type: ignore[attr-defined]
        assert {r.dpop_guard_reason for r in refusals} == {"authlete_unreachable"}  # type: ignore[attr-defined]
        outages = [r for r in caplog.records if r.name == "dpop_guard.introspection"]
        assert len(outages) == 1 and outages[0].levelno == logging.WARNING
        assert url in outages[0].getMessage()

    async def test_control_characters_escaped_and_long_paths_cut(
        self, h: Harness, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A percent-decoded line feed in the path cannot forge a log line, and a long
        path is cut."""
        caplog.set_level(logging.INFO, logger="dpop_guard")
        await h.client.get("/accounts%0Aforged%20line", headers={"Authorization": "DPoP x"})
        await h.client.get("/accounts/" + "a" * 5000, headers={"Authorization": "DPoP x"})
        first, second = _records(caplog)
        assert "\n" not in first.getMessage()
        assert first.dpop_guard_path == "/accounts\\x0aforged line"  # type: ignore[attr-defined]
        assert len(second.dpop_guard_path) == MAX_FIELD_CHARS  # type: ignore[attr-defined]

    async def test_endpoint_refusal_is_logged(self, caplog: pytest.LogCaptureFixture) -> None:
        """A refusal by requires_dpop in the app (a scope the token lacks) is logged like
        the middleware's, with the credentials' client and subject."""
        caplog.set_level(logging.INFO, logger="dpop_guard")

        @requires_dpop("write:accounts")
        async def accounts(request: Request) -> JSONResponse:
            return JSONResponse({})

        guard = dpop_guard.from_env(environ={"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"})
        app = Starlette(routes=[Endpoint("/accounts", accounts)], lifespan=guard.lifespan)
        guard.install(app)
        signer = ProofSigner.generate("ES256")
        assert guard.simulator is not None
        token = guard.simulator.create_token(
            subject="bob", scopes=["read:accounts"], jkt=signer.jkt
        )
        transport = httpx.ASGITransport(app=app)
        async with (
            guard.lifespan(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            response = await client.get("/accounts", auth=DPoPAuth(signer, token))
        assert response.status_code == 403
        rejected = [r for r in _records(caplog) if r.dpop_guard_outcome == "rejected"]  # type: ignore[attr-defined]
        (record,) = rejected
        assert record.dpop_guard_subject == "bob"  # type: ignore[attr-defined]
        assert record.dpop_guard_error == "insufficient_scope"  # type: ignore[attr-defined]
        assert record.dpop_guard_path == "/accounts"  # type: ignore[attr-defined]


class TestShippedConfig:
    async def test_refusals_visible_as_json_lines(
        self, h: Harness, signer: ProofSigner, configured: Callable[[], list[str]]
    ) -> None:
        """Under logging_config(), a refusal is one JSON line on stderr at INFO, with the
        record's fields (None left out)."""
        await h.call(h.token(signer), signer, claims={"htm": "POST"})
        lines = configured()
        (line,) = [x for x in lines if '"dpop_guard_outcome"' in x]
        entry = json.loads(line)
        assert entry["level"] == "INFO" and entry["logger"] == "dpop_guard"
        assert entry["dpop_guard_reason"] == "htm_mismatch"
        assert entry["dpop_guard_status"] == 401
        assert entry["time"].endswith("Z")
        assert "dpop_guard_subject" not in entry  # unknown: left out

    def test_config_shapes(self) -> None:
        """The dictionary configures the guard's and uvicorn's loggers, and plain text
        when asked."""
        config = logging_config("WARNING", json_lines=False, uvicorn=False)
        assert set(config["loggers"]) == {"dpop_guard"}
        assert config["loggers"]["dpop_guard"]["level"] == "WARNING"
        assert config["handlers"]["stderr"]["formatter"] == "plain"
        full = logging_config()
        assert set(full["loggers"]) == set(_CONFIGURED)
        assert dpop_guard.logging_config() == full

    def test_json_formatter(self) -> None:
        """Extras become fields; values JSON cannot hold are written as text."""
        record = logging.LogRecord("x", logging.WARNING, __file__, 1, "a %s", ("b",), None)
        record.custom = {1, 2}
        record.empty = None
        entry = json.loads(JSONFormatter().format(record))
        assert entry["message"] == "a b" and entry["custom"] == "{1, 2}"
        assert "empty" not in entry and entry["level"] == "WARNING"


class TestNoSecretInAnyRecord:
    async def test_refusals_with_a_real_token(
        self,
        make_harness: Callable[..., Harness],
        signer: ProofSigner,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Every kind of refusal made with a real token and proof, formatted by the JSON
        and the plain formatter at DEBUG: no token, proof, header value or nonce
        secret appears in any record."""
        caplog.set_level(logging.DEBUG)
        secret = b"nonce-secret-0123456789abcdef"
        h = make_harness(
            routes=(Route("/accounts", scopes=("read:accounts",)),),
            nonce_secret=secret,
        )
        token = h.token(signer)
        unscoped = h.token(signer, scopes=("other",))
        proofs: list[str] = []

        def proof(**kwargs: Any) -> str:
            made = make_proof(
                signer,
                htm=kwargs.pop("htm", "GET"),
                htu=ORIGIN + "/accounts",
                access_token=kwargs.pop("access_token", token),
                **kwargs,
            )
            proofs.append(made)
            return made

        replayed = proof()
        cases: list[tuple[str, dict[str, str]]] = [
            ("/accounts", {"Authorization": f"DPoP {token}", "DPoP": replayed}),
            ("/accounts", {"Authorization": f"DPoP {token}", "DPoP": replayed}),  # replay
            ("/accounts", {"Authorization": f"DPoP {token}", "DPoP": proof(htm="POST")}),
            ("/accounts", {"Authorization": f"DPoP {token}", "DPoP": proof(header={"typ": "JWT"})}),
            ("/accounts", {"Authorization": f"Bearer {token}"}),
            ("/accounts", {"Authorization": f"DPoP {token}"}),
            (
                "/accounts?access_token=" + token,
                {"Authorization": f"DPoP {token}", "DPoP": proof()},
            ),
            (
                "/accounts",
                {"Authorization": f"DPoP {unscoped}", "DPoP": proof(access_token=unscoped)},
            ),
            (
                "/accounts",
                {
                    "Authorization": "DPoP not-a-live-token",
                    "DPoP": proof(access_token="not-a-live-token"),
                },
            ),
            ("/accounts", {"Authorization": f"DPoP {token}", "DPoP": proof(access_token="other")}),
        ]
        statuses = []
        for path, headers in cases:
            statuses.append((await h.client.get(path, headers=headers)).status_code)
        assert statuses.count(200) == 2  # the first use, and the query-string case
        assert len(_records(caplog)) == len(cases)
        formatters = [
            JSONFormatter(),
            logging.Formatter(logging_config(json_lines=False)["formatters"]["plain"]["format"]),
        ]
        ours = [r for r in caplog.records if r.name.split(".")[0] == "dpop_guard"]
        text = "\n".join(f.format(r) for r in ours for f in formatters)
        forbidden = [token, unscoped, "not-a-live-token", secret.decode(), *proofs]
        # Each secret whole, and its signature part (a proof's last segment) alone.
        forbidden += [p.rsplit(".", 1)[1] for p in proofs]
        for value in forbidden:
            assert value not in text
        assert "Authorization" not in text and "DPoP ey" not in text


_APP = """
import dpop_guard
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


async def accounts(request):
    return JSONResponse({})


guard = dpop_guard.from_env()
app = Starlette(routes=[Route("/accounts", accounts)], lifespan=guard.lifespan)
guard.install(app)
"""


@pytest.mark.e2e
def test_visible_under_the_uvicorn_command_line(tmp_path: Path) -> None:
    """As the docs say: the dictionary written to logging.json and passed to uvicorn's
    --log-config. A refused request is a JSON line on stderr, beside uvicorn's own start-up
    line, and holds neither the token nor the header."""
    (tmp_path / "logging.json").write_text(json.dumps(logging_config()))
    (tmp_path / "app.py").write_text(_APP)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DPOP_GUARD_", "AUTHLETE_"))}
    env |= {"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "uvicorn", "app:app", "--port", str(port)]
    process = subprocess.Popen(  # noqa: S603 - this interpreter, fixed arguments
        [*command, "--log-config", "logging.json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    token = "tok-" + "x" * 40
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/accounts?q=1",
                    headers={"Authorization": f"DPoP {token}"},
                )
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        assert response.status_code == 401
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    (refusal,) = [e for e in entries if e.get("dpop_guard_outcome") == "rejected"]
    assert refusal["level"] == "INFO" and refusal["dpop_guard_path"] == "/accounts"
    assert refusal["dpop_guard_reason"] == "dpop_header_missing"
    assert any(e["logger"] == "uvicorn.error" for e in entries)  # uvicorn's own lines
    assert token not in stderr and "Authorization" not in stderr
