"""Limits on failed client authentications, against guessing secrets at the token endpoint.

Two counters of failures in a sliding window: per source address and per client id.
- A source with too many failures is refused, whatever client it names, until its oldest
  failure leaves the window.
- A client with too many failures is refused only to sources that have failed recently
  themselves. A legitimate client calling from its own clean source is never locked out by
  someone else's guessing; an attacker gains at most one guess per fresh source per window, which
  against a secret of 381 bits is nothing.
Counts live in the process (with several processes each keeps its own) and are bounded in size.
"""

import math
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from server.domain.errors import DomainError

MAX_KEYS = 100_000


class TooManyFailures(DomainError):
    def __init__(self, retry_after: int) -> None:
        super().__init__("TOO_MANY_FAILURES", "too many failed authentications; try again later")
        self.retry_after = retry_after


@dataclass(frozen=True)
class FailureLimits:
    per_client: int
    per_source: int
    window_s: float


class _Window:
    """Failure times per key within the window, for at most MAX_KEYS keys (oldest dropped)."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key)
        if failures is None:
            return deque()
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        if not failures:
            del self._failures[key]
        return failures

    def add(self, key: str, now: float) -> None:
        self._failures.setdefault(key, deque()).append(now)
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_KEYS:
            self._failures.popitem(last=False)

    def retry_after(self, failures: deque[float], now: float) -> int:
        return max(1, math.ceil(failures[0] + self._window_s - now))


class FailureLimiter:
    def __init__(self, limits: FailureLimits) -> None:
        self._limits = limits
        self._sources = _Window(limits.window_s)
        self._clients = _Window(limits.window_s)

    def check(self, client_id: str, source: str) -> None:
        """Raises TooManyFailures if this attempt must not even be tried."""
        now = time.monotonic()
        source_failures = self._sources.recent(source, now)
        if len(source_failures) >= self._limits.per_source:
            raise TooManyFailures(self._sources.retry_after(source_failures, now))
        client_failures = self._clients.recent(client_id.casefold(), now)
        if source_failures and len(client_failures) >= self._limits.per_client:
            raise TooManyFailures(self._clients.retry_after(client_failures, now))

    def failed(self, client_id: str, source: str) -> None:
        now = time.monotonic()
        self._sources.add(source, now)
        self._clients.add(client_id.casefold(), now)
