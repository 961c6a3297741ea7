"""The form of a machine user's access token: opaque (BEARER, the default) or a JWT (RFC 9068,
`typ: at+jwt`), as the user's access_token_type says; every grant issues the user's form.

A JWT carries ZITADEL's claims: iss, sub (the user id), aud (the projects of its
`urn:zitadel:iam:org:project:id:{id}:aud` scopes; `zitadel`, this service's own API, when it asks
none, or asks for it), client_id (the user name), exp, iat, nbf, jti (the token's id, as the
introspection endpoint gives it), scope, and the resource-owner and role claims its scope asks
for, as they were at issue (the introspection endpoint reads them as they are now).

A JWT is kept like an opaque token: a row in the tokens table, found by the SHA-256 of the whole
token (unguessable: it carries the signature), so that the user's state, the secret's (or key's,
or credential's) deletion and revocation reach it on this service's API and at introspection
exactly as they reach an opaque token. A resource server that verifies it offline with the JWKS
sees none of that before it expires.
"""

from datetime import datetime
from typing import Any

from server.clock import SYSTEM_CLOCK, Clock
from server.domain import scopes
from server.domain.credentials import new_token
from server.domain.errors import InvalidScope, Unavailable
from server.domain.signing_keys import KeyRing
from server.domain.token_claims import metadata_claims, resource_owner_claims, role_claims
from server.limits import MAX_BEARER_TOKEN_LENGTH
from server.store.contract import ACCESS_TOKEN_JWT, Store, UserRecord

OWN_AUDIENCE = "zitadel"  # this service's API, as ZITADEL's scope names it
OWN_AUDIENCE_SCOPE = "urn:zitadel:iam:org:project:id:zitadel:aud"


class TokenMinter:
    """Makes the token string of a new access token, in its user's form."""

    def __init__(self, store: Store, keyring: KeyRing | None, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._keyring = keyring
        self._clock = clock

    async def mint(
        self,
        user: UserRecord,
        token_id: str,
        scope: str,
        issuer: str,
        issued_at: datetime,
        expires_at: datetime,
    ) -> str:
        if user.access_token_type != ACCESS_TOKEN_JWT:
            return new_token()
        signer = None if self._keyring is None else await self._keyring.signer()
        if signer is None:  # only before the first key is made, at the first start
            raise Unavailable("NO_SIGNING_KEY", "no signing key yet; try again")
        claims = await self.claims(user, token_id, scope, issuer, issued_at, expires_at)
        token = signer.sign(claims)
        if len(token) > MAX_BEARER_TOKEN_LENGTH:  # no API would take it
            raise InvalidScope("the token would be too long: ask for fewer roles")
        return token

    async def claims(
        self,
        user: UserRecord,
        token_id: str,
        scope: str,
        issuer: str,
        issued_at: datetime,
        expires_at: datetime,
    ) -> dict[str, Any]:
        asked = scopes.RequestedClaims.of(scope)
        audience = list(asked.audience)
        if not audience or OWN_AUDIENCE_SCOPE in scope.split():
            audience.append(OWN_AUDIENCE)
        issued = int(issued_at.timestamp())
        claims: dict[str, Any] = {
            "iss": issuer,
            "sub": user.id,
            "aud": audience,
            "client_id": user.user_name,
            "exp": int(expires_at.timestamp()),
            "iat": issued,
            "nbf": issued,
            "jti": token_id,
            "scope": scope,
        }
        if asked.resource_owner:
            claims |= await resource_owner_claims(self._store, user.org_id)
        if asked.asks_roles and asked.audience:
            claims |= await role_claims(self._store, user.id, asked, asked.audience[0])
        if asked.metadata:
            claims |= await metadata_claims(self._store, user.id)
        return claims
