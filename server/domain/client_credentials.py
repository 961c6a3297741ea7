"""The OAuth2 client-credentials grant (RFC 6749 §4.4), as the domain sees it: a machine user
proves it holds its client secret and receives an access token.

Every failure (unknown client, human user, no secret, wrong secret) is the same InvalidClient,
reached after the same bcrypt work, so that a caller cannot tell which it was.
"""

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from server.domain.credentials import SecretHasher, new_token, token_hash
from server.domain.errors import InvalidClient
from server.domain.failure_limits import FailureLimiter
from server.domain.ids import IdGenerator
from server.store import events as ev
from server.store.base import USER_TYPE_MACHINE, ConcurrencyConflict, Store, UserRecord
from server.store.events import NewEvent
from server.store.schema import to_micros


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
        hasher: SecretHasher,
        ids: IdGenerator,
        token_ttl: timedelta,
        limiter: FailureLimiter,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._ids = ids
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
            await self._rehash(user, client_secret)
        return await self._issue(user, scope)

    async def _issue(self, user: UserRecord, scope: str) -> AccessToken:
        token, token_id = new_token(), self._ids.new_id()
        expires_at = datetime.now(UTC) + self._token_ttl
        payload = {
            "user_id": user.id,
            "token_hash": token_hash(token),
            "expires_at": to_micros(expires_at),
            "scope": scope,
            "secret_sequence": user.secret_sequence,
        }
        await self._store.append(
            [NewEvent(ev.AGGREGATE_TOKEN, token_id, 1, ev.TOKEN_ACCESS_ADDED, user.org_id, payload)]
        )
        return AccessToken(token, int(self._token_ttl.total_seconds()), scope, user.id)

    async def _rehash(self, user: UserRecord, client_secret: str) -> None:
        """Records the secret hashed at the configured cost, so an operator can change the cost.

        Best effort: if the user changed meanwhile (a new secret, say), this hash is stale anyway
        and the next successful exchange tries again.
        """
        hashed = await self._hasher.hash(client_secret)
        event = NewEvent(
            ev.AGGREGATE_USER,
            user.id,
            user.sequence + 1,
            ev.USER_MACHINE_SECRET_UPDATED,
            user.org_id,
            {"hash": hashed},
        )
        with contextlib.suppress(ConcurrencyConflict):
            await self._store.append([event])
