"""Versioned schema migrations, in SQL both backends speak.

Each backend applies them at start, in order, each in one transaction with its record in
schema_migrations (PostgreSQL under an advisory lock, so that processes starting together apply
each once). Placeholders are written `?`; a backend whose driver wants another style converts them.
"""

from collections.abc import Mapping
from typing import Any

from server.store.codecs import Statement
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


def rekey_user_names(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 5, which SQL cannot write: the uniqueness key of every user name, from casefold()
    to PRECIS (server/store/user_names.py), for rows with id, user_name and user_name_key. A name the
    profile refuses, names that now share a key, and a name whose new key another name keeps, keep
    their old keys (SECURITY.md)."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        user_id, name, old_key = row["id"], row["user_name"], row["user_name_key"]
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
