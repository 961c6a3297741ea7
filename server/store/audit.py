"""The audit trail in the store: each event's actor, position and hashes (migration 16), written
by every append, and the reads that answer who did what.

An append writes its events first, each with its position and hashes in one statement (the
backend's chained insert, below), then the statements of its read models. The hashes are computed
inside the append's transaction, from the event's canonical form computed in Python
(server/audit/chain.py), so the append makes no round trip of its own. The last position and the
instance-wide head hash are the one row of `audit_head`: every append takes that row's lock with
its first event and holds it to its commit, so appends serialise there and positions are given in
commit order. So a reader that saw position p never sees a new event below p later (no gap ever
fills in behind it), which is what lets a consumer of the event stream resume after the last
position it read without losing an event.

Before, an append inserted its events without positions and gave them their positions and hashes
in two more statements per event, last: twice the statements, and every audit index written twice.
"""

import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from server.actor import UNKNOWN
from server.audit import chain
from server.events.base import StoredEvent, encode_payload
from server.store.codecs import Statement
from server.store.contract import EventFilter

log = logging.getLogger("machinesecrets")


AUDIT_MIGRATION = 16


def _sha256_hex(text: str) -> str:
    """PostgreSQL's SQL for the SHA-256 of a text's UTF-8, in lower-case hex."""
    return f"encode(sha256(convert_to({text}, 'UTF8')), 'hex')"


EVENT_COLUMNS = (
    "aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at,"
    " actor_user_id, actor_org_id, credential_kind, credential_id, request_id, peer, transport"
)
_CHAINED_COLUMNS = f"{EVENT_COLUMNS}, subject_user_id, position, chain_hash, head_hash"
_EVENT_VALUES = ", ".join("?" * 15)  # EVENT_COLUMNS, then subject_user_id
# The chain_hash of the aggregate's event before this one (by sequence), "" for its first.
# Parameters: aggregate type, aggregate id, sequence.
_CHAIN_BEFORE = (
    "COALESCE((SELECT p.chain_hash FROM events p WHERE p.aggregate_type = ? AND p.aggregate_id = ?"
    " AND p.sequence < ? ORDER BY p.sequence DESC LIMIT 1), '')"
)

# An event, with its position and hashes, in one statement: the first of its append (its primary
# key, (aggregate, sequence), is the concurrency guard, met before any read model's unique key).
# Each backend has its own, the cheapest it can run:
#
# PostgreSQL: the update of the audit_head row, in the same statement (a data-modifying WITH),
# gives the position and the head; it takes the row's lock and holds it to the commit, so appends
# serialise there and positions follow the commit order. The statement reads the head as its
# update left it, not as its snapshot saw it (PostgreSQL re-reads a row it waited to lock).
# Parameters: _CHAIN_BEFORE's, "\n" + the canonical form, "\n", the columns (postgres_chaining).
POSTGRES_INSERT_EVENT = (
    f"WITH link AS (SELECT {_sha256_hex(f'{_CHAIN_BEFORE} || ?')} AS chain_hash),"  # noqa: S608 - constants
    " head AS (UPDATE audit_head SET position = position + 1,"
    f" head_hash = {_sha256_hex('head_hash || ? || (SELECT chain_hash FROM link)')}"
    " WHERE id = 1 RETURNING position, head_hash)"
    f" INSERT INTO events ({_CHAINED_COLUMNS}) VALUES ({_EVENT_VALUES},"
    " (SELECT position FROM head), (SELECT chain_hash FROM link), (SELECT head_hash FROM head))"
)
# SQLite: one writer at a time (BEGIN IMMEDIATE), so the head is read plainly, and the hashes are
# server/audit/chain.py's own functions (register_functions), not a copy of them in SQL. Then
# SQLITE_ADVANCE_HEAD. Parameters: _CHAIN_BEFORE's, the canonical form, the columns.
SQLITE_INSERT_EVENT = (
    f"WITH link AS MATERIALIZED (SELECT chain_link({_CHAIN_BEFORE}, ?) AS chain_hash)"  # noqa: S608 - constants
    f" INSERT INTO events ({_CHAINED_COLUMNS}) VALUES ({_EVENT_VALUES},"
    " (SELECT position + 1 FROM audit_head WHERE id = 1), (SELECT chain_hash FROM link),"
    " head_link((SELECT head_hash FROM audit_head WHERE id = 1), (SELECT chain_hash FROM link)))"
)
# Parameters: the event's aggregate type, id and sequence.
SQLITE_ADVANCE_HEAD = (
    "UPDATE audit_head SET position = position + 1, head_hash = (SELECT head_hash FROM events"
    " WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = ?) WHERE id = 1"
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


def _columns_and_form(event: StoredEvent, micros: int) -> tuple[tuple[Any, ...], str]:
    """The event's columns (EVENT_COLUMNS, then subject_user_id), and its canonical form: made
    from the payload itself, which is what a verifier gets back from the stored JSON text."""
    payload = event.event.payload()
    row = event_row(event, micros)
    form = chain.canonical({**dict(zip(chain.CANONICAL_FIELDS, row, strict=True)), "payload": payload})
    subject = chain.subject_user(event.aggregate_type, event.aggregate_id, payload)
    return (*row, subject), form


def postgres_chained_insert(event: StoredEvent, micros: int) -> list[Statement]:
    """The event, with its position and hashes (POSTGRES_INSERT_EVENT)."""
    columns, form = _columns_and_form(event, micros)
    key = (event.aggregate_type, event.aggregate_id, event.sequence)
    return [(POSTGRES_INSERT_EVENT, (*key, "\n" + form, "\n", *columns))]


def sqlite_chained_insert(event: StoredEvent, micros: int) -> list[Statement]:
    """The event, with its position and hashes (SQLITE_INSERT_EVENT), then the head moved on."""
    columns, form = _columns_and_form(event, micros)
    key = (event.aggregate_type, event.aggregate_id, event.sequence)
    return [(SQLITE_INSERT_EVENT, (*key, form, *columns)), (SQLITE_ADVANCE_HEAD, key)]


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
    """The chain's links (server/audit/chain.py), as SQL functions on a SQLite connection, for
    SQLITE_INSERT_EVENT."""
    connection.create_function("chain_link", 2, chain.chain_link, deterministic=True)
    connection.create_function("head_link", 2, chain.head_link, deterministic=True)


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
