"""A per-process cache of authenticated callers, so that a caller's next calls skip the store's
authentication query (Access.authenticate).

Revocation stays revocation, within a bound:
- in this process, at once: any write here that may change a caller's power (a token or secret
  removed, replaced, revoked or rotated, a member's roles changed, a user deactivated...: each
  event class says, server/events/base.py) empties the cache as it is appended (the store tells
  CallerCache.forget_if_power_changed of every append); a revoked access token, its own entry;
- on every other process on the same store, within CALLER_CACHE_TTL_S (1 s): an entry is used for
  that long after it was read, then read again;
- expiry needs no bound: every use checks the cached token's and secret's expiry against the clock.

Only callers that authenticated are cached (an unknown token is not: a flood of made-up tokens
cannot fill it), at most MAX_CACHED_CALLERS at a time.
"""

import time
from collections.abc import Callable, Sequence

from server.events.base import NewEvent
from server.events.token import AccessTokenRevoked
from server.store.contract import CallerRecord

CALLER_CACHE_TTL_S = 1.0
MAX_CACHED_CALLERS = 10_000


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

    def forget_if_power_changed(self, events: Sequence[NewEvent]) -> None:
        """An observer of the store's appends (Store.observe_appends): empties the cache when an
        appended event may change a caller's power. Told of failed appends too: one may have been
        committed all the same (a lost answer), so it forgets anyway.

        A revoked access token ends that token alone: only its entry goes. Any client may revoke
        its own tokens, as often as it earns them; emptying the cache for each would let one
        client turn the cache off for every caller."""
        powerful = [event for event in events if event.event.CHANGES_POWER]
        if not powerful:
            return
        if all(isinstance(event.event, AccessTokenRevoked) for event in powerful):
            ended = {event.aggregate_id for event in powerful}  # the tokens' ids
            for token_hash in [h for h, (_, c) in self._entries.items() if c.token.token_id in ended]:
                del self._entries[token_hash]
            return
        self.forget_all()
