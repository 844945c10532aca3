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

**Clock skew.** A record's lifetime runs on the store's clock (monotonic, or Redis's)
while ``iat`` is judged on each node's wall clock. A node whose clock is ``d`` seconds
behind the node that first saw a proof (or a clock stepped back ``d`` seconds) accepts that
proof ``d`` seconds longer, so the record must live that much longer: each record lives
``proof.replay_ttl`` (the acceptance window, future leeway and rounding:
:meth:`~dpop_guard.proof.ProofPolicy.replay_ttl`) plus ``fleet_skew``, the stated,
configured tolerance (``GuardSettings.replay_fleet_skew``, ``DPOP_GUARD_REPLAY_FLEET_SKEW``).
Clocks further apart than that can reopen a proof; keep them NTP-synchronised well within it.

Not covered: a proof used in the last second or two before its store lost its memory, or
one stamped up to the future leeway ahead by a client whose clock runs fast, may pass once
more. ``iat`` is in whole seconds, and a proof signed just before an epoch begins may still
be in flight to its first use, so proofs of the second before the epoch are let through
(``IN_FLIGHT``); closing the gap entirely would refuse every fresh proof for the first
seconds after each start of a store.
"""

from __future__ import annotations

import logging
from typing import Final, NoReturn

from .._reasons import ReplayReason
from ..errors import InvalidDPoPProof, ReplayStoreUnavailable
from ..metrics import DEPENDENCIES, RefusalKind, ReplayRefusal
from ..proof import VerifiedProof
from . import EpochReplayStore, ReplayStore, SyncReplayStore

__all__ = ["DEFAULT_FLEET_SKEW", "IN_FLIGHT", "ReplayGuard"]

logger = logging.getLogger("dpop_guard")
store_logger = logging.getLogger("dpop_guard.replay")  # store events, not decisions

IN_FLIGHT: Final = 1
"""Seconds before an epoch whose proofs still pass: signed before the epoch began, first
used after it (whole-second ``iat`` and network latency)."""

DEFAULT_FLEET_SKEW: Final = 10
"""Seconds of wall-clock difference between nodes (or of a clock stepped back) that a
record covers by default (``GuardSettings.replay_fleet_skew``)."""


_REFUSAL_REASONS: Final[dict[RefusalKind, ReplayReason]] = {
    "full": "replay_store_full",
    "unsafe": "replay_store_unsafe",
    "error": "replay_store_error",
}
"""The 503's internal reason for each kind of store failure."""


class ReplayGuard:
    """Record proofs in ``store`` and refuse replays and proofs of uncertain state.

    :param store: the replay store. A :class:`~dpop_guard.replay.SyncReplayStore` is called
        through ``try_add`` alone (:meth:`record_sync`, no coroutine); any other through
        its async methods. Fleet-wide loss detection needs an
        :class:`~dpop_guard.replay.EpochReplayStore` or a sync store (both built-in stores
        are); with any other store the epoch is this guard's first use, per process.
    :param fleet_skew: seconds of wall-clock difference between the nodes sharing the
        store that a record still covers (see the module).

    Use (the middleware does this after verifying the proof)::

        guard = ReplayGuard(RedisReplayStore.from_url("redis://replay:6379/0"))
        await guard.record(verified_proof, now=int(time.time()))
    """

    def __init__(self, store: ReplayStore, *, fleet_skew: int = DEFAULT_FLEET_SKEW) -> None:
        if not 0 <= fleet_skew <= 3600:
            raise ValueError("fleet_skew must be 0 to 3600 seconds")
        self.store = store
        self.fleet_skew = fleet_skew
        # Declared, decided once: the store's class says which path it offers.
        self._sync_store = store if isinstance(store, SyncReplayStore) else None
        self._epoch_store = store if isinstance(store, EpochReplayStore) else None
        self._local_epoch: int | None = None  # for stores without an epoch
        self._epoch_seen: int | None = None
        self._failed_at: int | None = None
        self._failing = False

    @property
    def is_sync(self) -> bool:
        """Whether :meth:`record_sync` can be used (the store declared
        :class:`~dpop_guard.replay.SyncReplayStore`)."""
        return self._sync_store is not None

    def ttl(self, proof: VerifiedProof) -> int:
        """Seconds the record of ``proof`` lives: its acceptance window plus the fleet
        skew."""
        return proof.replay_ttl + self.fleet_skew

    async def record(self, proof: VerifiedProof, *, now: int) -> None:
        """Record ``proof``; a second use is a replay.

        :param now: wall-clock seconds, read once per request by the caller.
        :raises ReplayStoreUnavailable: the store failed (503); the proof is not accepted.
        :raises InvalidDPoPProof: ``jti_replayed`` (seen before) or
            ``replay_state_uncertain`` (issued before the store's memory began, less
            ``IN_FLIGHT``, or at or before a failure this process saw; the client should
            send a fresh proof).
        """
        if self._sync_store is not None:
            self.record_sync(proof, now)
            return
        try:
            if self._epoch_store is not None:
                first, epoch = await self._epoch_store.add_with_epoch(
                    proof.replay_key, ttl=self.ttl(proof), now=now
                )
            else:
                first = await self.store.add_if_absent(proof.replay_key, ttl=self.ttl(proof))
                if self._local_epoch is None:
                    self._local_epoch = now
                epoch = self._local_epoch
        except Exception as exc:
            self._failed(exc, now)
        self._judge(proof, first, epoch)

    def record_sync(self, proof: VerifiedProof, now: int) -> None:
        """:meth:`record` without a coroutine, for a
        :class:`~dpop_guard.replay.SyncReplayStore` (:attr:`is_sync`): the same record,
        the same checks, the same errors.

        :raises RuntimeError: the store has no synchronous path (a programming error).
        """
        store = self._sync_store
        if store is None:
            raise RuntimeError("this replay store has no synchronous path; await record()")
        try:
            first, epoch = store.try_add(proof.replay_key, ttl=self.ttl(proof), now=now)
        except Exception as exc:
            self._failed(exc, now)
        self._judge(proof, first, epoch)

    def _failed(self, exc: Exception, now: int) -> NoReturn:
        # Full and unsafe are declared by the exception's class (ReplayStoreFull,
        # ReplayStoreUnsafe); anything else is an outage.
        declared = getattr(exc, "replay_refusal", None)
        kind: RefusalKind = (
            "full" if declared == "full" else "unsafe" if declared == "unsafe" else "error"
        )
        reason = _REFUSAL_REASONS[kind]
        if DEPENDENCIES.listening:
            DEPENDENCIES.emit(ReplayRefusal(kind))
        self._failed_at = now if self._failed_at is None else max(self._failed_at, now)
        if not self._failing:  # one line per transition, not one per refused request
            self._failing = True
            logger.warning(
                "dpop_guard: replay store failed (%s); refusing requests until it answers",
                type(exc).__name__,
                extra={"dpop_guard_reason": reason},
            )
        raise ReplayStoreUnavailable(reason) from exc

    def _judge(self, proof: VerifiedProof, first: bool, epoch: int) -> None:
        """Refuse a replay, or a proof the store cannot vouch for (see the module)."""
        if self._failing:
            self._failing = False
            store_logger.warning(
                "dpop_guard: the replay store answers again; proofs issued at or before "
                "its failure stay refused",
                extra={"dpop_guard_reason": "replay_store_recovered"},
            )
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
        failed_at = self._failed_at
        if proof.iat < epoch - IN_FLIGHT or (failed_at is not None and proof.iat <= failed_at):
            # The store cannot vouch that this proof was not used before: only proofs
            # made since pass. The record just written stays, so this copy is spent.
            raise InvalidDPoPProof(
                "replay_state_uncertain", "The DPoP proof is too old; send a fresh one."
            )
