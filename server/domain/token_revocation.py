"""Token revocation (RFC 7009), as the domain sees it: a client ends an access token it holds.

Who may revoke what. §2.1: the server validates the client's credentials, then "verifies whether
the token was issued to the client making the revocation request":
- a machine user, authenticated as at the token endpoint (its secret, by client_secret_basic or
  client_secret_post; an assertion its machine key signed, private_key_jwt; or a workload's
  platform token of an issuer its organisation trusts), revokes the access tokens issued to it,
  whichever of its credentials earned them;
- an API application, by its secret, revokes the access tokens meant for its project (the project
  in their audience): the resource server that received a token, or found it leaked, ends it. That
  reaches no further than introspection lets it read, and the token's holder can ask for another.
A personal access token is no client's: it is removed by RemovePersonalAccessToken, not here.

Everything else revokes nothing and is answered as a revocation is (§2.2: 200 "if the token has
been revoked successfully or if the client submitted an invalid token"): an unknown string, a dead
token, a PAT, another client's token. So the endpoint is no oracle of whether a token exists, or
whose it is. A client that fails to authenticate is InvalidClient, after the same work and within
the same failure limits as at the token endpoint and introspection (the same keys: a guesser gains
nothing by switching endpoints).

What revoking does: one event on the token's aggregate, whose projection deletes the token's row
(Commands.revoke_access_token), for an opaque token and a JWT alike. Every process reads that
table: introspection refuses the token at once everywhere, and this service's API at once on this
process and, on the others, once their cache of callers (at most 1 s old) is read again.
"""

from dataclasses import dataclass

from server.actor import Actor, by_app_secret, by_client_secret, by_federated_credential, by_machine_key
from server.domain import scopes
from server.domain.client_credentials import ClientCredentials
from server.domain.commands import Commands
from server.domain.credentials import token_hash
from server.domain.federation import Federation, federated_issuer
from server.domain.introspection import CLIENT_ID, LIMIT_PREFIX, Introspection
from server.domain.jwt_profile import JwtProfile
from server.events.base import AGGREGATE_TOKEN
from server.events.federation import FederatedAccessTokenAdded
from server.events.token import AccessTokenAdded, KeyAccessTokenAdded
from server.limits import MAX_BEARER_TOKEN_LENGTH
from server.store.contract import CallerRecord, Store


@dataclass(frozen=True)
class _Client:
    """Who authenticated: a machine user (user_id), or an API application (project_id)."""

    actor: Actor
    user_id: str = ""
    project_id: str = ""
    caller: str = ""  # as the access line names it


class TokenRevocation:
    """authenticate the client → find the token's row → revoke it if the client holds it."""

    def __init__(
        self,
        store: Store,
        commands: Commands,
        credentials: ClientCredentials,
        jwt_profile: JwtProfile,
        introspection: Introspection,
        federation: Federation | None = None,
    ) -> None:
        self._store = store
        self._commands = commands
        self._credentials = credentials
        self._jwt_profile = jwt_profile
        self._introspection = introspection
        self._federation = federation

    async def revoke(
        self,
        client_id: str,
        client_secret: str,
        client_assertion: str,
        token: str,
        source: str,
        origin: Actor,
    ) -> str:
        """Revokes token if the client (client_secret, or client_assertion when it is not "")
        holds it; answers the client as the access line names it. InvalidClient, or
        TooManyFailures past the limits, when the client does not authenticate: the token is not
        looked at before then."""
        client = await self._authenticate(client_id, client_secret, client_assertion, source, origin)
        row = await self._row(token)
        if row is None or not _is_access_token(row):
            return client.caller
        if client.user_id:
            holds = row.token.user_id == client.user_id
        else:
            holds = client.project_id in await self._audience(row.token.token_id)
        if holds:
            await self._commands.revoke_access_token(
                row.token.token_id, row.token.user_id, row.org_id, client.actor
            )
        return client.caller

    async def _authenticate(
        self, client_id: str, client_secret: str, client_assertion: str, source: str, origin: Actor
    ) -> _Client:
        if client_assertion:
            if self._federation is not None and federated_issuer(client_assertion, client_id):
                user, credential = await self._federation.authenticate(client_id, client_assertion, source)
                actor = by_federated_credential(origin, user.id, user.org_id, credential.credential_id)
            else:
                user, key = await self._jwt_profile.authenticate(client_id, client_assertion, source)
                actor = by_machine_key(origin, user.id, user.org_id, key.key_id)
            return _Client(actor, user_id=user.id, caller=user.id)
        # An application's client id has its own shape ({app}@{project}); a user may have chosen
        # such a name, so it is an application's only if one has it.
        if CLIENT_ID.fullmatch(client_id) and await self._store.app_by_client_id(client_id) is not None:
            app = await self._introspection.authenticate_app(client_id, client_secret, source)
            actor = by_app_secret(origin, app.app_id, app.org_id)
            return _Client(actor, project_id=app.project_id, caller=LIMIT_PREFIX + app.app_id)
        user, secret = await self._credentials.authenticate(client_id, client_secret, source)
        actor = by_client_secret(origin, user.id, user.org_id, secret.secret_id)
        return _Client(actor, user_id=user.id, caller=user.id)

    async def _row(self, token: str) -> CallerRecord | None:
        """The token's row in the tokens table, if it has one: the one place a presented token is
        found for revocation (an opaque token by its hash)."""
        if not token or len(token) > MAX_BEARER_TOKEN_LENGTH:
            return None
        return await self._store.caller(token_hash(token))

    async def _audience(self, token_id: str) -> frozenset[str]:
        """The projects the token was issued for: its scope's audience, as introspection reads it."""
        for stored in await self._store.events(AGGREGATE_TOKEN, token_id):
            if isinstance(stored.event, AccessTokenAdded | KeyAccessTokenAdded | FederatedAccessTokenAdded):
                return frozenset(scopes.RequestedClaims.of(stored.event.scope).audience)
        return frozenset()


def _is_access_token(row: CallerRecord) -> bool:
    """An OAuth access token (earned by a secret, a key or a platform token), not a PAT."""
    token = row.token
    return token.secret_id is not None or token.key_id is not None or token.credential_id is not None
