"""Deprecated home of the ``Authorization`` parser; it now lives in the private
:mod:`dpop_guard._authorization`. Kept so existing imports work until the merge."""

from ._authorization import AuthorizationHeader, parse_authorization

__all__ = ["AuthorizationHeader", "parse_authorization"]
