"""Limits on failed client authentications, against guessing secrets at the token endpoint.

Two counters of failures in a sliding window: per source address and per client id.
- A source with too many failures is refused, whatever client it names, until its oldest
  failure leaves the window.
- A client with too many failures is refused only to sources that have failed recently
  themselves. A legitimate client calling from its own clean source is never locked out by
  someone else's guessing; an attacker gains at most one guess per fresh source per window, which
  against a secret of 381 bits is nothing.
The failures live in the store, so that every process on it counts the same ones (a guesser
spreading attempts over several processes gets the limit once, not once per process). They are
kept under a hash of their key, and forgotten once they leave the window.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from server.domain.errors import DomainError
from server.store.base import Store

MICROS = 1_000_000


class TooManyFailures(DomainError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("TOO_MANY_FAILURES", "too many failed authentications; try again later")
        self.retry_after = retry_after


@dataclass(frozen=True)
class FailureLimits:
    per_client: int
    per_source: int
    window_s: float


def _key(kind: str, value: str) -> str:
    # Bounded in size whatever a caller sends as its client id, and no addresses in the clear.
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


def _keys(client_id: str, source: str) -> tuple[str, str]:
    """The store keys of an attempt: its source's, and its client's (compared without case)."""
    return _key("source", source), _key("client", client_id.casefold())


class FailureLimiter:
    def __init__(self, limits: FailureLimits, store: Store) -> None:
        self._limits = limits
        self._store = store

    async def check(self, client_id: str, source: str) -> None:
        """Raises TooManyFailures if this attempt must not even be tried."""
        now = time.time()
        source_key, client_key = _keys(client_id, source)
        window_start = int((now - self._limits.window_s) * MICROS)
        recent = await self._store.recent_failures((source_key, client_key), window_start)
        source_failures, source_oldest = recent.get(source_key, (0, 0))
        if source_failures >= self._limits.per_source:
            raise TooManyFailures(self._retry_after(source_oldest, now))
        client_failures, client_oldest = recent.get(client_key, (0, 0))
        if source_failures and client_failures >= self._limits.per_client:
            raise TooManyFailures(self._retry_after(client_oldest, now))

    async def failed(self, client_id: str, source: str) -> None:
        now = time.time()
        window_start = int((now - self._limits.window_s) * MICROS)
        await self._store.record_failure(_keys(client_id, source), int(now * MICROS), window_start)

    def _retry_after(self, oldest_micros: int, now: float) -> int:
        """Whole seconds until the oldest failure in the window leaves it."""
        return max(1, math.ceil(oldest_micros / MICROS + self._limits.window_s - now))
