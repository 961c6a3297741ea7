"""A per-process cache of authenticated callers, so that a caller's next calls skip the store's
authentication query (Access.authenticate).

Revocation stays revocation, within a bound:
- in this process, at once: any write here that may take power away from a caller (a token or
  secret removed, replaced, revoked or rotated, a member's roles changed, a user deactivated...)
  empties the cache as it is appended (ForgetCallersOnWrite);
- on every other process on the same store, within CALLER_CACHE_TTL_S (1 s): an entry is used for
  that long after it was read, then read again;
- expiry needs no bound: every use checks the cached token's and secret's expiry against the clock.

Only callers that authenticated are cached (an unknown token is not: a flood of made-up tokens
cannot fill it), at most MAX_CACHED_CALLERS at a time.
"""

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from server.store import events as ev
from server.store.base import CallerRecord, Store
from server.store.events import NewEvent, StoredEvent

CALLER_CACHE_TTL_S = 1.0
MAX_CACHED_CALLERS = 10_000
# The events that give no one less power than before: appending them keeps the cache. Any other
# event, and any event type added later, empties it.
HARMLESS = frozenset(
    {
        ev.TOKEN_ACCESS_ADDED,
        ev.USER_PAT_ADDED,
        ev.USER_MACHINE_ADDED,
        ev.USER_HUMAN_ADDED,
        ev.ORG_ADDED,
        ev.ORG_SECRET_POLICY_SET,
        ev.USER_MACHINE_SECRET_ADDED,
        ev.REVOCATION_RECEIVED,
    }
)


class CallerCache:
    def __init__(
        self,
        ttl_s: float = CALLER_CACHE_TTL_S,
        max_entries: int = MAX_CACHED_CALLERS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._monotonic = monotonic  # tests move it instead of waiting
        self._entries: dict[str, tuple[float, CallerRecord]] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token_hash: str) -> CallerRecord | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        if self._monotonic() - entry[0] > self._ttl_s:
            del self._entries[token_hash]
            return None
        return entry[1]

    def put(self, token_hash: str, caller: CallerRecord, read_at: float | None = None) -> None:
        """read_at: when the record was read from the store (on the cache's clock); now by default."""
        if len(self._entries) >= self._max_entries and token_hash not in self._entries:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        self._entries[token_hash] = (self._monotonic() if read_at is None else read_at, caller)

    def read_at(self, token_hash: str) -> float | None:
        entry = self._entries.get(token_hash)
        return None if entry is None else entry[0]

    def forget_all(self) -> None:
        self._entries.clear()


def forget_callers_on_write(store: Store, cache: CallerCache) -> Store:
    """The store, emptying the cache whenever it appends an event that may take power away."""
    return cast(Store, _ForgetCallersOnWrite(store, cache))


class _ForgetCallersOnWrite:
    def __init__(self, store: Store, cache: CallerCache) -> None:
        self._store = store
        self._cache = cache

    async def append(self, events: Sequence[NewEvent], *, durable: bool = True) -> list[StoredEvent]:
        try:
            return await self._store.append(events, durable=durable)
        finally:  # a failed append may still have been committed (a lost answer): forget anyway
            if any(event.type not in HARMLESS for event in events):
                self._cache.forget_all()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)
