"""A guard's start-up takes the heap built so far out of the cyclic GC's later collections
(``dpop_guard.guard._freeze_heap``): their pauses kept cache hits waiting behind misses
(``benchmarks/tail.py``)."""

from __future__ import annotations

import gc
import subprocess
import sys
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


def test_freeze_heap_off_leaves_the_gc_alone() -> None:
    """``DPOP_GUARD_FREEZE_HEAP=0``: start-up freezes nothing more than was frozen before
    it (in a fresh interpreter, so that no earlier start-up in this process has frozen the
    heap already; some interpreters start with a few objects frozen)."""
    code = (
        "import asyncio, gc, dpop_guard\n"
        "guard = dpop_guard.from_env(environ={'DPOP_GUARD_DEVELOPMENT_SIMULATOR': '1',"
        " 'DPOP_GUARD_FREEZE_HEAP': '0'})\n"
        "before = gc.get_freeze_count()\n"
        "asyncio.run(guard.startup())\n"
        "print(gc.get_freeze_count() - before)\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed program
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip().splitlines()[-1] == "0", result.stdout
