"""The README's demo command keeps working."""

from __future__ import annotations

import pytest

from dpop_guard.demo._run import main


@pytest.mark.e2e
def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The demo starts both servers as subprocesses, and every step behaves as expected."""
    assert main() == 0
    out = capsys.readouterr().out
    assert "Every step behaved as expected." in out
    assert "0 Authlete introspection calls" in out
