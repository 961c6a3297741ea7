"""Commands on users: new machine and human users, and switching them off, on and away."""

from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_user
from server.domain.errors import AlreadyExists, FailedPrecondition
from server.domain.model import Created, Details
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.user import HumanUserAdded, MachineUserAdded, UserDeactivated, UserReactivated, UserRemoved
from server.store.contract import UniqueViolation


def user_name_taken() -> AlreadyExists:
    return AlreadyExists("USER_NAME_TAKEN", "the user name is taken")


class UserCommands(Writer):
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
        return await self._add_user(ctx, user_id, MachineUserAdded(user_name, name, description))

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
        self, ctx: CallContext, user_id: str, added: MachineUserAdded | HumanUserAdded
    ) -> Created:
        try:
            [stored] = await self._append(ctx, [NewEvent(user_id, 1, ctx.org_id, added)])
        except UniqueViolation as error:  # the read model's unique user name decides races
            raise user_name_taken() from error
        return Created(user_id, Details.of_change(stored))

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
