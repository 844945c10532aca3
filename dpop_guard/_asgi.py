"""The ASGI interface's types, for the modules that must not import a framework.

The same aliases as ``starlette.types`` (so the two mix freely under a type checker),
defined from the ASGI specification alone: the sans-IO core (routes, request facts) names a
scope without importing Starlette, which the import contracts in ``pyproject.toml`` check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TypeAlias

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]
