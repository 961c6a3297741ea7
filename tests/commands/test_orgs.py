"""server/domain/commands/orgs.py: the events each command on organisations decides on."""

from pathlib import Path

from server.domain.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from server.domain.permissions import IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER
from server.events.base import INSTANCE_ID, NewEvent
from server.events.instance import IamOwnerLeft
from server.events.org import OrgAdded, OrgMemberAdded, OrgMemberRemoved
from tests.commands.table import (
    ORG,
    Case,
    Refused,
    caller,
    machine_added,
    member_added,
    org_added,
    run,
    table,
)

IAM = caller({ORG: frozenset({IAM_OWNER})})
OWNER = caller({ORG: frozenset({ORG_OWNER})})
MANAGER = caller({ORG: frozenset({ORG_USER_MANAGER})})
BOT = [org_added(), machine_added("10")]


@table(
    Case(
        "an organisation and its first members, in one append",
        BOT,
        lambda c: c.add_organization(IAM, "acme", [("10", ["ORG_OWNER", "ORG_USER_MANAGER", "ORG_OWNER"])]),
        [
            NewEvent("101", 1, "101", OrgAdded("acme")),
            NewEvent("101", 2, "101", OrgMemberAdded("10", ("ORG_OWNER", "ORG_USER_MANAGER"))),
        ],
    ),
    Case(
        "each first member once",
        BOT,
        lambda c: c.add_organization(IAM, "acme", [("10", ["ORG_OWNER"]), ("10", ["ORG_USER_MANAGER"])]),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "a member, its roles sorted",
        BOT,
        lambda c: c.add_org_member(OWNER, "10", ["ORG_USER_MANAGER", "ORG_OWNER"]),
        [NewEvent(ORG, 2, ORG, OrgMemberAdded("10", ("ORG_OWNER", "ORG_USER_MANAGER")))],
    ),
    Case(
        "a member once",
        [*BOT, member_added(2, "10", ORG_USER_MANAGER)],
        lambda c: c.add_org_member(OWNER, "10", ["ORG_OWNER"]),
        Refused(AlreadyExists, "MEMBER_ALREADY_EXISTS"),
    ),
    Case(
        "a role only by a caller who holds it",
        BOT,
        lambda c: c.add_org_member(OWNER, "10", ["IAM_OWNER"]),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "a member of another organisation, named by one who may not read it, is no one",
        [org_added(), org_added("2"), machine_added("20", org_id="2")],
        lambda c: c.add_org_member(OWNER, "20", ["ORG_USER_MANAGER"]),
        Refused(NotFound, "USER_NOT_FOUND"),
    ),
    Case(
        "remove a member",
        [*BOT, member_added(2, "10", ORG_USER_MANAGER)],
        lambda c: c.remove_org_member(OWNER, "10"),
        [NewEvent(ORG, 3, ORG, OrgMemberRemoved("10"))],
    ),
    Case(
        "remove a member who holds more than the caller",
        [*BOT, member_added(2, "10", ORG_OWNER)],
        lambda c: c.remove_org_member(MANAGER, "10"),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "remove an IAM_OWNER's membership while another owner remains",
        [*BOT, machine_added("11"), member_added(2, "10", IAM_OWNER), member_added(3, "11", IAM_OWNER)],
        lambda c: c.remove_org_member(IAM, "10"),
        [NewEvent(ORG, 4, ORG, OrgMemberRemoved("10")), NewEvent(INSTANCE_ID, 1, "", IamOwnerLeft("10"))],
    ),
    Case(
        "remove only a member",
        BOT,
        lambda c: c.remove_org_member(OWNER, "10"),
        Refused(NotFound, "MEMBER_NOT_FOUND"),
    ),
)
async def test_org_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)
