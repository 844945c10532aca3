"""Recording each proof's ``jti`` before anything else costs a round trip.

This is the per-process uncertainty logic moved out of the middleware, behind the
interface the fleet-wide version keeps: ``ReplayGuard(store).record(proof, now=now)``.
"""

from __future__ import annotations

import logging

from ..errors import InvalidDPoPProof, ReplayStoreUnavailable
from ..proof import VerifiedProof
from . import ReplayStore

__all__ = ["ReplayGuard"]

logger = logging.getLogger("dpop_guard")


class ReplayGuard:
    """Records used proofs in ``store`` and refuses a second use.

    After the store failed, it cannot vouch that a proof made before the failure was not
    used meanwhile (a Redis restarted without persistence forgets), so until the longest
    replay window has passed only proofs made since the failure are accepted. That memory
    is per process.

    :param store: the replay store.
    """

    def __init__(self, store: ReplayStore) -> None:
        self.store = store
        self._failed_at: int | None = None

    async def record(self, proof: VerifiedProof, *, now: int) -> None:
        """Record ``proof``'s ``replay_key`` atomically.

        :param now: the request's clock reading, epoch seconds.
        :raises InvalidDPoPProof: ``jti_replayed`` on a second use, or
            ``replay_state_uncertain`` for a proof older than a recent store failure.
        :raises ReplayStoreUnavailable: the store failed (``replay_store_error``).
        """
        try:
            first = await self.store.add_if_absent(proof.replay_key, ttl=proof.replay_ttl)
        except Exception as exc:
            self._failed_at = now
            logger.warning(
                "dpop_guard: replay store failed: %s",
                type(exc).__name__,
                extra={"dpop_guard_reason": "replay_store_error"},
            )
            raise ReplayStoreUnavailable("replay_store_error") from exc
        if not first:
            raise InvalidDPoPProof("jti_replayed", "The DPoP proof has been used before.")
        failed_at = self._failed_at
        if failed_at is not None:
            if now - failed_at > proof.replay_ttl:
                self._failed_at = None
            elif proof.iat <= failed_at:
                raise InvalidDPoPProof(
                    "replay_state_uncertain", "The DPoP proof is too old; send a fresh one."
                )
