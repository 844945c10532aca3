"""What the forward-auth tests share: the environment of a forward-auth server in front
of the Authlete simulator, and the proxies' check requests as data."""

from __future__ import annotations

from collections.abc import Mapping

from dpop_guard.devtools.simulator import DEFAULT_SERVICE_ID, DEFAULT_SERVICE_TOKEN
from tests._support.harness import ROUTES

__all__ = ["ROUTES", "environment"]


def environment(simulator_url: str, proxy: str, public_url: str, **extra: str) -> Mapping[str, str]:
    """The variables of a forward-auth server for ``proxy``, trusting 127.0.0.1."""
    env = {
        "AUTHLETE_BASE_URL": simulator_url,
        "AUTHLETE_API_VERSION": "V3",
        "AUTHLETE_SERVICE_APIKEY": DEFAULT_SERVICE_ID,
        "AUTHLETE_SERVICE_ACCESSTOKEN": DEFAULT_SERVICE_TOKEN,
        "DPOP_GUARD_PUBLIC_URL": public_url,
        "DPOP_GUARD_TRUSTED_PROXIES": "127.0.0.1",
        "DPOP_GUARD_FORWARD_AUTH_PROXY": proxy,
        "DPOP_GUARD_READINESS_PATH": "off",
        "DPOP_GUARD_LIVENESS_PATH": "off",
    }
    if proxy == "envoy":
        env["DPOP_GUARD_FORWARD_AUTH_PATH_PREFIX"] = "/check"
    env.update({f"DPOP_GUARD_{k.upper()}": v for k, v in extra.items()})
    return env
