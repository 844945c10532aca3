"""Helpers shared by the tests (servers on loopback, a real redis-server, oidc-provider).
Fixtures live in ``tests/conftest.py``; no test imports another test module."""
