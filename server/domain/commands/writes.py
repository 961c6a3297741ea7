"""The write loop every command shares, and the gates that decide who may act on whom.

Each command is a straight line: validate, load the aggregate's snapshot, decide, append the new
events with the expected sequence. When another writer appended first, the append fails as a
whole and the command decides again on fresh state, a bounded number of times.

Within one process, writers to one aggregate take turns (a lock per aggregate) instead of racing
for the same sequence: under load on one user that turns a storm of conflicts and retries into a
queue. Across processes the primary key still decides, and the retry covers the loser.

Every event a command writes reaches the store through Writer._append, with the context of the
call that decided on it: what the store records about who acted is added there, once.
"""

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from server.actor import Actor
from server.clock import SYSTEM_CLOCK, Clock
from server.domain.credentials import SecretHasher, new_token
from server.domain.errors import (
    Aborted,
    FailedPrecondition,
    PermissionDenied,
    user_not_found,
    user_not_machine,
)
from server.domain.ids import IdGenerator
from server.domain.jwt_access_tokens import TokenMinter
from server.domain.key_generation import KeyPairs
from server.domain.keyed_locks import KeyedLocks
from server.domain.permissions import IAM_OWNER, USER_READ, CallContext
from server.events.base import INSTANCE_ID, Event, NewEvent, StoredEvent
from server.events.instance import IamOwnerLeft
from server.store.contract import USER_TYPE_MACHINE, ConcurrencyConflict, OrgRecord, Store, UserRecord

# What a command decides, in its aggregate's turn: the events to append (none: nothing to do).
Decide = Callable[[], Awaitable[list[NewEvent]]]
# Who a write is for: the call that decided on it (its actor: the caller's credential, request,
# address and transport), or, where no authenticated call decided, the actor itself (the system
# at the first start, a client at the token endpoint, an anonymous reporter).
Who = CallContext | Actor


def next_of_user(user: UserRecord, event: Event) -> NewEvent:
    """The user's next event, on the snapshot it was decided on."""
    return NewEvent(user.id, user.sequence + 1, user.org_id, event)


def next_of_org(org: OrgRecord, event: Event) -> NewEvent:
    """The organisation's next event, on the snapshot it was decided on."""
    return NewEvent(org.id, org.sequence + 1, org.id, event)


class Writer:
    """What every command module builds on (commands/__init__.py composes them): the store and the
    means to make new credentials, the turns, and the gates."""

    def __init__(
        self,
        store: Store,
        hasher: SecretHasher,
        ids: IdGenerator,
        write_attempts: int,
        clock: Clock = SYSTEM_CLOCK,
        key_pairs: KeyPairs | None = None,
    ) -> None:
        self._store = store
        # Where generated key pairs are made (key_generation.py); the service passes its own and
        # ends its threads when it stops.
        self._key_pairs = key_pairs if key_pairs is not None else KeyPairs()
        self._clock = clock
        self._hasher = hasher
        self._ids = ids
        self._write_attempts = write_attempts
        self._turns = KeyedLocks()
        # Makes an access token's string in its user's form (opaque or JWT); app.py gives the
        # service's, with its signing keys. Without it, every token is opaque.
        self.token_minter: TokenMinter | None = None

    async def _new_access_token(
        self, user: UserRecord, token_id: str, scope: str, issuer: str, expires_at: datetime
    ) -> str:
        """The string of a new access token: opaque, or a JWT for a user whose tokens are JWTs
        (and an issuer to name in it)."""
        if self.token_minter is None or not issuer:
            return new_token()
        return await self.token_minter.mint(user, token_id, scope, issuer, self._clock.now(), expires_at)

    async def _write(self, who: Who, aggregate_id: str, decide: Decide) -> list[StoredEvent]:
        """Decides and appends in the aggregate's turn, again on fresh state when another writer
        appended first; Aborted after write_attempts conflicts."""
        for attempt in range(self._write_attempts):
            try:
                async with self._turns.hold(aggregate_id):
                    events = await decide()
                    if not events:
                        return []
                    added = await self._append(who, events, durable=False)
                # Acknowledged only once on disk, but waited for after the turn: the next writer
                # to this aggregate need not wait for the disk, and the commits of many calls
                # share one fsync (SQLite's group commit).
                await self._store.durable()
                return added
            except ConcurrencyConflict:
                # Jittered, growing back-off so that writers racing on one aggregate spread out.
                await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))  # noqa: S311 - not security
        raise Aborted("CONCURRENT_MODIFICATION", "the object was changed concurrently; try again")

    async def _append(
        self, who: Who, events: Sequence[NewEvent], *, durable: bool = True
    ) -> list[StoredEvent]:
        """The one door from the commands to the store: every event records who acted here, and
        nowhere else (so no command can write an event without its actor)."""
        actor = who.actor if isinstance(who, CallContext) else who
        return await self._store.append([replace(event, actor=actor) for event in events], durable=durable)

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
        sequence = await self._store.sequence_of(IamOwnerLeft.AGGREGATE, INSTANCE_ID)
        owners = await self._store.active_iam_owners()
        if user_id not in owners:
            return []
        if owners == {user_id}:
            raise FailedPrecondition("LAST_IAM_OWNER", "the instance would have no active IAM_OWNER left")
        return [NewEvent(INSTANCE_ID, sequence + 1, "", IamOwnerLeft(user_id))]
