"""server/domain/commands/pats.py: the events each command on personal access tokens decides on."""

from datetime import timedelta
from pathlib import Path

from server.domain.credentials import token_hash
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.model import IssuedToken
from server.domain.permissions import ORG_OWNER
from server.events.user import PatAdded, PatRemoved
from tests.commands.table import (
    GENERATED,
    NOW,
    NOW_MICROS,
    ORG,
    Case,
    Refused,
    caller,
    human_added,
    machine_added,
    on_user,
    org_added,
    run,
    table,
)

OWNER = caller({ORG: frozenset({ORG_OWNER})})
BOT = [org_added(), machine_added("10")]
DAY = timedelta(days=1)


@table(
    Case(
        "a token that expires",
        BOT,
        lambda c: c.add_personal_access_token(OWNER, "10", NOW + DAY),
        [on_user("10", 2, PatAdded("101", GENERATED, NOW_MICROS + 86_400_000_000))],
    ),
    Case(
        "a token that never expires",
        BOT,
        lambda c: c.add_personal_access_token(OWNER, "10", None),
        [on_user("10", 2, PatAdded("101", GENERATED, None))],
    ),
    Case(
        "not one that expired already",
        BOT,
        lambda c: c.add_personal_access_token(OWNER, "10", NOW),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "for machine users only",
        [org_added(), human_added("10")],
        lambda c: c.add_personal_access_token(OWNER, "10", None),
        Refused(FailedPrecondition, "USER_NOT_MACHINE"),
    ),
    Case(
        "remove one",
        [*BOT, on_user("10", 2, PatAdded("5", "ab12", None))],
        lambda c: c.remove_personal_access_token(OWNER, "10", "5"),
        [on_user("10", 3, PatRemoved("5"))],
    ),
    Case(
        "remove only a token of the user",
        [*BOT, on_user("10", 2, PatAdded("5", "ab12", None))],
        lambda c: c.remove_personal_access_token(OWNER, "10", "6"),
        Refused(NotFound, "TOKEN_NOT_FOUND"),
    ),
)
async def test_pat_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_the_event_holds_the_hash_of_the_token_answered(tmp_path: Path) -> None:
    added = on_user("10", 2, PatAdded("101", GENERATED, None))
    case = Case("add", BOT, lambda c: c.add_personal_access_token(OWNER, "10", None), [added])
    answer, [pushed] = await run(case, tmp_path)
    assert isinstance(answer, IssuedToken)
    assert pushed.event == PatAdded("101", token_hash(answer.token), None)
