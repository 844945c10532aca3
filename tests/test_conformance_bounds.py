"""``dpop-guard conformance`` is bounded against a hostile target (issue 19 section 6): a
total deadline per case that a target dribbling its answer cannot stretch, at most
``MAX_BODY_BYTES`` of an answer read, and the token taken from a file or the environment
rather than the command line. The targets are real asyncio servers on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from dpop_guard import cli
from dpop_guard.client import ProofSigner
from dpop_guard.devtools.conformance import CASES, MAX_BODY_BYTES, _private_jwk, run_conformance

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """A raw TCP server on loopback running ``handler`` per connection; its URL."""
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/accounts"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 1)


async def _read_head(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        await reader.readuntil(b"\r\n\r\n")


def dribbler(head: bytes, interval: float) -> Handler:
    """Sends ``head`` (when given), then one byte every ``interval`` seconds, forever."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        try:
            writer.write(head)
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(interval)
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    return handle


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nDate: x\r\n\r\n",  # a slow body
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # slow headers: the head never ends
    ],
    ids=["body", "headers"],
)
async def test_a_dribbling_target_cannot_hold_a_case(head: bytes) -> None:
    """Each case ends at its deadline, whatever the per-read timeout would allow: the
    dribble (a byte every 50 ms) keeps every read alive."""
    signer = ProofSigner.generate("ES256")
    async with serve(dribbler(head, 0.05)) as url:
        outcomes = await run_conformance(
            url, token="t", signer=signer, cases=CASES[:2], deadline=0.3
        )
    assert [o.status for o in outcomes] == [None, None]
    assert not any(o.passed for o in outcomes)
    assert all(o.detail == "no complete answer within 0.3 s" for o in outcomes)


async def test_only_a_bounded_part_of_a_huge_answer_is_read() -> None:
    """A 100 MB answer: the runner stops reading after MAX_BODY_BYTES and closes the
    connection, so the server cannot push more than that plus the socket buffers."""
    sent: list[int] = []
    size = 100 * 1024 * 1024

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_head(reader)
        total = 0
        chunk = b"\0" * 65536
        try:
            writer.write(f"HTTP/1.1 401 Unauthorized\r\nContent-Length: {size}\r\n\r\n".encode())
            while total < size:
                writer.write(chunk)
                await writer.drain()
                total += len(chunk)
        except (ConnectionError, OSError):
            pass
        finally:
            sent.append(total)
            writer.close()

    signer = ProofSigner.generate("ES256")
    async with serve(handle) as url:
        outcomes = await run_conformance(url, token="t", signer=signer, cases=CASES[:1])
        for _ in range(100):  # the handler notices the closed connection on its next write
            if sent:
                break
            await asyncio.sleep(0.01)
    assert outcomes[0].status == 401
    assert sent and sent[0] < MAX_BODY_BYTES + 16 * 1024 * 1024 < size


def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    return code, out.getvalue(), err.getvalue()


def _key(tmp_path: Path) -> Path:
    signer = ProofSigner.generate("ES256")
    key = tmp_path / "key.json"
    key.write_text(json.dumps(_private_jwk(signer) | {"alg": signer.alg}))
    return key


class TestTokenSources:
    """Where the command line takes the token from; the target here refuses nothing and
    answers at once, so each run is short."""

    def test_from_the_environment(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """--token-env reads the named variable (by default DPOP_CONFORMANCE_TOKEN)."""
        monkeypatch.setenv("DPOP_CONFORMANCE_TOKEN", " secret-token-value \n")
        argv = ["conformance", "http://127.0.0.1:9/", "--token-env", "--key", str(_key(tmp_path))]
        argv += ["--deadline", "2"]
        code, out, err = _cli(argv)
        assert code == 1  # nothing listens on port 9: every case fails, none hangs
        assert "secret-token-value" not in out + err
        assert "warning" not in err

    def test_empty_environment_variable(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A variable that holds no token is a usage error (2), named, before any request."""
        monkeypatch.setenv("MY_TOKEN", "  ")
        argv = ["conformance", "http://127.0.0.1:9/", "--token-env", "MY_TOKEN"]
        code, _, err = _cli([*argv, "--key", str(_key(tmp_path))])
        assert code == 2 and "--token-env MY_TOKEN: holds no token" in err

    def test_unreadable_file(self, tmp_path: Path) -> None:
        argv = ["conformance", "http://127.0.0.1:9/", "--token-file", str(tmp_path / "none")]
        code, _, err = _cli([*argv, "--key", str(_key(tmp_path))])
        assert code == 2 and "unreadable" in err

    def test_token_on_the_command_line_warns(self, tmp_path: Path) -> None:
        """--token still works (deprecated) and warns that it shows in the process list."""
        argv = ["conformance", "http://127.0.0.1:9/", "--token=-abc", "--deadline", "2"]
        code, out, err = _cli([*argv, "--key", str(_key(tmp_path))])
        assert code == 1 and "process list" in err and "-abc" not in out + err

    def test_one_source_only(self, tmp_path: Path) -> None:
        argv = ["conformance", "http://127.0.0.1:9/", "--token=a", "--token-env", "X"]
        with pytest.raises(SystemExit):
            _cli([*argv, "--key", str(_key(tmp_path))])
