from __future__ import annotations

import logging

import pytest


@pytest.fixture(autouse=True)
def _refusals_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The refusal log record carries the internal reason the tests assert."""
    caplog.set_level(logging.INFO, logger="dpop_guard.httpsig")
