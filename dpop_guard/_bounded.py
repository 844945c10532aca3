"""A memo bounded in bytes: the one rule for everything a client can put into memory.

Rules that live here: a value computed from client input is remembered only when that input
is small (:data:`MAX_REMEMBERED`), each entry is charged the bytes it keeps, and a memo that
would pass its budget (:data:`MEMO_BUDGET`) starts over. The request memos (request shapes,
``Authorization`` parses), the verifier's header and ``ath`` memos, the introspection
cache's token digests and Authlete's remembered bindings (four budgets, filled only by
tokens Authlete accepted) use it, so the worst a flood of distinct maximal inputs can pin
is a few budgets per worker, whatever came.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

__all__ = ["ENTRY_OVERHEAD", "MAX_REMEMBERED", "MEMO_BUDGET", "Memo"]

MEMO_BUDGET: Final = 1 << 20
"""Bytes one memo holds at most (estimated, an upper bound) before it starts over."""
MAX_REMEMBERED: Final = 2048
"""Characters (of a request line, or of an ``Authorization`` value) above which a value is
decided per request and never remembered: an RFC 9068 JWT access token fits; a
65,000-byte path does not."""
ENTRY_OVERHEAD: Final = 384
"""Bytes charged per entry beyond its strings: the key tuple, the value object and the
dict's share (an upper bound on CPython 3.11-3.13; the flood test measures it)."""

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """``compute(key)``, remembered, bounded in bytes.

    :meth:`get` answers a remembered key with one dict lookup; :meth:`remember` computes
    the value (a refusal propagates and nothing is stored) and remembers it when the
    input's ``size`` is at most :data:`MAX_REMEMBERED`. Each entry is charged ``cost(key, value)``
    bytes (the ``sys.getsizeof`` of the strings it keeps) plus :data:`ENTRY_OVERHEAD`, and
    the memo starts over when what it holds would pass ``budget`` bytes.

    :param compute: the pure function remembered.
    :param cost: the bytes of the strings an entry keeps (key and value).
    :param budget: bytes held at most.
    """

    __slots__ = ("_compute", "_cost", "_data", "_held", "budget", "get")

    def __init__(
        self,
        compute: Callable[[K], V],
        cost: Callable[[K, V], int],
        *,
        budget: int = MEMO_BUDGET,
    ) -> None:
        self._compute = compute
        self._cost = cost
        self._data: dict[K, V] = {}
        self._held = 0
        self.budget = budget
        self.get: Callable[[K], V | None] = self._data.get
        """The remembered value of a key, or ``None``: the dict's own ``get`` (no Python
        frame on a hit)."""

    def __len__(self) -> int:
        return len(self._data)

    @property
    def held(self) -> int:
        """The bytes charged for what the memo holds now."""
        return self._held

    def remember(self, key: K, size: int) -> V:
        """The value of ``key``, computed (a refusal propagates and nothing is stored) and
        remembered when the input's ``size`` is at most :data:`MAX_REMEMBERED`.

        :param size: the input's characters (or octets).
        """
        value = self._compute(key)
        self.put(key, value, size)
        return value

    def put(self, key: K, value: V, size: int) -> None:
        """Remember ``value`` for ``key``, computed by the caller (for a value that may be
        kept only once a later check passed), when ``size`` is at most
        :data:`MAX_REMEMBERED`."""
        if size <= MAX_REMEMBERED:
            cost = self._cost(key, value) + ENTRY_OVERHEAD
            if cost > self.budget:  # a budget of 0 remembers nothing
                return
            self.discard(key)  # a key put again is charged once
            if self._held + cost > self.budget:
                self._data.clear()
                self._held = 0
            self._data[key] = value
            self._held += cost

    def discard(self, key: K) -> None:
        """Forget ``key`` (nothing happens when it is not remembered)."""
        value = self._data.pop(key, None)
        if value is not None:
            self._held -= self._cost(key, value) + ENTRY_OVERHEAD
