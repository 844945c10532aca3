"""``make demo-forward-auth`` (examples/forward_auth_demo.py) runs and tells its story."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_demo_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "examples.forward_auth_demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    answers = [line for line in out.splitlines() if line.startswith("== ")]
    assert [line.rsplit(": ", 1)[1] for line in answers] == [
        "200",
        "401",
        "401",
        "401",
        "401",
        "200",
    ]
    assert out.count('"owner": "alice"') == 2 and "mallory" not in out
