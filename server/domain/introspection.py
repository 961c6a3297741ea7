"""Token introspection (RFC 7662), as ZITADEL answers it: an API application (a resource server)
asks whether an access token is active, and what it says.

The caller authenticates as its application's auth method says: with its client id and secret
(client_secret_basic, API_AUTH_METHOD_TYPE_BASIC), or with a client assertion signed by one of its
keys (private_key_jwt, RFC 7523 §2.2, API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT: `iss` = `sub` = its
client id, `aud` the issuer or this endpoint, by assertions.py's rules, a `jti` refused a second
time). As at the token endpoint, every failure (unknown client, wrong secret, a client of the
other method, a bad assertion, a replay) is the same InvalidClient after the same work (one bcrypt
verification for a secret, one signature verification for an assertion), within the same failure
limits (the application's client id is counted apart from user names).

A token is active only while it would be accepted on this service's API (not expired; its secret
live; its user active and present) AND the application's project is in the token's audience (its
`urn:zitadel:iam:org:project:id:{projectId}:aud` scope): a token meant for another API is
inactive, so that one API cannot replay or read another's tokens. An inactive token is answered
with {"active": false} and nothing else (§2.2), whatever made it so: an unknown string, an expired
or revoked token, a secret deleted or rotated out, a user deactivated or removed, another audience.
"""

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from server.clock import SYSTEM_CLOCK, Clock
from server.domain import scopes
from server.domain.access import accepted
from server.domain.assertions import AssertionVerifier, header_of
from server.domain.commands.projects import AUTH_METHOD_BASIC, AUTH_METHOD_PRIVATE_KEY_JWT
from server.domain.credentials import SecretHasher, token_hash
from server.domain.errors import InvalidClient
from server.domain.failure_limits import FailureLimiter
from server.domain.secret_format import lookup_key
from server.domain.token_claims import metadata_claims, role_claims
from server.events.federation import FederatedAccessTokenAdded
from server.events.token import AccessTokenAdded, KeyAccessTokenAdded
from server.limits import (
    MAX_ASSERTION_LENGTH,
    MAX_BEARER_TOKEN_LENGTH,
    MAX_SECRET_LENGTH,
    MAX_USER_NAME_LENGTH,
)
from server.store.contract import AppRecord, Store

INACTIVE: dict[str, Any] = {"active": False}
CLIENT_ID = re.compile(r"[0-9]{1,19}@[0-9]{1,19}")  # commands/projects.py's client_id_of
TOKEN_TYPE = "Bearer"
# The failure limits count an application's client id apart from the user names they count.
LIMIT_PREFIX = "app:"


@dataclass(frozen=True)
class Introspected:
    """The answer (§2.2), and the application that asked (for the access line)."""

    claims: dict[str, Any]
    app_id: str


class Introspection:
    def __init__(
        self, store: Store, hasher: SecretHasher, limiter: FailureLimiter, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._limiter = limiter
        self._clock = clock
        self._assertions = AssertionVerifier(store, clock)

    async def introspect(
        self,
        client_id: str,
        client_secret: str,
        token: str,
        source: str,
        issuer: str,
        client_assertion: str = "",
        audiences: Collection[str] = (),
    ) -> Introspected:
        """client_assertion: private_key_jwt instead of the secret; audiences: what its aud may
        name."""
        if client_assertion:
            app = await self._authenticate_by_assertion(client_id, client_assertion, source, audiences)
        else:
            app = await self._authenticate(client_id, client_secret, source)
        return Introspected(await self._claims(app, token, issuer), app.app_id)

    async def authenticate_app(self, client_id: str, client_secret: str, source: str) -> AppRecord:
        """The API application client_id, if client_secret is its secret: as introspection
        authenticates it, for the revocation endpoint (domain/token_revocation.py)."""
        return await self._authenticate(client_id, client_secret, source)

    async def _authenticate(self, client_id: str, client_secret: str, source: str) -> AppRecord:
        """The application, if client_secret is its secret: one bcrypt verification whatever the
        failure, and the failure limits of the token endpoint."""
        if len(client_id) > MAX_USER_NAME_LENGTH or len(client_secret) > MAX_SECRET_LENGTH:
            raise InvalidClient()
        limited = LIMIT_PREFIX + client_id
        await self._limiter.check(limited, source)
        # Only what a client id can be is looked up: anything else (a NUL, which PostgreSQL
        # refuses in text) names no one, at the same cost.
        app = await self._store.app_by_client_id(client_id) if CLIENT_ID.fullmatch(client_id) else None
        # The stored hash only for the secret that carries its lookup key: any other string is
        # checked against the dummy hash, at the same cost.
        by_secret = app is not None and app.auth_method == AUTH_METHOD_BASIC
        hashed = (
            app.secret_hash
            if app is not None and by_secret and app.secret_lookup == lookup_key(client_secret)
            else None
        )
        if not await self._hasher.verify(client_secret, hashed) or app is None:
            await self._limiter.failed(limited, source)
            raise InvalidClient()
        await self._limiter.check(limited, source)
        return app

    async def _authenticate_by_assertion(
        self, client_id: str, assertion: str, source: str, audiences: Collection[str]
    ) -> AppRecord:
        """The application, if one of its live keys signed assertion and the assertion holds by
        every rule: one signature verification whatever the failure (a stand-in key's when there
        is no key to try), and the failure limits of a secret."""
        if len(client_id) > MAX_USER_NAME_LENGTH or len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClient()
        limited = LIMIT_PREFIX + client_id
        await self._limiter.check(limited, source)
        app = await self._store.app_by_client_id(client_id) if CLIENT_ID.fullmatch(client_id) else None
        keys = (
            await self._store.app_keys(app.app_id)
            if app is not None and app.auth_method == AUTH_METHOD_PRIVATE_KEY_JWT
            else []
        )
        header = header_of(assertion)
        kid = header.get("kid") if header is not None else None
        # Without a kid, each live key of the application is tried: at most the policy's keys.
        now = self._clock.now()
        keys = [k for k in keys if k.live(now) and (kid is None or k.key_id == kid)]
        subject = client_id if app is not None else None
        verified = self._assertions.verified(assertion, header, keys, subject, audiences)
        if verified is None or app is None or not await self._assertions.first_use(verified):
            await self._limiter.failed(limited, source)
            raise InvalidClient()
        await self._limiter.check(limited, source)
        return app

    async def _claims(self, app: AppRecord, token: str, issuer: str) -> dict[str, Any]:
        if not token or len(token) > MAX_BEARER_TOKEN_LENGTH:
            return INACTIVE
        caller = await self._store.caller(token_hash(token))
        now = self._clock.now()
        if caller is None or not accepted(caller, now):
            return INACTIVE
        if (
            caller.token.secret_id is None
            and caller.token.key_id is None
            and caller.token.credential_id is None
        ):
            return INACTIVE  # a PAT has no audience but this service's API
        added = [
            e
            for e in await self._store.events(AccessTokenAdded.AGGREGATE, caller.token.token_id)
            if isinstance(e.event, AccessTokenAdded | KeyAccessTokenAdded | FederatedAccessTokenAdded)
        ]
        if not added:
            return INACTIVE
        issued, event = added[0], added[0].event
        assert isinstance(event, AccessTokenAdded | KeyAccessTokenAdded | FederatedAccessTokenAdded)
        asked = scopes.RequestedClaims.of(event.scope)
        if app.project_id not in asked.audience:
            return INACTIVE  # meant for another API
        user = await self._store.user(caller.token.user_id)
        org = await self._store.org(caller.org_id)
        if user is None or org is None:
            return INACTIVE
        assert caller.token.expires_at is not None  # an access token always expires
        issued_at = int(issued.created_at.timestamp())
        claims: dict[str, Any] = {
            "active": True,
            "scope": event.scope,
            "client_id": user.user_name,
            "token_type": TOKEN_TYPE,
            "exp": int(caller.token.expires_at.timestamp()),
            "iat": issued_at,
            "nbf": issued_at,
            "sub": user.id,
            "aud": list(asked.audience),
            "iss": issuer,
            "jti": caller.token.token_id,
            "username": user.user_name,
        }
        if asked.resource_owner:
            claims[scopes.RESOURCE_OWNER_ID_CLAIM] = org.id
            claims[scopes.RESOURCE_OWNER_NAME_CLAIM] = org.name
        if asked.asks_roles:
            claims |= await role_claims(self._store, user.id, asked, app.project_id)
        if asked.metadata:
            claims |= await metadata_claims(self._store, user.id)
        return claims
