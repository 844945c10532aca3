"""Route rules the CLI test loads with ``--routes tests.forward_auth.routes_for_cli:ROUTES``."""

from tests._support.harness import ROUTES

NOT_ROUTES = ("/health",)

__all__ = ["NOT_ROUTES", "ROUTES"]
