"""Revoking leaked secrets, reported by whoever found them: holding a secret is the proof.

Built for secret scanners (GitHub's secret scanning partner program works this way): a report
needs no credential, so it must give nothing back to someone guessing.
- A string whose checksum is wrong is not a secret of ours: it is not looked up at all.
- Each well-formed string costs one bcrypt verification, against its secret's hash or, when no
  live secret has its lookup key, against a dummy hash, and every report writes one event: the
  answer and its time are the same whether anything matched or not.
- Reports are limited per source address, like failed token requests.
"""

from server.clock import SYSTEM_CLOCK, Clock
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.failure_limits import FailureLimiter
from server.domain.secret_format import lookup_key
from server.limits import MAX_SECRET_LENGTH
from server.store.base import Store

MAX_SECRETS_PER_REPORT = 100


class SecretRevocation:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        hasher: SecretHasher,
        limiter: FailureLimiter,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._commands = commands
        self._hasher = hasher
        self._limiter = limiter
        self._clock = clock

    async def revoke(self, reported: list[str], source: str) -> None:
        """Revokes every live secret among reported (at most MAX_SECRETS_PER_REPORT strings).
        Raises InvalidArgument for more strings, or a longer one, than a report may hold (before
        any work), and TooManyFailures when source has reported too much lately."""
        if len(reported) > MAX_SECRETS_PER_REPORT or any(len(text) > MAX_SECRET_LENGTH for text in reported):
            raise InvalidArgument([FieldViolation("secrets", "too many, or one longer than any secret")])
        await self._limiter.note_report(source)
        by_lookup = {key: text for text in dict.fromkeys(reported) if (key := lookup_key(text)) is not None}
        found = {s.lookup: s for s in await self._store.secrets_by_lookup(list(by_lookup))}
        now, matched = self._clock.now(), []
        for key, text in by_lookup.items():
            secret = found.get(key)
            hashed = secret.hash if secret is not None and secret.live(now) else None
            if await self._hasher.verify(text, hashed) and secret is not None:
                matched.append((secret.user_id, secret.secret_id))
        await self._commands.revoke_secrets(matched, source, len(reported))
