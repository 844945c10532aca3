"""A guard's start-up takes the heap built so far out of the cyclic GC's later collections
(``dpop_guard.guard._freeze_heap``): their pauses kept cache hits waiting behind misses
(``benchmarks/tail.py``)."""

from __future__ import annotations

import gc
import weakref

from dpop_guard import from_env


async def test_startup_freezes_the_heap() -> None:
    """After start-up the objects built before it are frozen (counted by the GC), and an
    object made after it is still collected."""
    guard = from_env(environ={"DPOP_GUARD_DEVELOPMENT_SIMULATOR": "1"})
    try:
        await guard.startup()
        assert gc.get_freeze_count() > 0

        class Cycle:
            me: object

        made = Cycle()
        made.me = made
        ref = weakref.ref(made)
        del made
        gc.collect()
        assert ref() is None
    finally:
        await guard.aclose()
