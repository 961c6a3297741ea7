"""The OAuth2 client-credentials grant (RFC 6749 §4.4), as the domain sees it: a machine user
proves it holds its client secret and receives an access token.

Every failure (unknown client, human user, no secret, wrong secret) is the same InvalidClient,
reached after the same bcrypt work, so that a caller cannot tell which it was.
"""

from dataclasses import dataclass
from datetime import timedelta

from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.errors import InvalidClient
from server.domain.failure_limits import FailureLimiter
from server.store.base import USER_TYPE_MACHINE, Store


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_in: int  # seconds
    scope: str
    user_id: str

    def __repr__(self) -> str:
        return f"AccessToken(token='***', expires_in={self.expires_in}, user_id={self.user_id!r})"


class ClientCredentials:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        hasher: SecretHasher,
        token_ttl: timedelta,
        limiter: FailureLimiter,
    ) -> None:
        self._store = store
        self._commands = commands
        self._hasher = hasher
        self._token_ttl = token_ttl
        self._limiter = limiter

    async def exchange(self, client_id: str, client_secret: str, scope: str, source: str) -> AccessToken:
        """An access token for the machine user named client_id, if client_secret is its secret.

        source is where the request came from, for the limits on failed attempts."""
        await self._limiter.check(client_id, source)
        # A client id that no user name can be (control characters such as NUL, which PostgreSQL
        # refuses in text) names no one: the store answers None, and it is the same failure.
        user = await self._store.user_by_name(client_id) if client_id else None
        # A human user, or a deactivated one, has no secret that counts.
        usable = user is not None and user.type == USER_TYPE_MACHINE and user.active
        hashed = user.secret_hash if usable and user is not None else None
        if not await self._hasher.verify(client_secret, hashed) or user is None or hashed is None:
            await self._limiter.failed(client_id, source)  # TooManyFailures, past a limit
            raise InvalidClient()
        # Concurrent failures may have reached a limit while this one hashed: then a right secret
        # must look like any other refused attempt, or a burst would learn which guess was right.
        await self._limiter.check(client_id, source)
        if self._hasher.needs_rehash(hashed):
            await self._commands.rehash_secret(user.id, hashed, await self._hasher.hash(client_secret))
        token = await self._commands.issue_access_token(user, scope, self._token_ttl)
        return AccessToken(token, int(self._token_ttl.total_seconds()), scope, user.id)
