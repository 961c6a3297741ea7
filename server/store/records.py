"""Rows of the read models decoded into records, every column by its name."""

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from server.store.base import USER_STATE_ACTIVE, CallerRecord, OrgRecord, PatRecord, TokenRecord, UserRecord
from server.store.codecs import decode_roles, from_micros
from server.store.events import StoredEvent

Row = Mapping[str, Any]


def moment(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def stored_event(r: Row) -> StoredEvent:
    return StoredEvent(
        r["aggregate_type"],
        r["aggregate_id"],
        r["sequence"],
        r["event_type"],
        r["resource_owner"],
        json.loads(r["payload"]),
        from_micros(r["created_at"]),
    )


def user_record(r: Row) -> UserRecord:
    return UserRecord(
        id=r["id"],
        org_id=r["org_id"],
        user_name=r["user_name"],
        type=r["type"],
        secret_hash=r["secret_hash"],
        secret_sequence=r["secret_sequence"],
        sequence=r["sequence"],
        created_at=from_micros(r["created_at"]),
        changed_at=from_micros(r["changed_at"]),
        state=r["state"],
    )


def org_record(r: Row) -> OrgRecord:
    return OrgRecord(
        r["id"], r["name"], r["sequence"], from_micros(r["created_at"]), from_micros(r["changed_at"])
    )


def pat_record(r: Row) -> PatRecord:
    return PatRecord(
        r["token_id"], moment(r["created_at"]), moment(r["expires_at"]), moment(r["last_used_at"])
    )


def caller_record(rows: Sequence[Row]) -> CallerRecord:
    """From one row per membership of the token's user (one row, with no member, for none)."""
    r = rows[0]
    token = TokenRecord(
        r["token_id"], r["user_id"], moment(r["expires_at"]), r["secret_sequence"], moment(r["last_used_at"])
    )
    roles = {row["member_org_id"]: decode_roles(row["member_roles"]) for row in rows if row["member_org_id"]}
    return CallerRecord(
        token, r["user_org_id"], r["user_secret_sequence"], roles, r["user_state"] == USER_STATE_ACTIVE
    )


def failure_counts(rows: Sequence[Row]) -> dict[str, tuple[int, int]]:
    """Per failure key: how many failures, and the oldest of them."""
    return {r["failure_key"]: (int(r["failures"]), int(r["oldest"])) for r in rows}
