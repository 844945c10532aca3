"""Reasons are a closed set: every one has a home, the dynamic ones have a fixed form, and
the data that names reasons (the hostile corpus) names real ones."""

from __future__ import annotations

import json
import logging
from itertools import combinations
from pathlib import Path
from typing import get_args

import httpx
import pytest

from dpop_guard import _reasons
from dpop_guard.errors import IntrospectionUnavailable
from dpop_guard.introspection import RequestFacts
from dpop_guard.introspection._breaker import outage
from dpop_guard.introspection.authlete import AuthleteIntrospector, AuthleteSettings

CORPUS = Path(__file__).parent / "hostile" / "corpus.json"
GROUPS = {
    name: _reasons._members(getattr(_reasons, name))
    for name in (
        "ProofReason",
        "RequestReason",
        "TokenReason",
        "JWTReason",
        "IntrospectionReason",
        "ReplayReason",
        "ProxyReason",
        "MTLSReason",
        "StepUpReason",
        "ForwardAuthReason",
        "ServiceReason",
    )
}


class TestTheSet:
    def test_groups_are_disjoint_and_make_up_reason(self) -> None:
        """Each reason belongs to exactly one group, and Reason is their union."""
        for (a, left), (b, right) in combinations(GROUPS.items(), 2):
            assert not left & right, (a, b, left & right)
        assert frozenset().union(*GROUPS.values()) == _reasons.REASONS

    def test_reasons_are_snake_case_words(self) -> None:
        """A reason is a fixed lower-case word: nothing a peer sent is ever part of it."""
        for reason in _reasons.REASONS:
            assert reason.replace("_", "").isalpha() and reason.islower(), reason

    @pytest.mark.parametrize("upstream", get_args(_reasons.Upstream))
    @pytest.mark.parametrize("what", get_args(_reasons.Outage))
    def test_every_outage_is_a_reason(self, upstream: str, what: str) -> None:
        """``outage()`` builds ``<upstream>_<what>``; every pair is a declared reason."""
        assert outage(upstream, what) in _reasons.INTROSPECTION_REASONS  # type: ignore[arg-type]

    def test_the_hostile_corpus_names_real_reasons(self) -> None:
        """A renamed reason cannot leave the corpus expecting one that no longer exists."""
        cases = json.loads(CORPUS.read_text())["cases"]
        named = {case["expect"].get("reason") for case in cases} - {None}  # None: accepted
        assert named and named <= _reasons.REASONS, named - _reasons.REASONS


SETTINGS = AuthleteSettings(
    base_url="https://authlete.test/",
    api_version="V3",
    api_key="987",
    access_token="svc-t0ken",
    timeout=0.5,
)
FACTS = RequestFacts(method="GET", htu="https://rs/accounts", proof="h.p.s", jkt="JKT")


class TestHTTPStatus:
    @pytest.mark.parametrize(
        ("status", "reason"),
        [
            (401, "authlete_credentials_refused"),
            (403, "authlete_credentials_refused"),
            (404, "authlete_http_error"),
            (500, "authlete_server_error"),
            (599, "authlete_server_error"),
        ],
    )
    async def test_status_is_kept_beside_the_reason(
        self, status: int, reason: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A non-200 answer's reason is its class (credentials refused, server error, any
        other); the status is on the error and in the log record, never in the reason
        (metrics by reason stay bounded)."""
        caplog.set_level(logging.WARNING, logger="dpop_guard.introspection")
        transport = httpx.MockTransport(lambda request: httpx.Response(status))
        async with httpx.AsyncClient(transport=transport) as client:
            introspector = AuthleteIntrospector(client, SETTINGS, breaker=None)
            with pytest.raises(IntrospectionUnavailable) as info:
                await introspector.introspect("tok", request=FACTS)
        assert (info.value.reason, info.value.upstream_status) == (reason, status)
        logged = [r for r in caplog.records if getattr(r, "dpop_guard_upstream_status", None)]
        assert logged and all(r.dpop_guard_upstream_status == status for r in logged)  # type: ignore[attr-defined]
        assert all(r.dpop_guard_reason == reason for r in logged)  # type: ignore[attr-defined]
