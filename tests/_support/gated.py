"""An inner introspector whose calls wait at a gate the test opens, so a test can count
the calls in flight at once without timing anything."""

from __future__ import annotations

from collections.abc import Callable

import anyio
from anyio.lowlevel import checkpoint

from dpop_guard.introspection import RequestFacts, TokenInfo

__all__ = ["Gated", "wait_all_tasks_blocked"]


async def wait_all_tasks_blocked() -> None:
    """Let every task run until it waits on something (anyio's test helper)."""
    from anyio import wait_all_tasks_blocked as wait

    await checkpoint()
    await wait()


class Gated:
    """An inner introspector whose calls all wait at a gate until the test opens it, so a
    test can count how many calls are in flight at once (no timing involved). ``answer``
    maps the request and the call's number (from 1) to a TokenInfo or an error."""

    def __init__(self, answer: Callable[[RequestFacts, int], TokenInfo | Exception]) -> None:
        self.answer = answer
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.started: list[str | None] = []
        self._gate = anyio.Event()

    def release(self) -> None:
        """Let every waiting call answer; later calls wait at a new gate."""
        self._gate.set()
        self._gate = anyio.Event()

    async def introspect(self, token: str, *, request: RequestFacts) -> TokenInfo:
        self.calls += 1
        number = self.calls
        self.started.append(request.jkt)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self._gate.wait()
        finally:
            self.in_flight -= 1
        answer = self.answer(request, number)
        if isinstance(answer, Exception):
            raise answer
        return answer
