"""server/domain/commands/users.py: the events each command on users decides on."""

from pathlib import Path

from server.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, PermissionDenied
from server.domain.permissions import IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER
from server.events.base import INSTANCE_ID, NewEvent
from server.events.instance import IamOwnerLeft
from server.events.user import HumanUserAdded, MachineUserAdded, UserDeactivated, UserReactivated, UserRemoved
from tests.commands.table import (
    ORG,
    Case,
    Refused,
    caller,
    human_added,
    machine_added,
    member_added,
    on_user,
    org_added,
    run,
    table,
)

OWNER = caller({ORG: frozenset({ORG_OWNER})})
MANAGER = caller({ORG: frozenset({ORG_USER_MANAGER})})
IAM = caller({ORG: frozenset({IAM_OWNER})})
# Two machine users; 10 is an IAM_OWNER (the only one unless 11 is made one too).
TWO = [org_added(), machine_added("10"), machine_added("11"), member_added(2, "10", IAM_OWNER)]
TWO_OWNERS = [*TWO, member_added(3, "11", IAM_OWNER)]


@table(
    Case(
        "a machine user",
        [org_added()],
        lambda c: c.add_machine_user(OWNER, "robot", "Robot", "builds"),
        [NewEvent("101", 1, ORG, MachineUserAdded("robot", "Robot", "builds"))],
    ),
    Case(
        "a machine user with no user name is named by its id",
        [org_added()],
        lambda c: c.add_machine_user(OWNER, None, "Robot", ""),
        [NewEvent("101", 1, ORG, MachineUserAdded("101", "Robot", ""))],
    ),
    Case(
        "a human user",
        [org_added()],
        lambda c: c.add_human_user(OWNER, "ada", "Ada", "ada@example.com"),
        [NewEvent("101", 1, ORG, HumanUserAdded("ada", "Ada", "ada@example.com"))],
    ),
    Case(
        "a user name is taken whatever its case",
        [org_added(), machine_added("10")],
        lambda c: c.add_machine_user(OWNER, "BOT10", "n", ""),
        Refused(AlreadyExists, "USER_NAME_TAKEN"),
    ),
    Case(
        "a user name that mixes scripts",
        [org_added()],
        lambda c: c.add_machine_user(OWNER, "b\u043et", "n", ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "deactivate",
        [org_added(), human_added("10")],
        lambda c: c.deactivate_user(OWNER, "10"),
        [on_user("10", 2, UserDeactivated())],
    ),
    Case(
        "deactivate once",
        [org_added(), human_added("10"), on_user("10", 2, UserDeactivated())],
        lambda c: c.deactivate_user(OWNER, "10"),
        Refused(FailedPrecondition, "USER_NOT_ACTIVE"),
    ),
    Case(
        "deactivating an IAM_OWNER while another remains records that an owner left",
        TWO_OWNERS,
        lambda c: c.deactivate_user(IAM, "10"),
        [on_user("10", 2, UserDeactivated()), NewEvent(INSTANCE_ID, 1, "", IamOwnerLeft("10"))],
    ),
    Case(
        "the last IAM_OWNER stays",
        TWO,
        lambda c: c.deactivate_user(IAM, "10"),
        Refused(FailedPrecondition, "LAST_IAM_OWNER"),
    ),
    Case(
        "only a caller who holds the user's roles may switch it off",
        TWO_OWNERS,
        lambda c: c.deactivate_user(MANAGER, "10"),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "reactivate",
        [org_added(), human_added("10"), on_user("10", 2, UserDeactivated())],
        lambda c: c.reactivate_user(OWNER, "10"),
        [on_user("10", 3, UserReactivated())],
    ),
    Case(
        "reactivate only a deactivated user",
        [org_added(), human_added("10")],
        lambda c: c.reactivate_user(OWNER, "10"),
        Refused(FailedPrecondition, "USER_NOT_INACTIVE"),
    ),
    Case(
        "remove",
        TWO,
        lambda c: c.remove_user(OWNER, "11"),
        [on_user("11", 2, UserRemoved())],
    ),
    Case(
        "removing an IAM_OWNER while another remains",
        [*TWO_OWNERS, NewEvent(INSTANCE_ID, 1, "", IamOwnerLeft("12"))],
        lambda c: c.remove_user(IAM, "11"),
        [on_user("11", 2, UserRemoved()), NewEvent(INSTANCE_ID, 2, "", IamOwnerLeft("11"))],
    ),
)
async def test_user_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)
