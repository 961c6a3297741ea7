"""Commands on OAuth2 access tokens: issued at the token endpoint, to a client that proved it
holds a secret (domain/client_credentials.py decides that), a machine key or a federated
credential, and revoked at the revocation endpoint (domain/token_revocation.py decides that).
issuer: the issuer the token endpoint was reached as, named in a JWT access token
(domain/jwt_access_tokens.py); "" issues an opaque token whatever the user's form."""

from datetime import datetime

from server.actor import Actor
from server.clock import to_micros
from server.domain.commands.writes import Writer
from server.domain.credentials import token_hash
from server.events.base import NewEvent
from server.events.token import AccessTokenAdded, AccessTokenRevoked, KeyAccessTokenAdded
from server.store.contract import UserRecord


class TokenCommands(Writer):
    async def issue_access_token(
        self,
        user: UserRecord,
        secret_id: str,
        scope: str,
        expires_at: datetime,
        client: Actor,
        issuer: str = "",
    ) -> str:
        """A new access token for a machine user that proved it holds the secret secret_id (the
        token endpoint's decision, in ClientCredentials). It dies with that secret. client: the
        client as the actor, by the secret it proved."""
        token_id = self._ids.new_id()
        token = await self._new_access_token(user, token_id, scope, issuer, expires_at)
        added = AccessTokenAdded(user.id, token_hash(token), to_micros(expires_at), scope, secret_id)

        async def decide() -> list[NewEvent]:  # a new aggregate of its own: nothing to contend with
            return [NewEvent(token_id, 1, user.org_id, added)]

        await self._write(client, token_id, decide)
        return token

    async def issue_key_access_token(
        self, user: UserRecord, key_id: str, scope: str, expires_at: datetime, client: Actor, issuer: str = ""
    ) -> str:
        """A new access token for a machine user that proved it holds the machine key key_id (an
        assertion it signed: domain/jwt_profile.py). It dies with that key."""
        token_id = self._ids.new_id()
        token = await self._new_access_token(user, token_id, scope, issuer, expires_at)
        added = KeyAccessTokenAdded(user.id, token_hash(token), to_micros(expires_at), scope, key_id)

        async def decide() -> list[NewEvent]:  # a new aggregate of its own: nothing to contend with
            return [NewEvent(token_id, 1, user.org_id, added)]

        await self._write(client, token_id, decide)
        return token

    async def revoke_access_token(self, token_id: str, user_id: str, org_id: str, client: Actor) -> bool:
        """Ends the access token token_id of user_id (an organisation's, org_id), whatever earned
        it: the one write behind RFC 7009 revocation, for an opaque token and for a JWT alike
        (each has one row in the tokens table, which the event's projection deletes). client: who
        revoked it. False when there was nothing left to revoke (never issued, or revoked
        already)."""

        async def decide() -> list[NewEvent]:
            events = await self._store.events(AccessTokenAdded.AGGREGATE, token_id)
            if not events or any(isinstance(e.event, AccessTokenRevoked) for e in events):
                return []
            return [NewEvent(token_id, events[-1].sequence + 1, org_id, AccessTokenRevoked(user_id))]

        return bool(await self._write(client, token_id, decide))
