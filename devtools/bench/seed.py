"""Large data sets, built fast by bulk insert of valid events.

The events are the domain's own (types and payloads as commands write them), and the statements
are the store's own append plan (the same projections, so the read models match the events); only
their execution is batched, with executemany, instead of one append per event.
"""

import secrets
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime

import bcrypt
import psycopg

from server.clock import to_micros
from server.domain.ids import IdGenerator
from server.domain.secret_format import new_secret
from server.events.base import StoredEvent
from server.events.secret import SecretRehashed, SecretSet
from server.events.user import MachineUserAdded
from server.store.postgres import to_pyformat
from server.store.sql import append_plan
from server.store.sqlite import sqlite_path

BATCH = 20_000


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
        # Statements of one SQL text keep their order; every batch is one transaction.
        grouped: dict[str, list[tuple[object, ...]]] = defaultdict(list)
        for (sql, params), _ in append_plan(batch, to_micros(batch[0].created_at)):
            grouped[sql].append(params)
        _execute(database_url, list(grouped.items()))


def _execute(database_url: str, grouped: list[tuple[str, list[tuple[object, ...]]]]) -> None:
    if database_url.startswith("sqlite"):
        lite = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        lite.execute("PRAGMA busy_timeout = 30000")
        lite.execute("BEGIN IMMEDIATE")
        for sql, rows in grouped:
            lite.executemany(sql, rows)
        lite.execute("COMMIT")
        lite.close()
        return
    with psycopg.connect(database_url) as connection, connection.cursor() as cursor:
        for sql, rows in grouped:
            cursor.executemany(to_pyformat(sql), rows)
