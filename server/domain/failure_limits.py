"""Limits on failed client authentications, against guessing secrets at the token endpoint.

Two counters of failures in a sliding window: per source address and per client id.
- A source with too many failures is refused, whatever client it names, until its oldest
  failure leaves the window.
- A client with too many failures is refused only to sources that have failed recently
  themselves. A legitimate client calling from its own clean source is never locked out by
  someone else's guessing; an attacker gains at most one guess per fresh source per window, which
  against a secret of 381 bits is nothing.
A report to the revocation endpoint counts against its source as one failure per candidate it
asks the service to check (note_report): the source's allowance is of bcrypt work, however the
work is split into requests.
The failures live in the store, so that every process on it counts the same ones (a guesser
spreading attempts over several processes gets the limit once, not once per process). They are
kept under a hash of their key, and forgotten once they leave the window.

The limits hold under bursts. A check before the hash only saves bcrypt work for a caller that is
refused already: concurrent guesses all pass it together. The decision that counts is made after
the hash: a failure is noted in one atomic step with a look at the failures noted before it (on
any process), and a success looks again. Whatever attempt that look finds over a limit is answered
429, right or wrong, so a burst of N guesses from one source learns the outcome of at most
`per_client` of them for one client, and of at most `per_source` in all. A client calling from its
own clean source is not slowed: its successes note nothing and take no lock.
"""

import functools
import hashlib
import math
from dataclasses import dataclass

from server.clock import SYSTEM_CLOCK, Clock
from server.domain.errors import TooManyFailures
from server.store.contract import Store
from server.user_names import find_key

MICROS = 1_000_000


@dataclass(frozen=True)
class FailureLimits:
    per_client: int
    per_source: int
    window_s: float


def _key(kind: str, value: str) -> str:
    # Bounded in size whatever a caller sends as its client id, and no addresses in the clear.
    return hashlib.sha256(f"{kind}:{value}".encode("utf-8", "surrogatepass")).hexdigest()


@functools.lru_cache(maxsize=256)  # an attempt asks up to three times (check, failed, check)
def _client(client_id: str) -> str:
    """What a client id is counted as: the user name it names, in the form the store finds users
    by (user_names.find_key, the token endpoint's lookup), so that `victim`, `VICTIM` and `victim`
    in fullwidth letters, one user to the store, are one client to the limits too. A client id
    that no user name can be (too long for one, or refused by the profile) is counted as it was
    sent: it names no one. find_key, not user_name_key: the profile's character checks cost the
    square of a run of some characters (200 of U+06F0: 6.5 ms), its mapping does not."""
    key = find_key(client_id)
    return "raw:" + client_id if key is None else "name:" + key


def _keys(client_id: str, source: str) -> tuple[str, str]:
    """The store keys of an attempt: its source's, and its client's."""
    return _key("source", source), _key("client", _client(client_id))


class FailureLimiter:
    def __init__(self, limits: FailureLimits, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self._limits = limits
        self._store = store
        self._clock = clock  # the window moves with it, so tests move time instead of waiting

    def _now(self) -> float:
        return self._clock.now().timestamp()

    async def check(self, client_id: str, source: str) -> None:
        """Raises TooManyFailures if an attempt from source for client_id is over a limit now:
        before the hash (to spare the work), and again after a success (the decision)."""
        now = self._now()
        keys = _keys(client_id, source)
        self._judge(keys, await self._store.recent_failures(keys, self._window_start(now)), now)

    async def failed(self, client_id: str, source: str) -> None:
        """Notes a failed attempt; raises TooManyFailures if the failures noted before it had
        reached a limit already (then the caller must not learn that this attempt failed)."""
        now = self._now()
        keys = _keys(client_id, source)
        window_start = self._window_start(now)
        before = await self._store.record_failure(keys, int(now * MICROS), window_start, window_start)
        self._judge(keys, before, now)

    @property
    def per_source(self) -> int:
        return self._limits.per_source

    async def note_report(self, source: str, candidates: int) -> None:
        """Counts a report to the revocation endpoint against its source's allowance: each of its
        candidates (each costs one bcrypt check; a report counts one at least) as if it were a
        failed attempt, for a report needs no credential. Raises TooManyFailures, before any
        work is done, when they do not all fit in what the window leaves the source.

        As for failed attempts: a look first, so that a report refused already writes nothing,
        then the decision, made in one atomic step with the note, against the failures noted
        before it on any process: a burst of reports from one source gets its candidates checked
        up to the allowance, exactly, and no further."""
        if candidates > self._limits.per_source:  # never fits: refused without a look
            raise TooManyFailures(max(1, math.ceil(self._limits.window_s)))
        now = self._now()
        keys = (_key("source", source), _key("revocation", ""))
        window_start = self._window_start(now)
        self._judge_report(keys[0], await self._store.recent_failures(keys, window_start), candidates, now)
        noted = await self._store.record_failure(
            keys, int(now * MICROS), window_start, window_start, count=candidates
        )
        self._judge_report(keys[0], noted, candidates, now)

    def _judge_report(
        self, source_key: str, recent: dict[str, tuple[int, int]], candidates: int, now: float
    ) -> None:
        source_failures, source_oldest = recent.get(source_key, (0, 0))
        if source_failures + candidates > self._limits.per_source:
            # Whole seconds until the oldest leaves the window: enough for one candidate more, at
            # least (more may have to wait longer, and are told so again).
            raise TooManyFailures(self._retry_after(source_oldest or int(now * MICROS), now))

    def _judge(self, keys: tuple[str, str], recent: dict[str, tuple[int, int]], now: float) -> None:
        source_key, client_key = keys
        source_failures, source_oldest = recent.get(source_key, (0, 0))
        if source_failures >= self._limits.per_source:
            raise TooManyFailures(self._retry_after(source_oldest, now))
        client_failures, client_oldest = recent.get(client_key, (0, 0))
        if source_failures and client_failures >= self._limits.per_client:
            raise TooManyFailures(self._retry_after(client_oldest, now))

    def _window_start(self, now: float) -> int:
        return int((now - self._limits.window_s) * MICROS)

    def _retry_after(self, oldest_micros: int, now: float) -> int:
        """Whole seconds until the oldest failure in the window leaves it."""
        return max(1, math.ceil(oldest_micros / MICROS + self._limits.window_s - now))
