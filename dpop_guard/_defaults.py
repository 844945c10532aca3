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
    """Whether this process looks like one worker of several (uvicorn ``--workers`` spawns
    its workers with multiprocessing; gunicorn and uvicorn read ``WEB_CONCURRENCY``)."""
    try:
        concurrency = int(os.environ.get("WEB_CONCURRENCY", "1"))
    except ValueError:
        concurrency = 1
    return concurrency > 1 or multiprocessing.parent_process() is not None
