"""The OAuth2 client-credentials grant (RFC 6749 §4.4), as the domain sees it: a machine user
proves it holds its client secret and receives an access token.

Every failure (unknown client, human user, no secret, an expired or deleted secret, a wrong one) is
the same InvalidClient, reached after the same bcrypt work, so that a caller cannot tell which it was.
"""

from dataclasses import dataclass
from datetime import timedelta

from server.actor import Actor, by_client_secret
from server.clock import SYSTEM_CLOCK, Clock
from server.domain.access import use_to_note
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.errors import InvalidClient, InvalidScope
from server.domain.failure_limits import FailureLimiter
from server.domain.scopes import RequestedClaims
from server.domain.secret_format import lookup_key
from server.limits import MAX_SECRET_LENGTH, MAX_USER_NAME_LENGTH
from server.store.contract import USER_TYPE_MACHINE, ClientRecord, SecretRecord, Store, UserRecord

NO_CLIENT = ClientRecord(None, None)


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
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._clock = clock
        self._store = store
        self._commands = commands
        self._hasher = hasher
        self._token_ttl = token_ttl
        self._limiter = limiter

    async def exchange(
        self, client_id: str, client_secret: str, scope: str, source: str, origin: Actor, issuer: str = ""
    ) -> AccessToken:
        """An access token for the machine user named client_id, if client_secret is one of its
        live secrets.

        One bcrypt verification, however many secrets the client has: a secret of the msk_ format
        carries the lookup key of its one stored hash (any other string is checked against the
        client's secret from before that format, if it has one). Unknown, expired, deleted and
        wrong secrets all cost that one verification and get the same InvalidClient.

        source is where the request came from, for the limits on failed attempts. origin is the
        request as an actor (its id, address and transport); issuer: the issuer the endpoint
        was reached as (a JWT access token names it); the events an exchange writes record
        the client as their actor, by the secret it proved (actor.by_client_secret).

        An id or a secret longer than any client can have is refused first, with the same
        InvalidClient but none of the work: the length that decides it is the caller's own, so the
        quicker answer tells nothing about any client, and the id is never normalised."""
        user, secret = await self.authenticate(client_id, client_secret, source)
        now = self._clock.now()
        await check_audience(self._store, scope, user.org_id)
        if self._hasher.needs_rehash(secret.hash):
            new_hash = await self._hasher.hash(client_secret)
            await self._commands.rehash_secret(user.id, secret.secret_id, secret.hash, new_hash, origin)
        if (note := use_to_note(secret.last_used_at, now)) is not None:
            await self._store.touch_secret(secret.secret_id, *note)
        # A token never outlives its secret's expiry (and dies at once with a rotation, a deletion
        # or a revocation: Access checks the secret on every call).
        expires_at = now + self._token_ttl
        if secret.expires_at is not None:
            expires_at = min(expires_at, secret.expires_at)
        actor = by_client_secret(origin, user.id, user.org_id, secret.secret_id)
        token = await self._commands.issue_access_token(
            user, secret.secret_id, scope, expires_at, actor, issuer
        )
        return AccessToken(token, int((expires_at - now).total_seconds()), scope, user.id)

    async def authenticate(
        self, client_id: str, client_secret: str, source: str
    ) -> tuple[UserRecord, SecretRecord]:
        """The machine user named client_id and its live secret client_secret: what exchange
        decides before it issues a token, and the revocation endpoint before it revokes one
        (domain/token_revocation.py). InvalidClient for every failure, after the same one bcrypt
        verification and within the failure limits; TooManyFailures past them."""
        if len(client_id) > MAX_USER_NAME_LENGTH or len(client_secret) > MAX_SECRET_LENGTH:
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        # A client id that no user name can be (control characters such as NUL, which PostgreSQL
        # refuses in text) names no one: the store finds no user, and it is the same failure. For
        # a client id that may be a name, the store reads as much whether its user exists or not.
        client = await self._store.client(client_id, lookup_key(client_secret)) if client_id else NO_CLIENT
        now = self._clock.now()
        user, secret = client.user, client.secret
        # A human user, or a deactivated one, has no secret that counts; nor an expired secret.
        usable = user is not None and user.type == USER_TYPE_MACHINE and user.active
        if not usable or secret is None or not secret.live(now):
            secret = None
        hashed = None if secret is None else secret.hash
        if not await self._hasher.verify(client_secret, hashed) or user is None or secret is None:
            await self._limiter.failed(client_id, source)  # TooManyFailures, past a limit
            raise InvalidClient()
        # Concurrent failures may have reached a limit while this one hashed: then a right secret
        # must look like any other refused attempt, or a burst would learn which guess was right.
        await self._limiter.check(client_id, source)
        return user, secret


async def check_audience(store: Store, scope: str, org_id: str) -> None:
    """Every project the scope names as audience exists and is the client's organisation's
    (checked once the client is known: who may not authenticate learns nothing of projects).
    Every grant that issues a token checks it (a secret, a machine key): a token whose audience
    named another organisation's project would be active at that project's introspection."""
    for project_id in RequestedClaims.of(scope).audience:
        project = await store.project(project_id)
        if project is None or project.org_id != org_id:
            raise InvalidScope(f"no project {project_id} of the client's organisation")
