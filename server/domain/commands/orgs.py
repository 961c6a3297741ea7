"""Commands on organisations: new ones, and their members."""

from collections.abc import Sequence

from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_org
from server.domain.errors import AlreadyExists, FieldViolation, NotFound, PermissionDenied
from server.domain.model import Created, Details
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.org import OrgAdded, OrgMemberAdded, OrgMemberRemoved


def cannot_grant() -> PermissionDenied:
    # A role is granted only by a caller who holds all it gives: IAM_OWNER by an IAM_OWNER, and
    # ORG_OWNER by an ORG_OWNER (or an IAM_OWNER), as in Kubernetes' escalation rule.
    return PermissionDenied("PERMISSION_DENIED", "a role may be granted only by a caller who holds it")


class OrgCommands(Writer):
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
        events = [NewEvent(org_id, 1, org_id, OrgAdded(name))]
        for user_id, roles in admins:
            if not ctx.principal.covers({org_id: frozenset(roles)}):
                raise cannot_grant()
            await self._member_in_reach(ctx, user_id)
            member = OrgMemberAdded(user_id, tuple(sorted(set(roles))))
            events.append(NewEvent(org_id, len(events) + 1, org_id, member))
        added = await self._append(ctx, events)
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
            return [next_of_org(org, OrgMemberAdded(user_id, tuple(sorted(granted))))]

        [added] = await self._write(ctx, ctx.org_id, decide)
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
            return [next_of_org(org, OrgMemberRemoved(user_id)), *leaving]

        added, *_ = await self._write(ctx, ctx.org_id, decide)
        return Details.of_change(added)
