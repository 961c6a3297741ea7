"""Assertions signed with a machine key (RFC 7523), as the domain sees them: the JWT profile grant
(§2.1: the assertion is the grant) and private_key_jwt client authentication (§2.2: the assertion
authenticates the client of a client-credentials grant). Either earns an access token, as a
client secret does, which lives while the key does.

What an assertion must be (§3) is assertions.py's, for these and for an API application's
assertions at the introspection endpoint alike. Here:
- at most MAX_ASSERTION_LENGTH characters, refused before it is parsed;
- `kid` the key's id (for private_key_jwt it may be left out: the client's keys are tried);
- `iss` and `sub` both the user's id (the grant, as ZITADEL's SDKs send them), or both the client
  id, its user name (private_key_jwt, as authlib's PrivateKeyJWT sends them);
- `aud` the issuer, as discovery gives it (or that with a slash, or the token endpoint's URL).
The key must be live, its user an active machine user. Every failure is the same InvalidGrant
(or, authenticating a client, InvalidClient), after a signature verification either way, and
counts towards the failure limits per key (or client) and per source, as a wrong secret does.
"""

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from server.actor import UNKNOWN, Actor, by_machine_key
from server.clock import SYSTEM_CLOCK, Clock
from server.domain.access import use_to_note
from server.domain.assertions import AssertionVerifier, header_of
from server.domain.client_credentials import AccessToken, check_audience
from server.domain.commands import Commands
from server.domain.errors import InvalidClient, InvalidGrant
from server.domain.failure_limits import FailureLimiter
from server.domain.ids import is_id
from server.limits import MAX_ASSERTION_LENGTH, MAX_USER_NAME_LENGTH
from server.store.contract import USER_TYPE_MACHINE, MachineKeyRecord, Store, UserRecord


@dataclass(frozen=True)
class _Proven:
    user: UserRecord
    key: MachineKeyRecord


class JwtProfile:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        token_ttl: timedelta,
        limiter: FailureLimiter,
        audiences: Callable[[], Collection[str]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """audiences: what `aud` may name, asked at each request (the issuers discovery may give,
        and the token endpoint's URLs)."""
        self._store = store
        self._commands = commands
        self._token_ttl = token_ttl
        self._limiter = limiter
        self._audiences = audiences
        self._clock = clock
        self._assertions = AssertionVerifier(store, clock)

    async def exchange(
        self, assertion: str, scope: str, source: str, origin: Actor = UNKNOWN, issuer: str = ""
    ) -> AccessToken:
        """§2.1: an access token for the machine user whose key signed assertion."""
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidGrant()
        header = self._header(assertion)
        kid = header.get("kid") if header is not None else None
        if not isinstance(kid, str) or not is_id(kid):
            kid = ""
        limit_key = f"key:{kid}"
        await self._limiter.check(limit_key, source)
        key = await self._store.machine_key(kid) if kid else None
        user = await self._store.user(key.user_id) if key is not None else None
        proven = await self._verify(assertion, header, [key] if key else [], user, user.id if user else None)
        if proven is None:
            await self._limiter.failed(limit_key, source)  # TooManyFailures, past a limit
            raise InvalidGrant()
        await self._limiter.check(limit_key, source)
        return await self._issue(proven, scope, origin, issuer)

    async def authenticate_client(
        self,
        client_id: str,
        assertion: str,
        scope: str,
        source: str,
        origin: Actor = UNKNOWN,
        issuer: str = "",
    ) -> AccessToken:
        """§2.2 (private_key_jwt) on the client-credentials grant: an access token for the machine
        user named client_id, whose key signed assertion."""
        proven = await self._prove_client(client_id, assertion, source)
        return await self._issue(proven, scope, origin, issuer)

    async def authenticate(
        self, client_id: str, assertion: str, source: str
    ) -> tuple[UserRecord, MachineKeyRecord]:
        """§2.2 alone: the machine user named client_id and its key that signed assertion, as the
        revocation endpoint authenticates a client (domain/token_revocation.py). InvalidClient
        for every failure, within the failure limits."""
        proven = await self._prove_client(client_id, assertion, source)
        return proven.user, proven.key

    async def _prove_client(self, client_id: str, assertion: str, source: str) -> _Proven:
        if len(client_id) > MAX_USER_NAME_LENGTH or len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        header = self._header(assertion)
        user = await self._store.user_by_name(client_id) if client_id else None
        keys = await self._store.machine_keys(user.id) if user is not None else []
        kid = header.get("kid") if header is not None else None
        # Without a kid, each live key of the client is tried: at most the policy's keys per user.
        now = self._clock.now()
        keys = [k for k in keys if k.live(now) and (kid is None or k.key_id == kid)]
        proven = await self._verify(assertion, header, keys, user, client_id)
        if proven is None:
            await self._limiter.failed(client_id, source)
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        return proven

    @staticmethod
    def _header(assertion: str) -> dict[str, Any] | None:
        return header_of(assertion)

    async def _verify(
        self,
        assertion: str,
        header: dict[str, Any] | None,
        keys: Sequence[MachineKeyRecord],
        user: UserRecord | None,
        subject: str | None,
    ) -> _Proven | None:
        """The key among keys that signed assertion, if the assertion holds by every rule
        (assertions.py) and the key's user is an active machine user; None otherwise, after one
        verification at least."""
        verified = self._assertions.verified(
            assertion, header, keys, subject if user is not None else None, self._audiences()
        )
        if verified is None or user is None:
            return None
        if not (user.type == USER_TYPE_MACHINE and user.active and user.id == verified.key.user_id):
            return None
        if not await self._assertions.first_use(verified):
            return None  # a replay
        return _Proven(user, verified.key)

    async def _issue(self, proven: _Proven, scope: str, origin: Actor, issuer: str) -> AccessToken:
        user, key = proven.user, proven.key
        await check_audience(self._store, scope, user.org_id)
        now = self._clock.now()
        if (note := use_to_note(key.last_used_at, now)) is not None:
            await self._store.touch_machine_key(key.key_id, *note)
        # A token never outlives its key's expiry, and dies at once with its removal.
        expires_at = now + self._token_ttl
        if key.expires_at is not None:
            expires_at = min(expires_at, key.expires_at)
        actor = by_machine_key(origin, user.id, user.org_id, key.key_id)
        token = await self._commands.issue_key_access_token(
            user, key.key_id, scope, expires_at, actor, issuer
        )
        return AccessToken(token, int((expires_at - now).total_seconds()), scope, user.id)


def audiences_of(issuers: Collection[str], token_path: str) -> list[str]:
    """What an assertion's aud may name, given the issuers: each, with a slash, and its token
    endpoint."""
    return [a for issuer in issuers for a in (issuer, issuer + "/", issuer + token_path)]
