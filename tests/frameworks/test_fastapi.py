"""The shared cases in front of a FastAPI app (tests/frameworks/apps/fastapi_app.py), served by
uvicorn in a thread; the Authlete simulator mints and introspects the tokens."""

from __future__ import annotations

import pytest

from ._cases import FrameworkCases

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e]


class TestFastAPI(FrameworkCases):
    app_module = "tests.frameworks.apps.fastapi_app"
    enforcer = "helper"
