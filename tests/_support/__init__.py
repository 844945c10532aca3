"""Shared test support: servers, keys, certificates."""
