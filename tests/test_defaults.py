"""The parts the middleware builds for itself, and the fleet warning's worker count."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from dpop_guard._defaults import _supervisor_workers

# Says it runs (so its /proc cmdline is its own, not the parent's before exec), then waits
# for its stdin to close: no sleep, no timer.
_IDLE = "import sys; print('ready', flush=True); sys.stdin.read()"


@pytest.fixture(name="spawn")
def _spawn() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()


class TestSupervisorWorkers:
    @pytest.mark.parametrize(
        ("args", "expected"),
        [
            ([], 1),
            (["--workers", "3"], 3),
            (["--workers=2"], 2),
            (["-w", "1"], 1),
            (["--workers", "many"], None),
        ],
    )
    def test_command_line(
        self, spawn: list[subprocess.Popen[bytes]], args: list[str], expected: int | None
    ) -> None:
        """The count comes from the supervisor's own command line (``--workers N``, ``-w N``,
        ``--workers=N``); one that names none is one worker, one that cannot be read
        is unknown."""
        process = subprocess.Popen(  # noqa: S603 - our own interpreter
            [sys.executable, "-c", _IDLE, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        spawn.append(process)
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        assert _supervisor_workers(process.pid) == expected

    def test_unreadable(self) -> None:
        """No such process: unknown, so the caller warns rather than stays silent."""
        assert _supervisor_workers(2**22 + 12345) is None
