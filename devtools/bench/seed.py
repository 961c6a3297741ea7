"""Large data sets, built fast by bulk insert of valid events.

The events are the domain's own (types and payloads as commands write them), and the statements
are the store's own (the same projections, so the read models match the events, and the events
chained as appends chain them); only their execution is batched, with executemany, instead of one
append per event.
"""

import json
import secrets
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import bcrypt
import psycopg

from server.audit import chain
from server.clock import to_micros
from server.domain.ids import IdGenerator
from server.domain.secret_format import new_secret
from server.events.base import StoredEvent
from server.events.secret import SecretRehashed, SecretSet
from server.events.user import MachineUserAdded
from server.store import audit
from server.store.postgres import to_pyformat
from server.store.projections import projection
from server.store.sqlite import sqlite_path

BATCH = 20_000
Grouped = list[tuple[str, list[tuple[Any, ...]]]]


def machine_users(org_id: str, count: int, ids: IdGenerator) -> list[StoredEvent]:
    now = datetime.now(UTC)
    return [
        StoredEvent(
            ids.new_id(), 1, org_id, MachineUserAdded(f"seed-{secrets.token_hex(8)}", "seeded", ""), now
        )
        for _ in range(count)
    ]


def rotations(user_id: str, org_id: str, first_sequence: int, count: int) -> list[StoredEvent]:
    """count secret events on one user, for the cost of an aggregate with a long history: one
    secret.set, then re-hashes of it (each a valid bcrypt hash at cost 4, the same one: hashing
    10,000 secrets would only slow seeding). Their projections do not depend on their order, which
    bulk_insert does not keep across statement kinds."""
    secret = new_secret()
    hashed = bcrypt.hashpw(secret.text.encode(), bcrypt.gensalt(4)).decode()
    now, secret_id = datetime.now(UTC), IdGenerator().new_id()
    first = SecretSet(secret_id, hashed, secret.lookup, "", None)
    again = SecretRehashed(secret_id, hashed)
    return [
        StoredEvent(user_id, first_sequence + i, org_id, again if i else first, now) for i in range(count)
    ]


def bulk_insert(database_url: str, events: list[StoredEvent]) -> None:
    for start in range(0, len(events), BATCH):
        batch = events[start : start + BATCH]
        micros = to_micros(batch[0].created_at)
        # Statements of one SQL text keep their order; every batch is one transaction.
        grouped: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        for sql, params in (statement for event in batch for statement in projection(event, micros)):
            grouped[sql].append(params)
        _execute(database_url, list(grouped.items()), [audit.event_row(event, micros) for event in batch])


def _chained(rows: list[tuple[Any, ...]], fetch: Callable[[str, tuple[Any, ...]], list[Any]]) -> Grouped:
    """The events (rows of audit.EVENT_COLUMNS) with their positions and hashes, after the store's
    head, and the head moved past them: as appends give them, computed here at once instead of by
    each append's SQL (audit.chained_rows). fetch answers a read's rows as tuples."""
    [(position, head)] = fetch(audit.SELECT_HEAD, ())
    fields = [dict(zip(chain.CANONICAL_FIELDS, row, strict=True)) for row in rows]
    chains: dict[tuple[str, str], str] = {}
    for field in fields:
        aggregate = (str(field["aggregate_type"]), str(field["aggregate_id"]))
        if aggregate not in chains:
            found = fetch(audit.SELECT_CHAIN_BEFORE, (*aggregate, field["sequence"]))
            chains[aggregate] = str(found[0][0]) if found else ""
    links = audit.chained_rows(fields, int(position), str(head), chains)
    inserts = [
        (*row, chain.subject_user(str(row[0]), str(row[1]), json.loads(row[5])), *link)
        for row, link in zip(rows, links, strict=True)
    ]
    return [(audit.INSERT_CHAINED_EVENT, inserts), (audit.SET_HEAD, [links[-1][::2]])]


def _execute(database_url: str, grouped: Grouped, events: list[tuple[Any, ...]]) -> None:
    if database_url.startswith("sqlite"):
        lite = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        lite.execute("PRAGMA busy_timeout = 30000")
        lite.execute("BEGIN IMMEDIATE")
        for sql, rows in [*grouped, *_chained(events, lambda q, a: lite.execute(q, a).fetchall())]:
            lite.executemany(sql, rows)
        lite.execute("COMMIT")
        lite.close()
        return
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        # The head's row first: appends of a running service wait for this seed, not the reverse.
        cursor.execute("SELECT position FROM audit_head WHERE id = 1 FOR UPDATE")

        def fetch(query: str, args: tuple[Any, ...]) -> list[Any]:
            return cursor.execute(to_pyformat(query).encode(), args).fetchall()

        for sql, rows in [*grouped, *_chained(events, fetch)]:
            cursor.executemany(to_pyformat(sql).encode(), rows)
