"""Revoking leaked secrets, reported by whoever found them: holding a secret is the proof.

Built for secret scanners (GitHub's secret scanning partner program works this way): a report
needs no credential, so it must give nothing back to someone guessing, and cost the service
little more than the request itself.
- A string whose checksum is wrong is not a secret of ours: it is not looked up at all.
- Each well-formed string (a candidate) costs one bcrypt verification, against its secret's hash
  or, when no live secret has its lookup key, against a dummy hash: the answer, and the work,
  are the same whether anything matched or not.
- Each candidate counts against its source's allowance of failed authentications
  (failure_limits.py; MS_SOURCE_FAILURE_LIMIT a window), a report one at least. A report whose
  candidates do not fit in what the window leaves is refused before any work; one with more
  candidates than the whole allowance could never fit (the HTTP endpoint answers 400).
- The bcrypt work runs on a thread of its own at the lowest CPU priority (SecretHasher.aside):
  one CPU at most, and never the token endpoint's threads. Its queue is bounded, in checks and in
  time: at most MAX_PENDING_CHECKS candidates of this process wait for it or run on it, and no
  more than MAX_PENDING_WORK of checks at this bcrypt cost (but always one whole report, when
  nothing waits). A report that would pass that is refused at once (429, Retry-After 1 s), so
  that waiting reports cannot pile up and hold the process's slots for calls in flight, however
  many addresses send them, nor wait past the proxy's timeout. At cost 4 (about 1 ms a check) the
  bound is the 100 checks; at cost 12 (about 0.3 s) it is about 36 checks, 10 s; at cost 14 (about
  1.1 s) a report of 30 alone takes 33 s, longer than Envoy's route timeout: reports there must
  be smaller (MS_SOURCE_FAILURE_LIMIT).
- A report is counted, not kept: per hour and source (reports, candidates, secrets revoked), for
  at most MAX_SOURCES_PER_HOUR sources an hour (the rest together under "*"), forgotten after
  REPORT_COUNT_RETENTION. What a report revoked is an event of its user, kept as every event is:
  that is the audit trail. (A report that revoked something also writes those events: that says
  nothing its sender did not know, for it holds the secret, which the token endpoint accepted.)
"""

from datetime import timedelta

from server.actor import Actor
from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.errors import FieldViolation, InvalidArgument, TooManyFailures
from server.domain.failure_limits import FailureLimiter
from server.domain.secret_format import lookup_key
from server.limits import MAX_SECRET_LENGTH
from server.store.contract import RevocationReportCount, Store

MAX_SECRETS_PER_REPORT = 100
# Candidates of this process admitted at once (checked, or waiting for the check): one full
# report. Per process: each worker has its own thread.
MAX_PENDING_CHECKS = MAX_SECRETS_PER_REPORT
MAX_PENDING_WORK = timedelta(seconds=10)  # a third of Envoy's route timeout (envoy.yaml)
BUSY_RETRY_AFTER_S = 1
REPORT_COUNT_RETENTION = timedelta(days=30)
# With hourly counts kept 30 days: at most 720 x 101 rows, whatever the number of addresses.
MAX_SOURCES_PER_HOUR = 100
MICROSECOND = timedelta(microseconds=1)


def candidates(reported: list[str]) -> dict[str, str]:
    """The well-formed strings of a report (each once), by their lookup keys."""
    return {key: text for text in dict.fromkeys(reported) if (key := lookup_key(text)) is not None}


class SecretRevocation:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        hasher: SecretHasher,
        limiter: FailureLimiter,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """hasher: the hasher for this work, apart from the token endpoint's (hasher.aside())."""
        self._store = store
        self._commands = commands
        self._hasher = hasher
        self._limiter = limiter
        self._clock = clock
        self._pending = 0  # candidates admitted and not done yet (one event loop: no lock)
        in_time = int(MAX_PENDING_WORK.total_seconds() / max(hasher.check_seconds, 1e-6))
        self._max_pending = max(self.max_candidates, min(MAX_PENDING_CHECKS, in_time))

    @property
    def max_candidates(self) -> int:
        """The most candidates one report may hold: more could never fit in a source's allowance."""
        return min(MAX_SECRETS_PER_REPORT, self._limiter.per_source)

    async def revoke(self, reported: list[str], source: str, reporter: Actor) -> None:
        """Revokes every live secret among reported (at most MAX_SECRETS_PER_REPORT strings), as
        reporter (anonymous, by its address: the actor of the revocations it makes).
        Raises InvalidArgument for more strings, or a longer one, than a report may hold (before
        any work), and TooManyFailures, before any bcrypt work, when source has reported too much
        lately or when this process has too much such work waiting."""
        if len(reported) > MAX_SECRETS_PER_REPORT or any(len(text) > MAX_SECRET_LENGTH for text in reported):
            raise InvalidArgument([FieldViolation("secrets", "too many, or one longer than any secret")])
        by_lookup = candidates(reported)
        if self._pending + len(by_lookup) > self._max_pending:
            raise TooManyFailures(BUSY_RETRY_AFTER_S, "too many reports at once; try again later")
        self._pending += len(by_lookup)
        try:
            await self._limiter.note_report(source, max(1, len(by_lookup)))
            found = {s.lookup: s for s in await self._store.secrets_by_lookup(list(by_lookup))}
            now, matched = self._clock.now(), []
            for key, text in by_lookup.items():
                secret = found.get(key)
                hashed = secret.hash if secret is not None and secret.live(now) else None
                if await self._hasher.verify(text, hashed) and secret is not None:
                    matched.append((secret.user_id, secret.secret_id))
        finally:
            self._pending -= len(by_lookup)
        revoked = await self._commands.revoke_secrets(matched, source, reporter)
        await self._count(source, len(by_lookup), revoked)

    async def _count(self, source: str, candidates: int, revoked: int) -> None:
        now = to_micros(self._clock.now())
        hour_start = now - now % (timedelta(hours=1) // MICROSECOND)
        await self._store.count_revocation_report(
            RevocationReportCount(hour_start, source, 1, candidates, revoked),
            MAX_SOURCES_PER_HOUR,
            now - REPORT_COUNT_RETENTION // MICROSECOND,
        )
