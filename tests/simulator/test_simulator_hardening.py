"""The simulator never answers a client with a 500: bounded bodies, strict JSON, and every
``/auth/token/create`` field type- and range-checked (one test per rule)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN, SimulatorState
from dpop_guard.devtools.simulator._app import MAX_API_BODY

V3 = {"Authorization": f"Bearer {DEFAULT_SERVICE_TOKEN}"}
CREATE = f"/api/{DEFAULT_SERVICE_ID}/auth/token/create"
INTROSPECT = f"/api/{DEFAULT_SERVICE_ID}/auth/introspection"


@pytest.fixture(name="http")
async def _http(simulator_url: str) -> Any:
    async with httpx.AsyncClient(base_url=simulator_url, headers=V3) as client:
        yield client


class TestTokenCreate:
    @pytest.mark.parametrize(
        "body",
        [
            {"clientId": "9" * 5000},  # int() of it would cost quadratic time
            {"clientId": "abc"},
            {"clientId": -5},
            {"clientId": True},
            {"accessTokenDuration": "soon"},
            {"accessTokenDuration": -1},
            {"accessTokenDuration": 10**30},
            {"scopes": [1, 2]},
            {"scopes": {"a": 1}},
            {"subject": 5},
            {"dpopKeyThumbprint": ["x"]},
            {"certificateThumbprint": "not-a-thumbprint"},
            {"resources": ["relative/path"]},
            {"resources": "https://a.example#frag"},
            {"acr": 1},
            {"authTime": "now"},
            {"authTime": -3},
            {"authorizationDetails": [{"no": "type"}]},
            {"authorizationDetails": "x"},
            {"consentedClaims": [None]},
            {"grantId": {}},
            {"clientIdAlias": 3},
        ],
    )
    async def test_bad_field_is_bad_request(
        self, http: httpx.AsyncClient, simulator: SimulatorState, body: dict[str, Any]
    ) -> None:
        """A field of the wrong type or range is Authlete's BAD_REQUEST, no token made."""
        before = len(simulator.tokens)
        response = await http.post(CREATE, json={"subject": "a", "scopes": ["s"]} | body)
        assert response.status_code == 200
        assert response.json()["action"] == "BAD_REQUEST"
        assert len(simulator.tokens) == before

    async def test_large_client_id_within_int64_is_taken(self, http: httpx.AsyncClient) -> None:
        """An 18-digit numeric client id (Authlete's size) is accepted, as a number or text."""
        for value in (123456789012345678, "123456789012345678"):
            response = await http.post(CREATE, json={"subject": "a", "clientId": value})
            assert response.json()["clientId"] == 123456789012345678


class TestBodies:
    @pytest.mark.parametrize("path", [CREATE, INTROSPECT])
    async def test_oversized_body_is_400(self, http: httpx.AsyncClient, path: str) -> None:
        """A body over the cap is refused before it is parsed."""
        body = b'{"token":"' + b"a" * (MAX_API_BODY + 1) + b'"}'
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400 and response.json()["resultCode"] == "A001201"

    @pytest.mark.parametrize("path", [CREATE, INTROSPECT])
    async def test_deep_json_is_400(self, http: httpx.AsyncClient, path: str) -> None:
        """JSON nested past the parser's limit is a malformed body, never a 500."""
        depth = MAX_API_BODY // 2 - 8
        body = b'{"token":' + b"[" * depth + b"]" * depth + b"}"
        assert len(body) <= MAX_API_BODY
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400

    @pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
    async def test_non_finite_numbers_are_400(
        self, http: httpx.AsyncClient, constant: bytes
    ) -> None:
        """NaN and infinities are not JSON: refused, so no time window sees them."""
        body = b'{"subject":"a","accessTokenDuration":' + constant + b"}"
        response = await http.post(
            CREATE, content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400

    async def test_too_many_form_fields_is_400(self, http: httpx.AsyncClient) -> None:
        """A form body is bounded in fields too."""
        body = "&".join(f"f{i}=1" for i in range(200))
        response = await http.post(
            INTROSPECT,
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400

    @pytest.mark.parametrize("body", [b"[", b'{"count": "x"}', b'{"latency": "slow"}'])
    async def test_fault_hook_refuses_garbage(self, http: httpx.AsyncClient, body: bytes) -> None:
        """The /sim/faults hook answers a malformed body with 400."""
        response = await http.post(
            "/sim/faults", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
