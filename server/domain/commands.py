"""Commands: every change to the service's state.

Each command is a straight line: validate, load the aggregate's snapshot, decide, append the new
events with the expected sequence. When another writer appended first, the append fails as a
whole and the command decides again on fresh state, a bounded number of times.

Within one process, writers to one aggregate take turns (a lock per aggregate) instead of racing
for the same sequence: under load on one user that turns a storm of conflicts and retries into a
queue. Across processes the primary key still decides, and the retry covers the loser.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from server.clock import SYSTEM_CLOCK, Clock
from server.domain import secret_policy as rules
from server.domain import validation as check
from server.domain.credentials import SecretHasher, new_token, token_hash
from server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    NotFound,
    PermissionDenied,
    user_not_found,
    user_not_machine,
)
from server.domain.ids import IdGenerator
from server.domain.keyed_locks import KeyedLocks
from server.domain.model import Created, Details, IssuedSecret, IssuedToken
from server.domain.permissions import IAM_OWNER, ORG_OWNER, USER_READ, CallContext
from server.domain.secret_format import new_secret
from server.store import events as ev
from server.store.base import (
    USER_TYPE_MACHINE,
    ConcurrencyConflict,
    SecretPolicy,
    Store,
    UniqueViolation,
    UserRecord,
)
from server.store.codecs import optional_micros, to_micros
from server.store.events import NewEvent, StoredEvent


def user_name_taken() -> AlreadyExists:
    return AlreadyExists("USER_NAME_TAKEN", "the user name is taken")


def cannot_grant() -> PermissionDenied:
    # A role is granted only by a caller who holds all it gives: IAM_OWNER by an IAM_OWNER, and
    # ORG_OWNER by an ORG_OWNER (or an IAM_OWNER), as in Kubernetes' escalation rule.
    return PermissionDenied("PERMISSION_DENIED", "a role may be granted only by a caller who holds it")


class Commands:
    def __init__(
        self,
        store: Store,
        hasher: SecretHasher,
        ids: IdGenerator,
        write_attempts: int,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._clock = clock
        self._hasher = hasher
        self._ids = ids
        self._write_attempts = write_attempts
        self._turns = KeyedLocks()

    async def add_organization(
        self, ctx: CallContext, name: str, admins: Sequence[tuple[str, list[str]]] = ()
    ) -> Created:
        """A new organisation, and its first members (admins: user id and roles) with it, in one
        append: all of it, or nothing. Each admin is checked as AddOrgMember checks a member."""
        violations = check.check_text("name", name)
        for i, (user_id, roles) in enumerate(admins):
            violations += check.check_id(f"admins[{i}].user_id", user_id)
            violations += check.check_roles(f"admins[{i}].roles", roles)
        if len({user_id for user_id, _ in admins}) != len(admins):
            violations.append(FieldViolation("admins", "a user may be named once"))
        check.raise_if_any(violations)
        org_id = self._ids.new_id()
        events = [NewEvent(ev.AGGREGATE_ORG, org_id, 1, ev.ORG_ADDED, org_id, {"name": name})]
        for user_id, roles in admins:
            if not ctx.principal.covers({org_id: frozenset(roles)}):
                raise cannot_grant()
            await self._member_in_reach(ctx, user_id)
            payload = {"user_id": user_id, "roles": sorted(set(roles))}
            events.append(
                NewEvent(ev.AGGREGATE_ORG, org_id, len(events) + 1, ev.ORG_MEMBER_ADDED, org_id, payload)
            )
        added = await self._store.append(events)
        return Created(org_id, Details.of_change(added[-1]))

    async def add_org_member(self, ctx: CallContext, user_id: str, roles: list[str]) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_roles("roles", roles))
        granted = frozenset(roles)
        if not ctx.principal.covers({ctx.org_id: granted}):
            raise cannot_grant()
        await self._member_in_reach(ctx, user_id)

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            if org is None:
                raise NotFound("ORGANIZATION_NOT_FOUND", "organisation not found")
            if await self._store.member_roles(ctx.org_id, user_id) is not None:
                raise AlreadyExists("MEMBER_ALREADY_EXISTS", "the user is a member already")
            payload = {"user_id": user_id, "roles": sorted(granted)}
            return [
                NewEvent(ev.AGGREGATE_ORG, org.id, org.sequence + 1, ev.ORG_MEMBER_ADDED, org.id, payload)
            ]

        [added] = await self._write(ctx.org_id, decide)
        return Details.of_change(added)

    async def add_machine_user(
        self, ctx: CallContext, user_name: str | None, name: str, description: str
    ) -> Created:
        """A machine user. No user name (ZITADEL's v2 CreateUser may leave it out): its id is its
        user name, as in ZITADEL."""
        user_id = self._ids.new_id()
        user_name = user_id if user_name is None else user_name
        check.raise_if_any(
            check.check_user_name("user_name", user_name)
            + check.check_text("name", name)
            + check.check_text("description", description, required=False, limit=check.MAX_DESCRIPTION_LENGTH)
        )
        payload = {"user_name": user_name, "name": name, "description": description}
        return await self._add_user(ctx, user_id, ev.USER_MACHINE_ADDED, payload)

    async def add_human_user(
        self, ctx: CallContext, user_name: str, display_name: str, email: str
    ) -> Created:
        check.raise_if_any(
            check.check_user_name("user_name", user_name)
            + check.check_text("display_name", display_name)
            + check.check_email("email", email)
        )
        payload = {"user_name": user_name, "display_name": display_name, "email": email}
        return await self._add_user(ctx, self._ids.new_id(), ev.USER_HUMAN_ADDED, payload)

    async def _add_user(
        self, ctx: CallContext, user_id: str, event_type: str, payload: dict[str, str]
    ) -> Created:
        try:
            [added] = await self._store.append(
                [NewEvent(ev.AGGREGATE_USER, user_id, 1, event_type, ctx.org_id, payload)]
            )
        except UniqueViolation as error:  # the read model's unique user name decides races
            raise user_name_taken() from error
        return Created(user_id, Details.of_change(added))

    async def add_secret(self, ctx: CallContext, user_id: str) -> IssuedSecret:
        """ZITADEL's meaning: one new secret that replaces all of the user's others at once."""
        return await self._issue_secret(ctx, user_id, ev.USER_MACHINE_SECRET_SET)

    async def create_secret(
        self, ctx: CallContext, user_id: str, expires_at: datetime | None, description: str
    ) -> IssuedSecret:
        """One new secret beside the user's live ones, within the policy's limit."""
        return await self._issue_secret(ctx, user_id, ev.USER_MACHINE_SECRET_ADDED, expires_at, description)

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
        return await self._issue_secret(
            ctx, user_id, ev.USER_MACHINE_SECRET_ROTATED, expires_at, description, grace
        )

    async def _issue_secret(
        self,
        ctx: CallContext,
        user_id: str,
        event_type: str,
        requested_expiry: datetime | None = None,
        description: str = "",
        grace: timedelta | None = None,
    ) -> IssuedSecret:
        policy = await self._store.secret_policy(ctx.org_id)
        violations = check.check_id("user_id", user_id) + check.check_text(
            "description", description, required=False, limit=rules.MAX_SECRET_DESCRIPTION_LENGTH
        )
        expires_at, refused = rules.expiry(policy, requested_expiry, self._clock.now())
        violations += refused
        if event_type == ev.USER_MACHINE_SECRET_ROTATED:
            violations += rules.check_grace(policy, grace)
        check.raise_if_any(violations)
        secret, secret_id = new_secret(), self._ids.new_id()
        hashed = await self._hasher.hash(secret.text)  # outside the write's turn: bcrypt is the slow part
        client_id = ""

        async def decide() -> list[NewEvent]:
            nonlocal client_id
            user = await self._credential_holder(ctx, user_id)
            client_id, now = user.user_name, self._clock.now()
            payload: dict[str, object] = {
                "secret_id": secret_id,
                "hash": hashed,
                "lookup": secret.lookup,
                "description": description,
                "expires_at": None if expires_at is None else to_micros(expires_at),
            }
            if event_type != ev.USER_MACHINE_SECRET_SET:  # a replacement leaves one: within any limit
                live = sum(s.live(now) for s in await self._store.secrets(user.id))
                if event_type == ev.USER_MACHINE_SECRET_ROTATED:
                    assert grace is not None
                    payload["others_expire_at"] = to_micros(now + grace)
                    live = live if grace else 0  # with no grace, the others are retired at once
                rules.check_secret_count(policy, live + 1)
            return [self._next(user, event_type, payload)]

        [added] = await self._write(user_id, decide)
        return IssuedSecret(secret_id, client_id, secret.text, expires_at, Details.of_change(added))

    async def delete_secret(self, ctx: CallContext, user_id: str, secret_id: str) -> Details:
        """One secret of the user, and its access tokens, at once."""
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("secret_id", secret_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(s.secret_id != secret_id for s in await self._store.secrets(user.id)):
                raise NotFound("SECRET_NOT_FOUND", "the machine user has no secret with this id")
            return [self._next(user, ev.USER_MACHINE_SECRET_DELETED, {"secret_id": secret_id})]

        [added] = await self._write(user_id, decide)
        return Details.of_change(added)

    async def remove_secret(self, ctx: CallContext, user_id: str) -> Details:
        """Every secret of the user (ZITADEL's RemoveSecret)."""
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if not await self._store.secrets(user.id):
                raise FailedPrecondition("SECRET_NOT_FOUND", "the machine user has no secret")
            return [self._next(user, ev.USER_MACHINE_SECRET_REMOVED, {})]

        [added] = await self._write(user_id, decide)
        return Details.of_change(added)

    async def set_secret_policy(self, ctx: CallContext, policy: SecretPolicy) -> Details:
        check.raise_if_any(rules.check_policy(policy))
        payload = {
            "max_lifetime": optional_micros(policy.max_lifetime),
            "default_lifetime": optional_micros(policy.default_lifetime),
            "max_secrets_per_user": policy.max_secrets_per_user,
            "max_grace_period": optional_micros(policy.max_grace_period),
        }

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            if org is None:
                raise NotFound("ORGANIZATION_NOT_FOUND", "organisation not found")
            return [
                NewEvent(
                    ev.AGGREGATE_ORG, org.id, org.sequence + 1, ev.ORG_SECRET_POLICY_SET, org.id, payload
                )
            ]

        [added] = await self._write(ctx.org_id, decide)
        return Details.of_change(added)

    async def revoke_secrets(self, secret_ids: Sequence[tuple[str, str]], source: str) -> int:
        """Revokes leaked secrets (user id, secret id) that their holder reported from source, in
        one append; answers how many it revoked (a secret deleted meanwhile is not). The report
        itself is counted, not kept as an event (server/domain/revocation.py)."""

        async def decide() -> list[NewEvent]:
            events: list[NewEvent] = []
            for user_id, secret_id in secret_ids:
                user = await self._store.user(user_id)
                if user is None or all(s.secret_id != secret_id for s in await self._store.secrets(user_id)):
                    continue  # deleted meanwhile
                sequence = user.sequence + sum(e.aggregate_id == user_id for e in events)
                payload = {"secret_id": secret_id, "source": source}
                events.append(
                    NewEvent(
                        ev.AGGREGATE_USER,
                        user_id,
                        sequence + 1,
                        ev.USER_MACHINE_SECRET_REVOKED,
                        user.org_id,
                        payload,
                    )
                )
            return events

        if not secret_ids:
            return 0
        # One turn, on the first user: the others' sequences are still guarded by the store.
        return len(await self._write(secret_ids[0][0], decide))

    async def add_personal_access_token(
        self, ctx: CallContext, user_id: str, expires_at: datetime | None
    ) -> IssuedToken:
        violations = check.check_id("user_id", user_id)
        if expires_at is not None and expires_at <= self._clock.now():
            violations.append(FieldViolation("expiration_date", "must be in the future"))
        check.raise_if_any(violations)
        token, token_id = new_token(), self._ids.new_id()
        payload = {
            "token_id": token_id,
            "token_hash": token_hash(token),
            "expires_at": None if expires_at is None else to_micros(expires_at),
        }

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            return [self._next(user, ev.USER_PAT_ADDED, payload)]

        [added] = await self._write(user_id, decide)
        return IssuedToken(token_id, token, Details.of_change(added))

    async def remove_personal_access_token(self, ctx: CallContext, user_id: str, token_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("token_id", token_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(t.token_id != token_id for t in await self._store.personal_access_tokens(user_id)):
                raise NotFound("TOKEN_NOT_FOUND", "the user has no personal access token with this id")
            return [self._next(user, ev.USER_PAT_REMOVED, {"token_id": token_id})]

        [added] = await self._write(user_id, decide)
        return Details.of_change(added)

    async def deactivate_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            if not user.active:
                raise FailedPrecondition("USER_NOT_ACTIVE", "the user is deactivated already")
            leaving = await self._iam_owner_leaving(user_id, {})
            return [self._next(user, ev.USER_DEACTIVATED, {}), *leaving]

        added, *_ = await self._write(user_id, decide)
        return Details.of_change(added)

    async def reactivate_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            if user.active:
                raise FailedPrecondition("USER_NOT_INACTIVE", "the user is not deactivated")
            return [self._next(user, ev.USER_REACTIVATED, {})]

        [added] = await self._write(user_id, decide)
        return Details.of_change(added)

    async def remove_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            leaving = await self._iam_owner_leaving(user_id, {})
            return [self._next(user, ev.USER_REMOVED, {}), *leaving]

        added, *_ = await self._write(user_id, decide)
        return Details.of_change(added)

    async def remove_org_member(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            org = await self._store.org(ctx.org_id)
            roles = await self._store.member_roles(ctx.org_id, user_id)
            if org is None or roles is None:
                raise NotFound("MEMBER_NOT_FOUND", "the user is not a member of the organisation")
            # Taking roles away is no escalation, but it may lock someone out: only a caller who
            # holds what the member holds here may.
            if not ctx.principal.covers({ctx.org_id: roles}):
                raise PermissionDenied(
                    "PERMISSION_DENIED", "the member holds permissions the caller does not hold"
                )
            elsewhere = {o: r for o, r in (await self._store.roles_of(user_id)).items() if o != ctx.org_id}
            leaving = await self._iam_owner_leaving(user_id, elsewhere)
            payload = {"user_id": user_id}
            return [
                NewEvent(ev.AGGREGATE_ORG, org.id, org.sequence + 1, ev.ORG_MEMBER_REMOVED, org.id, payload),
                *leaving,
            ]

        added, *_ = await self._write(ctx.org_id, decide)
        return Details.of_change(added)

    async def set_up_instance(self, org_name: str, admin_user_name: str) -> str | None:
        """On an empty store: the first organisation, and a machine user `admin_user_name` that is
        its IAM_OWNER, with a personal access token. Returns that token, or None when the store
        was set up already (also when another process won the race to do it)."""
        if await self._store.any_org():
            return None
        org_id, user_id, token = self._ids.new_id(), self._ids.new_id(), new_token()
        user = {
            "user_name": admin_user_name,
            "name": "Administrator",
            "description": "created at first start",
        }
        pat = {"token_id": self._ids.new_id(), "token_hash": token_hash(token), "expires_at": None}
        member = {"user_id": user_id, "roles": [IAM_OWNER, ORG_OWNER]}
        try:
            await self._store.append(
                [
                    NewEvent(ev.AGGREGATE_ORG, org_id, 1, ev.ORG_ADDED, org_id, {"name": org_name}),
                    NewEvent(ev.AGGREGATE_USER, user_id, 1, ev.USER_MACHINE_ADDED, org_id, user),
                    NewEvent(ev.AGGREGATE_USER, user_id, 2, ev.USER_PAT_ADDED, org_id, pat),
                    NewEvent(ev.AGGREGATE_ORG, org_id, 2, ev.ORG_MEMBER_ADDED, org_id, member),
                ]
            )
        except UniqueViolation:
            return None
        return token

    async def issue_access_token(
        self, user: UserRecord, secret_id: str, scope: str, expires_at: datetime
    ) -> str:
        """A new access token for a machine user that proved it holds the secret secret_id (the
        token endpoint's decision, in ClientCredentials). It dies with that secret."""
        token, token_id = new_token(), self._ids.new_id()
        payload = {
            "user_id": user.id,
            "token_hash": token_hash(token),
            "expires_at": to_micros(expires_at),
            "scope": scope,
            "secret_id": secret_id,
        }

        async def decide() -> list[NewEvent]:  # a new aggregate of its own: nothing to contend with
            return [NewEvent(ev.AGGREGATE_TOKEN, token_id, 1, ev.TOKEN_ACCESS_ADDED, user.org_id, payload)]

        await self._write(token_id, decide)
        return token

    async def rehash_secret(self, user_id: str, secret_id: str, old_hash: str, new_hash: str) -> None:
        """Records a secret hashed anew (at the configured cost), so that an operator can change
        the cost. Nothing is written if the secret changed or went meanwhile: that hash is stale,
        and the next exchange tries again."""

        async def decide() -> list[NewEvent]:
            user = await self._store.user(user_id)
            current = [s for s in await self._store.secrets(user_id) if s.secret_id == secret_id]
            if user is None or not current or current[0].hash != old_hash:
                return []
            payload = {"secret_id": secret_id, "hash": new_hash}
            return [self._next(user, ev.USER_MACHINE_SECRET_UPDATED, payload)]

        await self._write(user_id, decide)

    async def _member_in_reach(self, ctx: CallContext, user_id: str) -> UserRecord:
        """The user about to become a member. A member may belong to another organisation:
        membership is how a user of one organisation is allowed to act in another. Such a user is
        named only by a caller who may read the users of its organisation; to anyone else it is as
        absent as a user that does not exist, so user ids cannot be probed across organisations."""
        user = await self._store.user(user_id)
        if user is None or not ctx.principal.has(USER_READ, user.org_id):
            raise user_not_found()
        return user

    async def _credential_holder(self, ctx: CallContext, user_id: str) -> UserRecord:
        """The machine user of the context organisation whose credentials (secrets, tokens) the
        caller is about to create, replace or remove: the one gate of every such command."""
        return await self._user_in_reach(ctx, user_id, machine=True)

    async def _user_in_reach(self, ctx: CallContext, user_id: str, *, machine: bool) -> UserRecord:
        """The user of the context organisation that the caller may act on: for its credentials
        (machine users only), or to deactivate, reactivate or remove it.

        Whoever holds a user's credential holds that user's power, and whoever may switch a user
        off may lock out anyone, so the caller must hold, in every organisation, every permission
        the user's roles give it there. Checked inside the write's turn, on the roles as they are
        now; a role granted later does not take back a credential made before (SECURITY.md says
        how an operator reviews those).
        """
        user = await self._store.user(user_id)
        if user is None or user.org_id != ctx.org_id:
            raise user_not_found()
        if machine and user.type != USER_TYPE_MACHINE:
            raise user_not_machine()
        # An IAM_OWNER covers everyone: no need to read the roles.
        if not ctx.principal.is_iam_owner and not ctx.principal.covers(await self._store.roles_of(user_id)):
            # No more than that: the caller may not be allowed to read the user's roles.
            raise PermissionDenied("PERMISSION_DENIED", "the user holds permissions the caller does not hold")
        return user

    async def _iam_owner_leaving(
        self, user_id: str, roles_left: Mapping[str, frozenset[str]]
    ) -> list[NewEvent]:
        """The instance keeps at least one active IAM_OWNER: a user who is one may not be switched
        off, removed or demoted (to roles_left) while no other active user is one.

        Two such changes to two owners at once would each see the other owner still there, and
        both succeed. So every change that takes an owner away also appends the next event of one
        instance-wide aggregate: of two concurrent ones, on any process, the store's sequence
        guard lets one through, and the other decides again on fresh state (and is refused if its
        owner is now the last). Returns that event, or nothing if no owner leaves."""
        if any(IAM_OWNER in roles for roles in roles_left.values()):
            return []
        # The sequence before the owners: a change that commits between the two reads then either
        # shows in the owners, or makes this append's sequence taken. (Read the other way round,
        # a change could slip between them and both would pass: a test found it.)
        sequence = await self._store.sequence_of(ev.AGGREGATE_INSTANCE, ev.INSTANCE_ID)
        owners = await self._store.active_iam_owners()
        if user_id not in owners:
            return []
        if owners == {user_id}:
            raise FailedPrecondition("LAST_IAM_OWNER", "the instance would have no active IAM_OWNER left")
        payload = {"user_id": user_id}
        return [
            NewEvent(
                ev.AGGREGATE_INSTANCE, ev.INSTANCE_ID, sequence + 1, ev.INSTANCE_IAM_OWNER_LEFT, "", payload
            )
        ]

    @staticmethod
    def _next(user: UserRecord, event_type: str, payload: Mapping[str, object]) -> NewEvent:
        return NewEvent(ev.AGGREGATE_USER, user.id, user.sequence + 1, event_type, user.org_id, payload)

    async def _write(
        self, aggregate_id: str, decide: Callable[[], Awaitable[list[NewEvent]]]
    ) -> list[StoredEvent]:
        for attempt in range(self._write_attempts):
            try:
                async with self._turns.hold(aggregate_id):
                    events = await decide()
                    if not events:
                        return []
                    added = await self._store.append(events, durable=False)
                # Acknowledged only once on disk, but waited for after the turn: the next writer
                # to this aggregate need not wait for the disk, and the commits of many calls
                # share one fsync (SQLite's group commit).
                await self._store.durable()
                return added
            except ConcurrencyConflict:
                # Jittered, growing back-off so that writers racing on one aggregate spread out.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - not security
        raise Aborted("CONCURRENT_MODIFICATION", "the object was changed concurrently; try again")
