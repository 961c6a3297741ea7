"""Commands on machine users' client secrets, and on the organisation's rules for them.

Every path that makes a secret (AddSecret, CreateSecret, RotateSecret) goes through
_issue_secret: the organisation's policy (domain/secret_policy.py), then the secret made and
hashed outside the user's turn, then the decision in it.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from server.actor import SYSTEM, Actor
from server.clock import to_micros
from server.domain import secret_policy as rules
from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_org, next_of_user
from server.domain.errors import FailedPrecondition, NotFound
from server.domain.model import Details, IssuedSecret
from server.domain.permissions import CallContext
from server.domain.secret_format import new_secret
from server.domain.secret_policy import SecretPolicy
from server.events.base import NewEvent
from server.events.secret import (
    SecretAdded,
    SecretDeleted,
    SecretRehashed,
    SecretRevoked,
    SecretRotated,
    SecretSet,
    SecretsRemoved,
)

# The events that make a new secret, by what they do with the others.
NewSecretEvent = type[SecretSet] | type[SecretAdded] | type[SecretRotated]


class SecretCommands(Writer):
    async def add_secret(self, ctx: CallContext, user_id: str) -> IssuedSecret:
        """ZITADEL's meaning: one new secret that replaces all of the user's others at once."""
        return await self._issue_secret(ctx, user_id, SecretSet)

    async def create_secret(
        self, ctx: CallContext, user_id: str, expires_at: datetime | None, description: str
    ) -> IssuedSecret:
        """One new secret beside the user's live ones, within the policy's limit."""
        return await self._issue_secret(ctx, user_id, SecretAdded, expires_at, description)

    async def rotate_secret(
        self,
        ctx: CallContext,
        user_id: str,
        grace: timedelta | None,
        expires_at: datetime | None,
        description: str,
    ) -> IssuedSecret:
        """One new secret; every other live secret of the user expires at now + grace, or earlier
        if it was due earlier (a grace of 0 retires them at once)."""
        return await self._issue_secret(ctx, user_id, SecretRotated, expires_at, description, grace)

    async def _issue_secret(
        self,
        ctx: CallContext,
        user_id: str,
        kind: NewSecretEvent,
        requested_expiry: datetime | None = None,
        description: str = "",
        grace: timedelta | None = None,
    ) -> IssuedSecret:
        policy = SecretPolicy.of(await self._store.secret_policy(ctx.org_id))
        violations = check.check_id("user_id", user_id) + check.check_text(
            "description", description, required=False, limit=rules.MAX_SECRET_DESCRIPTION_LENGTH
        )
        expires_at, refused = rules.expiry(policy, requested_expiry, self._clock.now())
        violations += refused
        if kind is SecretRotated:
            violations += rules.check_grace(policy, grace)
        check.raise_if_any(violations)
        secret, secret_id = new_secret(), self._ids.new_id()
        hashed = await self._hasher.hash(secret.text)  # outside the write's turn: bcrypt is the slow part
        expires_micros = None if expires_at is None else to_micros(expires_at)
        client_id = ""

        async def decide() -> list[NewEvent]:
            nonlocal client_id
            user = await self._credential_holder(ctx, user_id)
            client_id, now = user.user_name, self._clock.now()
            fields = (secret_id, hashed, secret.lookup, description, expires_micros)
            if kind is SecretSet:  # a replacement leaves one: within any limit
                return [next_of_user(user, SecretSet(*fields))]
            live = sum(s.live(now) for s in await self._store.secrets(user.id))
            if kind is SecretRotated:
                assert grace is not None
                event: SecretAdded | SecretRotated = SecretRotated(
                    *fields, others_expire_at=to_micros(now + grace)
                )
                live = live if grace else 0  # with no grace, the others are retired at once
            else:
                event = SecretAdded(*fields)
            rules.check_secret_count(policy, live + 1)
            return [next_of_user(user, event)]

        [added] = await self._write(ctx, user_id, decide)
        return IssuedSecret(secret_id, client_id, secret.text, expires_at, Details.of_change(added))

    async def delete_secret(self, ctx: CallContext, user_id: str, secret_id: str) -> Details:
        """One secret of the user, and its access tokens, at once."""
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("secret_id", secret_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(s.secret_id != secret_id for s in await self._store.secrets(user.id)):
                raise NotFound("SECRET_NOT_FOUND", "the machine user has no secret with this id")
            return [next_of_user(user, SecretDeleted(secret_id))]

        [added] = await self._write(ctx, user_id, decide)
        return Details.of_change(added)

    async def remove_secret(self, ctx: CallContext, user_id: str) -> Details:
        """Every secret of the user (ZITADEL's RemoveSecret)."""
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if not await self._store.secrets(user.id):
                raise FailedPrecondition("SECRET_NOT_FOUND", "the machine user has no secret")
            return [next_of_user(user, SecretsRemoved())]

        [added] = await self._write(ctx, user_id, decide)
        return Details.of_change(added)

    async def set_secret_policy(self, ctx: CallContext, policy: SecretPolicy) -> Details:
        check.raise_if_any(rules.check_policy(policy))

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            if org is None:
                raise NotFound("ORGANIZATION_NOT_FOUND", "organisation not found")
            return [next_of_org(org, policy.event())]

        [added] = await self._write(ctx, ctx.org_id, decide)
        return Details.of_change(added)

    async def revoke_secrets(
        self, secret_ids: Sequence[tuple[str, str]], source: str, reporter: Actor
    ) -> int:
        """Revokes leaked secrets (user id, secret id) that their holder reported from source, in
        one append; answers how many it revoked (a secret deleted meanwhile is not). The report
        itself is counted, not kept as an event (server/domain/revocation.py). reporter: who
        reported (anonymous, by its address), the actor of the revocations."""

        async def decide() -> list[NewEvent]:
            events: list[NewEvent] = []
            for user_id, secret_id in secret_ids:
                user = await self._store.user(user_id)
                if user is None or all(s.secret_id != secret_id for s in await self._store.secrets(user_id)):
                    continue  # deleted meanwhile
                sequence = user.sequence + sum(e.aggregate_id == user_id for e in events)
                events.append(NewEvent(user_id, sequence + 1, user.org_id, SecretRevoked(secret_id, source)))
            return events

        if not secret_ids:
            return 0
        # One turn, on the first user: the others' sequences are still guarded by the store.
        return len(await self._write(reporter, secret_ids[0][0], decide))

    async def rehash_secret(
        self, user_id: str, secret_id: str, old_hash: str, new_hash: str, during: Actor
    ) -> None:
        """Records a secret hashed anew (at the configured cost), so that an operator can change
        the cost. Nothing is written if the secret changed or went meanwhile: that hash is stale,
        and the next exchange tries again. The service decides it, not the client: its actor is
        the system, in the request (during) that presented the secret."""

        async def decide() -> list[NewEvent]:
            user = await self._store.user(user_id)
            current = [s for s in await self._store.secrets(user_id) if s.secret_id == secret_id]
            if user is None or not current or current[0].hash != old_hash:
                return []
            return [next_of_user(user, SecretRehashed(secret_id, new_hash))]

        await self._write(
            replace(SYSTEM, request_id=during.request_id, transport=during.transport), user_id, decide
        )
