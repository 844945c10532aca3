"""The shared cases in front of a Django app (tests/frameworks/apps/django_app.py), served by
uvicorn in a thread; the Authlete simulator mints and introspects the tokens."""

from __future__ import annotations

import pytest

from ._cases import FrameworkCases

pytestmark = [pytest.mark.frameworks, pytest.mark.e2e]


class TestDjango(FrameworkCases):
    app_module = "tests.frameworks.apps.django_app"
    enforcer = "middleware"
