"""The read models, kept by projecting each event as it is appended, inside the append's
transaction: the statements that apply one event, and the row that records it."""

from typing import Any

from server.store import events as ev
from server.store.base import USER_STATE_ACTIVE, USER_STATE_INACTIVE, USER_TYPE_HUMAN, USER_TYPE_MACHINE
from server.store.codecs import Statement, encode_payload, encode_roles
from server.store.events import StoredEvent
from server.store.user_names import user_name_key


def projection(event: StoredEvent, micros: int) -> list[Statement]:
    """The statements that apply one event to the read models, inside the append's transaction."""
    p = event.payload
    match event.type:
        case ev.ORG_ADDED:
            return [
                (
                    "INSERT INTO orgs (id, name, sequence, created_at, changed_at) VALUES (?, ?, ?, ?, ?)",
                    (event.aggregate_id, p["name"], event.sequence, micros, micros),
                )
            ]
        case ev.USER_MACHINE_ADDED | ev.USER_HUMAN_ADDED:
            user_type = USER_TYPE_MACHINE if event.type == ev.USER_MACHINE_ADDED else USER_TYPE_HUMAN
            return [
                (
                    "INSERT INTO users (id, org_id, user_name, user_name_key, type, secret_hash, sequence,"
                    " created_at, changed_at) VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?)",
                    (
                        event.aggregate_id,
                        event.resource_owner,
                        p["user_name"],
                        user_name_key(p["user_name"]),
                        user_type,
                        event.sequence,
                        micros,
                        micros,
                    ),
                )
            ]
        case ev.TOKEN_ACCESS_ADDED:  # a token aggregate has no snapshot row
            return [
                (
                    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, secret_sequence,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        p["token_hash"],
                        event.aggregate_id,
                        p["user_id"],
                        p["expires_at"],
                        p["secret_sequence"],
                        micros,
                    ),
                )
            ]
        case ev.INSTANCE_IAM_OWNER_LEFT:  # the order is the point; the read models already say it
            return []
        case ev.USER_REMOVED:  # the snapshot goes too: the aggregate has no state left to decide on
            return [
                ("DELETE FROM tokens WHERE user_id = ?", (event.aggregate_id,)),
                ("DELETE FROM members WHERE user_id = ?", (event.aggregate_id,)),
                ("DELETE FROM users WHERE id = ?", (event.aggregate_id,)),
            ]
        case ev.ORG_MEMBER_ADDED:
            change: Statement = (
                "INSERT INTO members (org_id, user_id, roles) VALUES (?, ?, ?)",
                (event.aggregate_id, p["user_id"], encode_roles(frozenset(p["roles"]))),
            )
        case ev.USER_MACHINE_SECRET_SET:
            change = (
                "UPDATE users SET secret_hash = ?, secret_sequence = ? WHERE id = ?",
                (p["hash"], event.sequence, event.aggregate_id),
            )
        case ev.USER_MACHINE_SECRET_UPDATED:
            change = ("UPDATE users SET secret_hash = ? WHERE id = ?", (p["hash"], event.aggregate_id))
        case ev.USER_MACHINE_SECRET_REMOVED:
            change = (
                "UPDATE users SET secret_hash = NULL, secret_sequence = NULL WHERE id = ?",
                (event.aggregate_id,),
            )
        case ev.USER_PAT_ADDED:
            change = (
                "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (p["token_hash"], p["token_id"], event.aggregate_id, p["expires_at"], micros),
            )
        case ev.USER_PAT_REMOVED:
            change = (
                "DELETE FROM tokens WHERE token_id = ? AND user_id = ?",
                (p["token_id"], event.aggregate_id),
            )
        case ev.USER_DEACTIVATED | ev.USER_REACTIVATED:
            state = USER_STATE_INACTIVE if event.type == ev.USER_DEACTIVATED else USER_STATE_ACTIVE
            change = ("UPDATE users SET state = ? WHERE id = ?", (state, event.aggregate_id))
        case ev.ORG_MEMBER_REMOVED:
            change = (
                "DELETE FROM members WHERE org_id = ? AND user_id = ?",
                (event.aggregate_id, p["user_id"]),
            )
        case _:
            raise ValueError(f"no projection for event type {event.type}")
    # Every later event of an aggregate moves its snapshot's sequence and change time.
    table = "orgs" if event.aggregate_type == ev.AGGREGATE_ORG else "users"
    moved: Statement = (
        f"UPDATE {table} SET sequence = ?, changed_at = ? WHERE id = ?",  # noqa: S608 - fixed names
        (event.sequence, micros, event.aggregate_id),
    )
    return [change, moved]


def event_row(event: StoredEvent, micros: int) -> tuple[Any, ...]:
    return (
        event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        event.type,
        event.resource_owner,
        encode_payload(event.payload),
        micros,
    )
