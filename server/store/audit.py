"""The audit trail in the store: each event's actor, position and hashes (migration 16), written
by every append, and the reads that answer who did what.

An append writes its events first (INSERT_EVENT: the primary key is the concurrency guard), then
the statements of its read models, then two statements per event: ADVANCE_HEAD moves `audit_head`
(the one row that holds the last position and the instance-wide head hash) on by one, and
CHAIN_EVENT gives the event that position and its hashes. The hashes are
computed in SQL, from the event's canonical form computed in Python (server/audit/chain.py), so
the append makes no round trip of its own: PostgreSQL has sha256(), and SQLite is given the same
functions (register_functions). Every append takes the lock on the audit_head row, last, and holds
it to its commit: appends serialise there, for as short a time as the store allows, and positions
are given in commit order. So a reader that saw position p never sees a new event below p later
(no gap ever fills in behind it), which is what lets a consumer of the event stream resume after
the last position it read without losing an event.
"""

import hashlib
import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from server.actor import UNKNOWN
from server.audit import chain
from server.events.base import StoredEvent, encode_payload
from server.store.base import EventFilter
from server.store.codecs import Statement

log = logging.getLogger("machinesecrets")


AUDIT_MIGRATION = 16


def _sha256_hex(text: str) -> str:
    """SQL for the SHA-256 of a text's UTF-8, in lower-case hex, on both backends."""
    return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"


# The chain_hash of an event: its aggregate's event before it (by sequence), or "" for its first.
# Parameters: aggregate type, aggregate id, sequence, then "\n" + the event's canonical form.
_CHAIN_HASH = _sha256_hex(
    "COALESCE((SELECT p.chain_hash FROM events p WHERE p.aggregate_type = ? AND p.aggregate_id = ?"
    " AND p.sequence < ? ORDER BY p.sequence DESC LIMIT 1), '') || ?"
)
# Parameters: "\n", then _CHAIN_HASH's.
ADVANCE_HEAD = (
    "UPDATE audit_head SET position = position + 1,"  # noqa: S608 - constants
    f" head_hash = {_sha256_hex(f'head_hash || ? || {_CHAIN_HASH}')} WHERE id = 1"
)
EVENT_COLUMNS = (
    "aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at,"
    " actor_user_id, actor_org_id, credential_kind, credential_id, request_id, peer, transport"
)
# The event, first in its append: its primary key (aggregate, sequence) is the concurrency guard,
# met before any read model's unique key (a second writer of one sequence is a conflict, never a
# read model's violation). Its position and hashes are CHAIN_EVENT's, last. Parameters: the
# event's columns (EVENT_COLUMNS), its subject user.
INSERT_EVENT = (
    f"INSERT INTO events ({EVENT_COLUMNS}, subject_user_id)"  # noqa: S608 - constants
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The position and head ADVANCE_HEAD just set, in this transaction, and the chain_hash.
# Parameters: _CHAIN_HASH's, then the event's aggregate type, id and sequence.
CHAIN_EVENT = (
    "UPDATE events SET position = (SELECT position FROM audit_head WHERE id = 1),"  # noqa: S608
    f" chain_hash = {_CHAIN_HASH}, head_hash = (SELECT head_hash FROM audit_head WHERE id = 1)"
    " WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?"
)
# Events whose position and hashes were computed beforehand (chained_rows): bulk writers that
# hold the store alone (tools/bench/seed.py). Then SET_HEAD, once.
INSERT_CHAINED_EVENT = (
    f"INSERT INTO events ({EVENT_COLUMNS}, subject_user_id, position, chain_hash, head_hash)"  # noqa: S608
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
SET_HEAD = "UPDATE audit_head SET position = ?, head_hash = ? WHERE id = 1"
AUDIT_COLUMNS = f"position, {EVENT_COLUMNS}, subject_user_id, chain_hash, head_hash"
# What an event was chained after: its aggregate's event before it (parameters: type, id, sequence).
SELECT_CHAIN_BEFORE = (
    "SELECT chain_hash FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence < ?"
    " ORDER BY sequence DESC LIMIT 1"
)
SELECT_HEAD = "SELECT position, head_hash FROM audit_head WHERE id = 1"
COUNT_EVENTS = "SELECT COUNT(*) AS events FROM events"
# Every column the chain covers, a batch at a time in position order (verify, export).
SELECT_CHAIN = f"SELECT {AUDIT_COLUMNS} FROM events WHERE position > ? ORDER BY position LIMIT ?"  # noqa: S608
# A user's history, newest first: the user's events and its access tokens' (subject_user_id),
# of one organisation (a user never changes organisation).
SELECT_USER_EVENTS = (
    f"SELECT {AUDIT_COLUMNS} FROM events WHERE subject_user_id = ? AND resource_owner = ?"  # noqa: S608
    " AND position < ? ORDER BY position DESC LIMIT ?"
)

MIGRATION_16 = [
    # Who made each change (server/actor.py); events written before say "unknown".
    "ALTER TABLE events ADD COLUMN actor_user_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN actor_org_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN credential_kind TEXT NOT NULL DEFAULT 'unknown'",
    "ALTER TABLE events ADD COLUMN credential_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN request_id TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN peer TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE events ADD COLUMN transport TEXT NOT NULL DEFAULT ''",
    # The user a user's or an access token's event is about (from its aggregate or payload, for
    # ListUserEvents' index; not hashed: it is read from what is).
    "ALTER TABLE events ADD COLUMN subject_user_id TEXT NOT NULL DEFAULT ''",
    # The global order of events, and the chains (server/audit/chain.py).
    "ALTER TABLE events ADD COLUMN position BIGINT",
    "ALTER TABLE events ADD COLUMN chain_hash TEXT",
    "ALTER TABLE events ADD COLUMN head_hash TEXT",
    "CREATE TABLE audit_head (id INTEGER PRIMARY KEY, position BIGINT NOT NULL, head_hash TEXT NOT NULL)",
]
# The events written before migration 16, in the order they are chained, once. Only the columns
# they were written with (SQLite's migrations read before their SQL runs): their actor is UNKNOWN.
EVENTS_TO_CHAIN = (
    "SELECT aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at"
    " FROM events ORDER BY created_at, aggregate_type, aggregate_id, sequence"
)
# Made once the positions are filled in: the filters of ListEvents, ListUserEvents and the stream.
AUDIT_INDEXES = [
    "CREATE UNIQUE INDEX events_by_position ON events (position)",
    "CREATE INDEX events_by_actor ON events (actor_user_id, position)",
    "CREATE INDEX events_by_owner ON events (resource_owner, position)",
    "CREATE INDEX events_by_subject ON events (subject_user_id, position)",
]


def event_row(event: StoredEvent, micros: int) -> tuple[Any, ...]:
    """An event's columns (EVENT_COLUMNS), its payload as the stored JSON text."""
    return (
        event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        event.type,
        event.resource_owner,
        encode_payload(event.event),
        micros,
        *event.actor.fields(),
    )


def event_insert(event: StoredEvent, micros: int) -> Statement:
    """The event's row, without its position and hashes: the first statement of its append."""
    subject = chain.subject_user(event.aggregate_type, event.aggregate_id, event.event.payload())
    return INSERT_EVENT, (*event_row(event, micros), subject)


def event_chaining(event: StoredEvent, micros: int) -> list[Statement]:
    """The statements that give a written event its position and hashes (ADVANCE_HEAD, then
    CHAIN_EVENT): the last of an append, so that the audit_head row is locked briefly."""
    row = event_row(event, micros)
    form = chain.canonical(dict(zip(chain.CANONICAL_FIELDS, row, strict=True)))
    key = (event.aggregate_type, event.aggregate_id, event.sequence)
    previous = (*key, "\n" + form)
    return [(ADVANCE_HEAD, ("\n", *previous)), (CHAIN_EVENT, (*previous, *key))]


def chained_rows(
    rows: Sequence[Mapping[str, Any]], position: int, head: str, chains: dict[tuple[str, str], str]
) -> list[tuple[int, str, str]]:
    """The position, chain_hash and head_hash of each of rows (the canonical form's fields), in
    order, after position and head, each aggregate after its last chain_hash in chains (updated:
    an aggregate not there starts the chain)."""
    links = []
    for row in rows:
        aggregate = (str(row["aggregate_type"]), str(row["aggregate_id"]))
        link = chain.chain_link(chains.get(aggregate, ""), chain.canonical(row))
        position, head, chains[aggregate] = position + 1, chain.head_link(head, link), link
        links.append((position, link, head))
    return links


def chain_existing(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 16: the events written before it, chained once, in the order they were written
    (EVENTS_TO_CHAIN), with their positions from 1; then audit_head, and the indexes."""
    unknown = dict(zip(chain.ACTOR_FIELDS, UNKNOWN.fields(), strict=True))
    links = chained_rows([{**row, **unknown} for row in rows], 0, "", {})
    steps: list[Statement] = [
        (
            "UPDATE events SET position = ?, chain_hash = ?, head_hash = ?, subject_user_id = ?"
            " WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?",
            (
                *link,
                chain.subject_user(row["aggregate_type"], row["aggregate_id"], json.loads(row["payload"])),
                row["aggregate_type"],
                row["aggregate_id"],
                row["sequence"],
            ),
        )
        for row, link in zip(rows, links, strict=True)
    ]
    log.info("audit: migration %d chained the %d events written before it", AUDIT_MIGRATION, len(rows))
    position, _, head = links[-1] if links else (0, "", "")
    return [
        *steps,
        ("INSERT INTO audit_head (id, position, head_hash) VALUES (1, ?, ?)", (position, head)),
        *((index, ()) for index in AUDIT_INDEXES),
    ]


def register_functions(connection: sqlite3.Connection) -> None:
    """PostgreSQL's functions that the chain's SQL uses, on a SQLite connection, so that both
    backends run the same statements: sha256(bytea), convert_to(text, 'UTF8'), encode(bytea, 'hex')."""
    connection.create_function("sha256", 1, _sqlite_sha256, deterministic=True)
    connection.create_function("convert_to", 2, _sqlite_convert_to, deterministic=True)
    connection.create_function("encode", 2, _sqlite_encode, deterministic=True)


def _sqlite_sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _sqlite_convert_to(text: str, encoding: str) -> bytes:
    if encoding != "UTF8":
        raise ValueError(f"convert_to: only UTF8, not {encoding}")
    return text.encode("utf-8")


def _sqlite_encode(data: bytes, form: str) -> str:
    if form != "hex":
        raise ValueError(f"encode: only hex, not {form}")
    return data.hex()


def select_events(where: EventFilter) -> tuple[str, tuple[Any, ...]]:
    """The SQL of a page of events after a position in position order, and its parameters but
    the last two (the position, the limit)."""
    conditions: list[str] = []
    params: list[Any] = []
    if where.resource_owner is not None:
        conditions.append("resource_owner = ?")
        params.append(where.resource_owner)
    for column, value in (
        ("aggregate_type", where.aggregate_type),
        ("aggregate_id", where.aggregate_id),
        ("actor_user_id", where.actor_user_id),
        ("event_type", where.event_type),
    ):
        if value:
            conditions.append(f"{column} = ?")
            params.append(value)
    if where.since_micros is not None:
        conditions.append("created_at >= ?")
        params.append(where.since_micros)
    if where.until_micros is not None:
        conditions.append("created_at < ?")
        params.append(where.until_micros)
    conditions.append("position > ?")
    sql = (
        f"SELECT {AUDIT_COLUMNS} FROM events WHERE {' AND '.join(conditions)}"  # noqa: S608 - constants
        " ORDER BY position LIMIT ?"
    )
    return sql, tuple(params)
