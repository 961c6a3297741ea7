"""Versioned schema migrations and the read-model projections, in SQL both backends speak.

Placeholders are written `?`; a backend whose driver wants another style converts them.
Times are integers: microseconds since the Unix epoch, UTC.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from server.store import events as ev
from server.store.base import (
    USER_STATE_ACTIVE,
    USER_STATE_INACTIVE,
    USER_TYPE_HUMAN,
    USER_TYPE_MACHINE,
    UserRecord,
)
from server.store.events import StoredEvent
from server.store.user_names import NotAUserName, user_name_key

# Each migration is applied once, in order, in one transaction, and recorded in
# schema_migrations. Never edit an applied migration: add the next one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE events (
                aggregate_type TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                event_type TEXT NOT NULL,
                resource_owner TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                -- The concurrency guard: two writers cannot both append the same sequence.
                PRIMARY KEY (aggregate_type, aggregate_id, sequence)
            )""",
            """CREATE TABLE orgs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                user_name TEXT NOT NULL,
                -- User names are unique in the whole instance, compared without case.
                user_name_key TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                secret_hash TEXT,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE members (
                org_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                roles TEXT NOT NULL,
                PRIMARY KEY (org_id, user_id)
            )""",
            "CREATE INDEX members_by_user ON members (user_id)",
            """CREATE TABLE tokens (
                token_hash TEXT PRIMARY KEY,
                token_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                expires_at BIGINT
            )""",
        ],
    ),
    (
        2,
        [
            # Access tokens die with the secret that earned them.
            "ALTER TABLE users ADD COLUMN secret_sequence BIGINT",
            "ALTER TABLE tokens ADD COLUMN secret_sequence BIGINT",
            "UPDATE users SET secret_sequence = (SELECT MAX(e.sequence) FROM events e"
            " WHERE e.aggregate_type = 'user' AND e.aggregate_id = users.id"
            " AND e.event_type = 'user.machine.secret.set') WHERE secret_hash IS NOT NULL",
        ],
    ),
    (
        3,
        [
            # Failed client authentications, shared by every process on the store: not events (they
            # change nothing and are forgotten after the limits' window), keyed by a hash.
            "CREATE TABLE auth_failures (failure_key TEXT NOT NULL, failed_at BIGINT NOT NULL)",
            "CREATE INDEX auth_failures_by_key ON auth_failures (failure_key, failed_at)",
            "CREATE INDEX auth_failures_by_time ON auth_failures (failed_at)",
        ],
    ),
    (
        4,
        [
            # Incident response: users can be deactivated; tokens are listed with their dates.
            "ALTER TABLE users ADD COLUMN state TEXT NOT NULL DEFAULT 'active'",
            "ALTER TABLE tokens ADD COLUMN created_at BIGINT",
            "ALTER TABLE tokens ADD COLUMN last_used_at BIGINT",
            "CREATE INDEX tokens_by_user ON tokens (user_id)",
            # A token's creation is the time of the event that added it (payloads are compact JSON
            # with sorted keys, so the token id's text is exact).
            "UPDATE tokens SET created_at = (SELECT MIN(e.created_at) FROM events e WHERE"
            " (e.aggregate_type = 'token' AND e.aggregate_id = tokens.token_id) OR"
            " (e.aggregate_type = 'user' AND e.aggregate_id = tokens.user_id"
            " AND e.event_type = 'user.pat.added'"
            " AND e.payload LIKE '%\"token_id\":\"' || tokens.token_id || '\"%'))",
        ],
    ),
    # User names compared as RFC 8265 says: the keys are computed anew by rekey_user_names.
    (5, []),
]
REKEY_USER_NAMES = 5

CREATE_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"

INSERT_EVENT = (
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SELECT_EVENTS = (
    "SELECT aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at"
    " FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
)
USER_COLUMNS = (
    "id, org_id, user_name, type, secret_hash, secret_sequence, sequence, created_at, changed_at, state"
)
SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = ?"  # noqa: S608 - constant
SELECT_USER_BY_NAME = f"SELECT {USER_COLUMNS} FROM users WHERE user_name_key = ?"  # noqa: S608 - constant
SELECT_ORG = "SELECT id, name, sequence, created_at, changed_at FROM orgs WHERE id = ?"
SELECT_ANY_ORG = "SELECT 1 FROM orgs LIMIT 1"
SELECT_SEQUENCE = (
    "SELECT COALESCE(MAX(sequence), 0) FROM events WHERE aggregate_type = ? AND aggregate_id = ?"
)
SELECT_MEMBER_ROLES = "SELECT roles FROM members WHERE org_id = ? AND user_id = ?"
SELECT_ROLES_OF_USER = "SELECT org_id, roles FROM members WHERE user_id = ?"
# Active users that hold IAM_OWNER in some organisation (roles are space-separated names).
SELECT_ACTIVE_IAM_OWNERS = (
    "SELECT DISTINCT m.user_id FROM members m JOIN users u ON u.id = m.user_id"
    " WHERE u.state = 'active' AND (' ' || m.roles || ' ') LIKE ?"
)
IAM_OWNER_ROLE_PATTERN = "% IAM_OWNER %"
# A user's personal access tokens (access tokens carry the secret they were issued for).
SELECT_PATS = (
    "SELECT token_id, created_at, expires_at, last_used_at FROM tokens"
    " WHERE user_id = ? AND secret_sequence IS NULL ORDER BY created_at, token_id"
)
# Notes a use, unless one was noted since `?` (so at most once a minute, whatever the processes).
TOUCH_TOKEN = (
    "UPDATE tokens SET last_used_at = ? WHERE token_hash = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)
# One row per membership of the token's user (one row with NULLs for none).
SELECT_CALLER = (
    "SELECT t.token_id, t.user_id, t.expires_at, t.secret_sequence,"
    " u.org_id, u.secret_sequence, m.org_id, m.roles, u.state, t.last_used_at"
    " FROM tokens t JOIN users u ON u.id = t.user_id LEFT JOIN members m ON m.user_id = u.id"
    " WHERE t.token_hash = ?"
)

INSERT_FAILURE = "INSERT INTO auth_failures (failure_key, failed_at) VALUES (?, ?)"
DELETE_FAILURES_BEFORE = "DELETE FROM auth_failures WHERE failed_at <= ?"
# Per key: the failures after a moment, and the oldest of them. Two keys at a time.
SELECT_FAILURES = (
    "SELECT failure_key, COUNT(*), MIN(failed_at) FROM auth_failures"
    " WHERE failure_key IN (?, ?) AND failed_at > ? GROUP BY failure_key"
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Statement = tuple[str, tuple[Any, ...]]


def encode_payload(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def rekey_user_names(rows: list[Any]) -> list[Statement]:
    """Migration 5, which SQL cannot write: the uniqueness key of every user name, from casefold()
    to PRECIS (server/store/user_names.py), for rows of (id, user_name, user_name_key). A name the
    profile refuses, names that now share a key, and a name whose new key another name keeps, keep
    their old keys (SECURITY.md)."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for user_id, name, old_key in rows:
        try:
            key = user_name_key(name)
        except NotAUserName:
            key = old_key
        wanted.setdefault(key, []).append((user_id, old_key))
    moves = {users[0][0]: key for key, users in wanted.items() if len(users) == 1 and users[0][1] != key}
    kept = {old_key for users in wanted.values() for user_id, old_key in users if user_id not in moves}
    return [
        ("UPDATE users SET user_name_key = ? WHERE id = ?", (key, user_id))
        for user_id, key in moves.items()
        if key not in kept
    ]


def encode_roles(roles: frozenset[str]) -> str:
    return " ".join(sorted(roles))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split())


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


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def user_record(rows: list[Any]) -> UserRecord | None:
    if not rows:
        return None
    r = rows[0]
    return UserRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], from_micros(r[7]), from_micros(r[8]), r[9])
