"""One way to build a Redis client: bounded timeouts, no silent retries."""

from __future__ import annotations

from typing import Any

from ._extras import missing_extra

try:
    import redis.asyncio as redis
except ModuleNotFoundError as _exc:  # pragma: no cover - depends on the install
    raise missing_extra("redis", "a Redis replay store or introspection cache") from _exc


def redis_client(
    url: str, *, connect_timeout: float, command_timeout: float, **options: Any
) -> redis.Redis:
    """A ``redis.asyncio.Redis`` for ``url`` (``redis://``, ``rediss://``, ``unix://``).

    Connections open lazily, in the event loop that first uses them. A timed-out command is
    not retried: the caller fails closed (or falls back) within its own budget.
    """
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=command_timeout,
        retry_on_timeout=False,
        **options,
    )
