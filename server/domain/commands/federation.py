"""Commands of workload identity federation (issue 34): the issuers an organisation trusts
(policy.write), the federated credentials of its machine users (a credential like a secret: made
and ended by a caller who may act on the user, the gate _credential_holder, and ended with its
user), and the access tokens a workload's platform token earns (domain/federation.py decides).
"""

from dataclasses import dataclass
from datetime import datetime

from server.actor import Actor
from server.clock import to_micros
from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_org, next_of_user
from server.domain.credentials import token_hash
from server.domain.errors import AlreadyExists, FailedPrecondition, FieldViolation, NotFound
from server.domain.issuer_keys import read_key_set, url_problem
from server.domain.model import Details
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.federation import (
    FederatedAccessTokenAdded,
    FederatedCredentialAdded,
    FederatedCredentialRemoved,
    TrustedIssuerAdded,
    TrustedIssuerRemoved,
)
from server.store.contract import UserRecord

MAX_FEDERATION_TEXT = 500  # an issuer, a subject, an audience, a claim, a description
MAX_TRUSTED_ISSUERS = 1000  # per organisation
MAX_FEDERATED_CREDENTIALS = 20  # per user


@dataclass(frozen=True)
class Added:
    id: str
    details: Details


def issuer_not_found() -> NotFound:
    return NotFound("TRUSTED_ISSUER_NOT_FOUND", "the organisation trusts no issuer with this id")


def credential_not_found() -> NotFound:
    return NotFound(
        "FEDERATED_CREDENTIAL_NOT_FOUND", "the machine user has no federated credential with this id"
    )


def check_limit(reason: str, limit: int) -> FailedPrecondition:
    return FailedPrecondition(reason, f"at most {limit} may exist: remove one", {"limit": str(limit)})


def _texts(**fields: tuple[str, bool]) -> list[FieldViolation]:
    return [
        violation
        for name, (value, required) in fields.items()
        for violation in check.check_text(name, value, required=required, limit=MAX_FEDERATION_TEXT)
    ]


class FederationCommands(Writer):
    # Set by app.py: the origins a fetch may reach over http, or at a private address.
    allowed_origins: frozenset[str] = frozenset()

    async def add_trusted_issuer(
        self, ctx: CallContext, issuer: str, jwks_uri: str, jwks: str, description: str
    ) -> Added:
        """Trusts issuer for the context organisation, its keys inline (jwks) or fetched (from
        jwks_uri, or by discovery)."""
        violations = _texts(description=(description, False))
        if (problem := url_problem(issuer, self.allowed_origins)) is not None:
            violations.append(FieldViolation("issuer", problem))
        if jwks and jwks_uri:
            violations.append(FieldViolation("jwks", "give jwks or jwksUri, not both"))
        if jwks_uri and (problem := url_problem(jwks_uri, self.allowed_origins)) is not None:
            violations.append(FieldViolation("jwks_uri", problem))
        if jwks:
            try:
                read_key_set(jwks)
            except ValueError as refused:
                violations.append(FieldViolation("jwks", f"must be a JWKS of public keys: {refused}"))
        check.raise_if_any(violations)
        issuer_id = self._ids.new_id()

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            if org is None:
                raise NotFound("ORGANIZATION_NOT_FOUND", "organisation not found")
            trusted = await self._store.trusted_issuers(org.id)
            if any(t.issuer == issuer for t in trusted):
                raise AlreadyExists("TRUSTED_ISSUER_EXISTS", "the organisation trusts this issuer already")
            if len(trusted) >= MAX_TRUSTED_ISSUERS:
                raise check_limit("TRUSTED_ISSUER_LIMIT_REACHED", MAX_TRUSTED_ISSUERS)
            return [next_of_org(org, TrustedIssuerAdded(issuer_id, issuer, jwks_uri, jwks, description))]

        [stored] = await self._write(ctx, ctx.org_id, decide)
        return Added(issuer_id, Details.of_change(stored))

    async def remove_trusted_issuer(self, ctx: CallContext, issuer_id: str) -> Details:
        """Stops trusting the issuer: its tokens, and the access tokens they earned, at once."""
        check.raise_if_any(check.check_id("issuer_id", issuer_id))

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            if org is None:
                raise NotFound("ORGANIZATION_NOT_FOUND", "organisation not found")
            if all(t.issuer_id != issuer_id for t in await self._store.trusted_issuers(org.id)):
                raise issuer_not_found()
            return [next_of_org(org, TrustedIssuerRemoved(issuer_id))]

        [stored] = await self._write(ctx, ctx.org_id, decide)
        return Details.of_change(stored)

    async def add_federated_credential(
        self,
        ctx: CallContext,
        user_id: str,
        issuer: str,
        subject: str,
        audience: str,
        description: str,
        claim: tuple[str, str] = ("", ""),
    ) -> Added:
        """A workload whose platform token issuer signed for subject (exactly: no wildcards),
        with audience among its aud, and the claim if one is named, may act as the machine user."""
        claim_name, claim_value = claim
        violations = check.check_id("user_id", user_id) + _texts(
            issuer=(issuer, True),
            subject=(subject, True),
            audience=(audience, True),
            description=(description, False),
            claim_name=(claim_name, False),
            claim_value=(claim_value, bool(claim_name)),
        )
        if claim_value and not claim_name:
            violations.append(FieldViolation("claim_name", "must not be empty when claimValue is given"))
        if claim_name in ("iss", "sub", "aud", "exp", "nbf", "iat", "jti"):
            violations.append(FieldViolation("claim_name", "must not be a registered claim"))
        check.raise_if_any(violations)
        credential_id = self._ids.new_id()
        added = FederatedCredentialAdded(
            credential_id, issuer, subject, audience, claim_name, claim_value, description
        )

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(t.issuer != issuer for t in await self._store.trusted_issuers(user.org_id)):
                check.raise_if_any([FieldViolation("issuer", "must be a trusted issuer of the organisation")])
            if len(await self._store.federated_credentials(user.id)) >= MAX_FEDERATED_CREDENTIALS:
                raise check_limit("FEDERATED_CREDENTIAL_LIMIT_REACHED", MAX_FEDERATED_CREDENTIALS)
            return [next_of_user(user, added)]

        [stored] = await self._write(ctx, user_id, decide)
        return Added(credential_id, Details.of_change(stored))

    async def remove_federated_credential(
        self, ctx: CallContext, user_id: str, credential_id: str
    ) -> Details:
        """One federated credential of the user, and the access tokens it earned, at once."""
        check.raise_if_any(
            check.check_id("user_id", user_id) + check.check_id("credential_id", credential_id)
        )

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(
                c.credential_id != credential_id for c in await self._store.federated_credentials(user.id)
            ):
                raise credential_not_found()
            return [next_of_user(user, FederatedCredentialRemoved(credential_id))]

        [stored] = await self._write(ctx, user_id, decide)
        return Details.of_change(stored)

    async def issue_federated_access_token(
        self,
        user: UserRecord,
        credential_id: str,
        scope: str,
        expires_at: datetime,
        client: Actor,
        issuer: str = "",
    ) -> str:
        """A new access token for a machine user whose workload's platform token matched the
        federated credential credential_id (domain/federation.py). It dies with that credential."""
        token_id = self._ids.new_id()
        token = await self._new_access_token(user, token_id, scope, issuer, expires_at)
        added = FederatedAccessTokenAdded(
            user.id, token_hash(token), to_micros(expires_at), scope, credential_id
        )

        async def decide() -> list[NewEvent]:  # a new aggregate of its own: nothing to contend with
            return [NewEvent(token_id, 1, user.org_id, added)]

        await self._write(client, token_id, decide)
        return token
