"""The replay policy: record each proof once, and refuse what the store cannot vouch for.

A replay record only helps while the store remembers it. Two things can make it forget:

- **It lost its memory** (a Redis restarted without persistence, a flush, a fresh
  process for the in-memory store). An :class:`~dpop_guard.replay.EpochReplayStore` says
  since when it has remembered everything (its *epoch*, a marker in the store itself), so
  every worker of a fleet, including one started after the loss, learns the same epoch
  and refuses proofs issued before it.
- **It failed while this process used it** (a timeout, a refused connection, a failover
  that may have lost the last writes). This process then refuses proofs issued at or
  before the failure.

Either way the refusal is keyed on the proof's own ``iat``, so it needs no timer and can
never be disarmed early: a proof issued before the uncertainty stays refused until the
verifier refuses it as too old anyway, that is, for one full maximum proof lifetime,
whatever window (``iat``, nonce, leeway) it was accepted under. (The previous, per-process
rule was lifted after the first proof's own lifetime, which let a 130 s nonce-route proof
be replayed 82 s after a failure.)

Not covered: a proof used in the last second or two before its store lost its memory, or
one stamped up to the future leeway ahead by a client whose clock runs fast, may pass once
more. ``iat`` is in whole seconds, and a proof signed just before an epoch begins may still
be in flight to its first use, so proofs of the second before the epoch are let through
(``IN_FLIGHT``); closing the gap entirely would refuse every fresh proof for the first
seconds after each start of a store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import Final, NoReturn

from ..errors import InvalidDPoPProof, ReplayStoreUnavailable
from ..proof import VerifiedProof
from . import EpochReplayStore, ReplayStore
from .memory import MemoryReplayStore

__all__ = ["ReplayGuard"]

logger = logging.getLogger("dpop_guard")
store_logger = logging.getLogger("dpop_guard.replay")  # store events, not decisions

IN_FLIGHT: Final = 1
"""Seconds before an epoch whose proofs still pass: signed before the epoch began, first
used after it (whole-second ``iat`` and network latency)."""


class ReplayGuard:
    """Record proofs in ``store`` and refuse replays and proofs of uncertain state.

    :param store: the replay store; fleet-wide loss detection needs an
        :class:`~dpop_guard.replay.EpochReplayStore` (both built-in stores are). With any
        other store the epoch is this guard's first use, per process.

    Use (the middleware does this after verifying the proof)::

        guard = ReplayGuard(RedisReplayStore.from_url("redis://replay:6379/0"))
        await guard.record(verified_proof, now=int(time.time()))
    """

    def __init__(self, store: ReplayStore) -> None:
        self.store = store
        self._epoch_store = store if isinstance(store, EpochReplayStore) else None
        # The in-memory store answers without awaiting, so it is called directly: no
        # coroutine per request (its check-and-set is atomic either way: no await in it).
        # Only where add_with_epoch is MemoryReplayStore's own, so a subclass that wraps
        # it (fault injection, instrumentation) is still called through it.
        self._sync: Callable[[Hashable, int, int], tuple[bool, int]] | None = (
            store.add_with_epoch_sync
            if isinstance(store, MemoryReplayStore)
            and type(store).add_with_epoch is MemoryReplayStore.add_with_epoch
            and "add_with_epoch" not in vars(store)
            else None
        )
        # MemoryReplayStore's epoch never changes once set (at its first use), so once this
        # guard has seen it (_judge), it calls the store's check-and-set itself (_direct)
        # and checks the proof's age against the epoch it saw (_oldest_iat): two call
        # frames and a tuple fewer per request (about 1,400 instructions). Only for that
        # class itself, unpatched: a subclass may forget records or move its epoch, so it
        # is always asked through add_with_epoch_sync. (Like _sync, these are bound when
        # the guard is built: a method replaced on the store afterwards is not seen.)
        self._check_and_set: Callable[[Hashable, int], bool] | None = (
            store.add_if_absent_sync
            if type(store) is MemoryReplayStore
            and self._sync is not None
            and not {"add_with_epoch_sync", "add_if_absent_sync"} & vars(store).keys()
            else None
        )
        self._direct: Callable[[Hashable, int], bool] | None = None
        self._oldest_iat = 0
        self._local_epoch: int | None = None  # for stores without an epoch marker
        self._epoch_seen: int | None = None
        self._failed_at: int | None = None

    async def record(self, proof: VerifiedProof, *, now: int) -> None:
        """Record ``proof`` for ``proof.replay_ttl`` seconds; a second use is a replay.

        :param now: wall-clock seconds, read once per request by the caller.
        :raises ReplayStoreUnavailable: the store failed (503); the proof is not accepted.
        :raises InvalidDPoPProof: ``jti_replayed`` (seen before) or
            ``replay_state_uncertain`` (issued before the store's memory began, less
            ``IN_FLIGHT``, or at or before a failure this process saw; the client should
            send a fresh proof).
        """
        if self._sync is not None:
            self.record_sync(proof, now=now)
            return
        try:
            if self._epoch_store is not None:
                first, epoch = await self._epoch_store.add_with_epoch(
                    proof.replay_key, ttl=proof.replay_ttl, now=now
                )
            else:
                first = await self.store.add_if_absent(proof.replay_key, ttl=proof.replay_ttl)
                if self._local_epoch is None:
                    self._local_epoch = now
                epoch = self._local_epoch
        except Exception as exc:
            self._failed(exc, now)
        self._judge(proof, first, epoch)

    @property
    def is_sync(self) -> bool:
        """Whether :meth:`record_sync` can be used (the store answers without awaiting)."""
        return self._sync is not None

    def record_sync(self, proof: VerifiedProof, now: int) -> None:
        """:meth:`record` without a coroutine, for a store that answers without awaiting
        (:attr:`is_sync`): the same record, the same checks, the same errors.

        :raises RuntimeError: the store has no synchronous path (a programming error).
        """
        # Keyed by (jkt, jti) itself: this store is the process's own, so no digest is
        # needed to keep keys fixed-length or alike across versions of a fleet (and a pair
        # costs about 1,100 instructions fewer than the text "jkt:jti").
        direct = self._direct
        if direct is not None:
            # The steady state: the memory store's (fixed) epoch is known.
            try:
                first = direct((proof.jkt, proof.jti), proof.replay_ttl)
            except Exception as exc:
                self._failed(exc, now)
            if first and proof.iat >= self._oldest_iat and self._failed_at is None:
                return  # a first use, young enough for the epoch, no failure seen
            assert self._epoch_seen is not None  # set with _direct
            self._judge(proof, first, self._epoch_seen)
            return
        sync = self._sync
        if sync is None:
            raise RuntimeError("this replay store has no synchronous path; await record()")
        try:
            first, epoch = sync((proof.jkt, proof.jti), proof.replay_ttl, now)
        except Exception as exc:
            self._failed(exc, now)
        self._judge(proof, first, epoch)

    def _failed(self, exc: Exception, now: int) -> NoReturn:
        self._failed_at = now if self._failed_at is None else max(self._failed_at, now)
        logger.warning(
            "dpop_guard: replay store failed: %s",
            type(exc).__name__,
            extra={"dpop_guard_reason": "replay_store_error"},
        )
        raise ReplayStoreUnavailable("replay_store_error") from exc

    def _judge(self, proof: VerifiedProof, first: bool, epoch: int) -> None:
        """Refuse a replay, or a proof the store cannot vouch for (see the module)."""
        if not first:
            raise InvalidDPoPProof("jti_replayed", "The DPoP proof has been used before.")
        if epoch != self._epoch_seen:
            if self._epoch_seen is not None:
                store_logger.warning(
                    "dpop_guard: the replay store lost its memory; refusing proofs issued "
                    "before it began again",
                    extra={"dpop_guard_reason": "replay_store_reset"},
                )
            self._epoch_seen = epoch
            if self._check_and_set is not None:  # the memory store: its epoch is now known
                self._direct, self._oldest_iat = self._check_and_set, epoch - IN_FLIGHT
        failed_at = self._failed_at
        if proof.iat < epoch - IN_FLIGHT or (failed_at is not None and proof.iat <= failed_at):
            # The store cannot vouch that this proof was not used before: only proofs
            # made since pass. The record just written stays, so this copy is spent.
            raise InvalidDPoPProof(
                "replay_state_uncertain", "The DPoP proof is too old; send a fresh one."
            )
