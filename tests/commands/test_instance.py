"""server/domain/commands/instance.py: the events of the instance's set-up."""

from pathlib import Path

from server.actor import SYSTEM
from server.domain.credentials import token_hash
from server.domain.permissions import IAM_OWNER, ORG_OWNER
from server.events.base import NewEvent
from server.events.org import OrgAdded, OrgMemberAdded
from server.events.user import MachineUserAdded, PatAdded
from tests.commands.table import GENERATED, Case, org_added, run, table

# The service itself acts at the first start.
SET_UP = [
    NewEvent("101", 1, "101", OrgAdded("first"), actor=SYSTEM),
    NewEvent(
        "102", 1, "101", MachineUserAdded("admin", "Administrator", "created at first start"), actor=SYSTEM
    ),
    NewEvent("102", 2, "101", PatAdded("103", GENERATED, None), actor=SYSTEM),
    NewEvent("101", 2, "101", OrgMemberAdded("102", (IAM_OWNER, ORG_OWNER)), actor=SYSTEM),
]


@table(
    Case("on an empty store", [], lambda c: c.set_up_instance("first", "admin"), SET_UP),
    Case("not on a store set up already", [org_added()], lambda c: c.set_up_instance("first", "admin"), []),
)
async def test_instance_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_the_set_up_answers_the_admins_token(tmp_path: Path) -> None:
    token, pushed = await run(
        Case("set up", [], lambda c: c.set_up_instance("first", "admin"), SET_UP), tmp_path
    )
    assert isinstance(token, str)
    assert pushed[2].event == PatAdded("103", token_hash(token), None)
