"""What the middleware builds for itself when it is not handed a part: a replay store
from ``settings.replay_store`` and a nonce source for routes that require nonces, each
with the warning a fleet needs to hear."""

from __future__ import annotations

import logging
import multiprocessing
import os

from .nonce import HMACNonceSource, NonceSource
from .replay import MemoryReplayStore, ReplayStore, replay_store_from_url
from .settings import GuardSettings

__all__ = ["default_nonce_source", "default_replay_store"]

logger = logging.getLogger("dpop_guard")


def default_replay_store(settings: GuardSettings, given: ReplayStore | None) -> ReplayStore:
    """``given``, else the store ``settings.replay_store`` names; warns when an in-memory
    store serves what looks like one worker of several."""
    # "is None", not "or": an empty store has len() 0 and is falsy.
    store = given
    if store is None:
        store = replay_store_from_url(settings.replay_store, maxsize=settings.replay_maxsize)
    if isinstance(store, MemoryReplayStore) and _several_processes():
        logger.warning(
            "dpop_guard: the in-memory replay store is per process, and this process "
            "looks like one of several workers: a proof replayed to another worker "
            "would be accepted. Set DPOP_GUARD_REPLAY_STORE=redis://... for a fleet."
        )
    return store


def default_nonce_source(settings: GuardSettings, given: NonceSource | None) -> NonceSource | None:
    """``given``, else an HMAC source on ``settings.nonce_secret`` when some route needs
    nonces (an ephemeral secret, with a warning, when none is set)."""
    if given is not None or not settings.nonce_routes:
        return given
    if settings.nonce_secret is None:
        logger.warning(
            "dpop_guard: DPOP_GUARD_NONCE_SECRET is not set; nonces are valid only "
            "in the process that issued them."
        )
        return HMACNonceSource.ephemeral(step=settings.nonce_step)
    return HMACNonceSource(settings.nonce_secret, step=settings.nonce_step)


def _several_processes() -> bool:
    """Whether this process looks like one worker of several.

    ``WEB_CONCURRENCY`` above 1 (gunicorn and uvicorn read it) says so. So does a
    supervisor parent whose command line asks for more than one worker (``--workers N``,
    ``-w N``, ``--workers=N``: uvicorn, hypercorn, granian, gunicorn). hypercorn and granian
    run even a single worker as a child, so a parent alone is not enough; where the parent's
    command line cannot be read (no ``/proc``), a child process is taken for a fleet, since
    a needless warning costs less than a silent one.
    """
    try:
        concurrency = int(os.environ.get("WEB_CONCURRENCY", "1"))
    except ValueError:
        concurrency = 1
    if concurrency > 1:
        return True
    if multiprocessing.parent_process() is None:
        return False
    workers = _supervisor_workers(os.getppid())
    return workers is None or workers > 1


def _supervisor_workers(pid: int) -> int | None:
    """The worker count on process ``pid``'s command line (1 when it names none), or
    ``None`` when the command line cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            argv = file.read(65536).decode("utf-8", "replace").split("\0")
    except OSError:
        return None
    count = 1
    for i, arg in enumerate(argv):
        value: str | None = None
        if arg in ("--workers", "-w") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--workers="):
            value = arg.partition("=")[2]
        if value is not None:
            try:
                count = int(value)
            except ValueError:
                return None
    return count
