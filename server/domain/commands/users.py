"""Commands on users: new machine and human users, and switching them off, on and away."""

from collections.abc import Sequence

from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_user
from server.domain.errors import AlreadyExists, FailedPrecondition, FieldViolation
from server.domain.model import Created, Details
from server.domain.permissions import CallContext
from server.events.base import Event, NewEvent
from server.events.user import (
    HumanUserAdded,
    MachineChanged,
    MachineUserAdded,
    UserDeactivated,
    UserReactivated,
    UserRemoved,
)
from server.store.contract import ACCESS_TOKEN_BEARER, ACCESS_TOKEN_JWT, UniqueViolation


def user_name_taken() -> AlreadyExists:
    return AlreadyExists("USER_NAME_TAKEN", "the user name is taken")


class UserCommands(Writer):
    async def add_machine_user(
        self,
        ctx: CallContext,
        user_name: str | None,
        name: str,
        description: str,
        access_token_type: str = ACCESS_TOKEN_BEARER,
    ) -> Created:
        """A machine user. No user name (ZITADEL's v2 CreateUser may leave it out): its id is its
        user name, as in ZITADEL. Its access tokens are opaque (bearer, the default) or JWTs:
        a user made with JWTs gets a second event that says so (the first keeps its shape)."""
        user_id = self._ids.new_id()
        user_name = user_id if user_name is None else user_name
        check.raise_if_any(
            check.check_user_name("user_name", user_name)
            + check.check_text("name", name)
            + check.check_text("description", description, required=False, limit=check.MAX_DESCRIPTION_LENGTH)
            + _check_access_token_type(access_token_type)
        )
        then = (
            []
            if access_token_type == ACCESS_TOKEN_BEARER
            else [MachineChanged(name, description, access_token_type)]
        )
        return await self._add_user(ctx, user_id, MachineUserAdded(user_name, name, description), then)

    async def update_machine(
        self,
        ctx: CallContext,
        user_id: str,
        name: str | None,
        description: str | None,
        access_token_type: str | None,
    ) -> Details:
        """ZITADEL's UpdateMachine: a machine user's name, description and access token type (None:
        as they are). Who may manage its credentials may change the form of its tokens; a
        change to nothing appends nothing, and answers the user's details as they are."""
        check.raise_if_any(
            check.check_id("user_id", user_id)
            + ([] if name is None else check.check_text("name", name))
            + (
                []
                if description is None
                else check.check_text(
                    "description", description, required=False, limit=check.MAX_DESCRIPTION_LENGTH
                )
            )
            + ([] if access_token_type is None else _check_access_token_type(access_token_type))
        )
        unchanged: list[Details] = []

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            changed = MachineChanged(
                user.name if name is None else name,
                user.description if description is None else description,
                user.access_token_type if access_token_type is None else access_token_type,
            )
            if (changed.name, changed.description, changed.access_token_type) == (
                user.name,
                user.description,
                user.access_token_type,
            ):
                unchanged[:] = [Details(user.sequence, user.created_at, user.changed_at, user.org_id)]
                return []
            return [next_of_user(user, changed)]

        stored = await self._write(ctx, user_id, decide)
        return Details.of_change(stored[-1]) if stored else unchanged[0]

    async def add_human_user(
        self, ctx: CallContext, user_name: str, display_name: str, email: str
    ) -> Created:
        check.raise_if_any(
            check.check_user_name("user_name", user_name)
            + check.check_text("display_name", display_name)
            + check.check_email("email", email)
        )
        return await self._add_user(ctx, self._ids.new_id(), HumanUserAdded(user_name, display_name, email))

    async def _add_user(
        self,
        ctx: CallContext,
        user_id: str,
        added: MachineUserAdded | HumanUserAdded,
        then: Sequence[Event] = (),
    ) -> Created:
        events = [NewEvent(user_id, 1 + i, ctx.org_id, e) for i, e in enumerate([added, *then])]
        try:
            stored = await self._append(ctx, events)
        except UniqueViolation as error:  # the read model's unique user name decides races
            raise user_name_taken() from error
        return Created(user_id, Details.of_change(stored[-1]))

    async def deactivate_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            if not user.active:
                raise FailedPrecondition("USER_NOT_ACTIVE", "the user is deactivated already")
            leaving = await self._iam_owner_leaving(user_id, {})
            return [next_of_user(user, UserDeactivated()), *leaving]

        added, *_ = await self._write(ctx, user_id, decide)
        return Details.of_change(added)

    async def reactivate_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            if user.active:
                raise FailedPrecondition("USER_NOT_INACTIVE", "the user is not deactivated")
            return [next_of_user(user, UserReactivated())]

        [added] = await self._write(ctx, user_id, decide)
        return Details.of_change(added)

    async def remove_user(self, ctx: CallContext, user_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            leaving = await self._iam_owner_leaving(user_id, {})
            return [next_of_user(user, UserRemoved()), *leaving]

        added, *_ = await self._write(ctx, user_id, decide)
        return Details.of_change(added)


ACCESS_TOKEN_TYPES = (ACCESS_TOKEN_BEARER, ACCESS_TOKEN_JWT)


def _check_access_token_type(access_token_type: str) -> list[FieldViolation]:
    if access_token_type in ACCESS_TOKEN_TYPES:
        return []
    return [FieldViolation("access_token_type", "must be bearer or jwt")]
