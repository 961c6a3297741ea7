"""server/domain/commands/metadata.py: the events a user's metadata is set and removed with."""

from pathlib import Path

from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from server.domain.permissions import ORG_OWNER, ORG_USER_MANAGER
from server.events.metadata import UserMetadataRemoved, UserMetadataSet
from server.limits import MAX_METADATA_KEYS
from tests.commands.table import (
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

OWNER = caller({"1": frozenset({ORG_OWNER})})
MANAGER = caller({"1": frozenset({ORG_USER_MANAGER})})
BOT = [org_added(), machine_added("10")]
TENANT = on_user("10", 2, UserMetadataSet("tenant", "YWNtZQ=="))  # b"acme"


@table(
    Case(
        "keys set in one append, each an event, values in base64",
        BOT,
        lambda c: c.set_user_metadata(OWNER, "10", [("tenant", b"acme"), ("blob", b"\x00\xff")]),
        [TENANT, on_user("10", 3, UserMetadataSet("blob", "AP8="))],
    ),
    Case(
        "a value set again as it is: nothing to write",
        [*BOT, TENANT],
        lambda c: c.set_user_metadata(OWNER, "10", [("tenant", b"acme")]),
        [],
    ),
    Case(
        "a value replaced",
        [*BOT, TENANT],
        lambda c: c.set_user_metadata(OWNER, "10", [("tenant", b"globex")]),
        [on_user("10", 3, UserMetadataSet("tenant", "Z2xvYmV4"))],
    ),
    Case(
        "a human user has metadata too",
        [org_added(), human_added("10")],
        lambda c: c.set_user_metadata(OWNER, "10", [("tenant", b"acme")]),
        [TENANT],
    ),
    Case(
        "past the keys a user may hold: refused, nothing written",
        [*BOT, *(on_user("10", 2 + i, UserMetadataSet(f"k{i}", "dg==")) for i in range(MAX_METADATA_KEYS))],
        lambda c: c.set_user_metadata(OWNER, "10", [("one more", b"v")]),
        Refused(FailedPrecondition, "METADATA_LIMIT"),
    ),
    Case(
        "a key named twice",
        BOT,
        lambda c: c.set_user_metadata(OWNER, "10", [("k", b"1"), ("k", b"2")]),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "a user manager may not write an owner's: the escalation rule",
        [org_added(), machine_added("10"), member_added(2, "10", ORG_OWNER)],
        lambda c: c.set_user_metadata(MANAGER, "10", [("tenant", b"acme")]),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "a user of another organisation is not found",
        [org_added(), org_added("2"), machine_added("10", org_id="2")],
        lambda c: c.set_user_metadata(OWNER, "10", [("tenant", b"acme")]),
        Refused(NotFound, "USER_NOT_FOUND"),
    ),
    Case(
        "keys removed",
        [*BOT, TENANT],
        lambda c: c.remove_user_metadata(OWNER, "10", ["tenant"]),
        [on_user("10", 3, UserMetadataRemoved("tenant"))],
    ),
    Case(
        "a key the user lacks: all or none",
        [*BOT, TENANT],
        lambda c: c.remove_user_metadata(OWNER, "10", ["tenant", "none"]),
        Refused(NotFound, "METADATA_NOT_FOUND"),
    ),
)
async def test_metadata_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)
