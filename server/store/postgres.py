"""The production store: PostgreSQL through psycopg 3 and a bounded async connection pool.

Several server processes may share one database: the primary key (aggregate, sequence) of the
events table makes concurrent appends to one aggregate serialise, and the loser's transaction
(events and read models together) rolls back whole. Migrations run under an advisory lock, so
processes that start together apply each migration once.

When the database is unreachable, calls fail within POOL_TIMEOUT_S with StoreUnavailable; the
pool keeps reconnecting in the background, so calls succeed again once it is back.
"""

import re
import time
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from server.clock import SYSTEM_CLOCK, Clock
from server.events.base import StoredEvent
from server.store import audit, migrations
from server.store.codecs import Statement
from server.store.contract import StoreError, StoreUnavailable, UniqueViolation
from server.store.records import Row
from server.store.sql import Plan, SqlStore

POOL_TIMEOUT_S = 3.0
CONNECT_TIMEOUT_S = 3
MIGRATION_LOCK = 0x6D735F6D6967  # "ms_mig": one advisory lock id for this schema's migrations
# A read on a connection the database dropped (a restart, say) is retried once on a fresh one.
READ_ATTEMPTS = 2


def to_pyformat(sql: str) -> str:
    """statements.py and migrations.py write `?` placeholders; psycopg wants `%s`."""
    return re.sub(r"\?", "%s", sql)


async def _first_connection(url: str) -> None:
    """One connection before the pool: a database that is missing, a port that is closed or a
    password that is wrong fails here at once (at most CONNECT_TIMEOUT_S), with the server's own
    reason, where the pool would wait its whole timeout and say only that it timed out."""
    try:
        connection = await psycopg.AsyncConnection.connect(url, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.Error as error:
        raise StoreUnavailable(f"cannot open the PostgreSQL store: {_reason(error)}") from error
    await connection.close()


def _reason(error: psycopg.Error) -> str:
    """psycopg's message (the server's FATAL, or the socket's refusal, and libpq's hint), on one
    line. libpq never puts the password in it."""
    return " ".join(line.strip() for line in str(error).splitlines() if line.strip()) or type(error).__name__


class PostgresStore(SqlStore):
    def __init__(self, pool: AsyncConnectionPool) -> None:
        super().__init__()
        self._pool = pool

    @classmethod
    async def open(cls, url: str, pool_size: int, clock: Clock = SYSTEM_CLOCK) -> "PostgresStore":
        await _first_connection(url)
        pool = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=POOL_TIMEOUT_S,
            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True},
            open=False,
        )
        try:
            await pool.open(wait=True, timeout=POOL_TIMEOUT_S * 3)
            store = cls(pool)
            store.clock = clock
            await store._migrate()
        except (psycopg.Error, PoolTimeout) as error:
            await pool.close()
            raise StoreUnavailable(f"cannot open the PostgreSQL store: {type(error).__name__}") from error
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        async with self._pool.connection() as connection, connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            await connection.execute(migrations.CREATE_MIGRATIONS_TABLE)
            cursor = await connection.cursor(row_factory=dict_row).execute(
                "SELECT version FROM schema_migrations"
            )
            applied = {row["version"] for row in await cursor.fetchall()}
            for version, statements in migrations.MIGRATIONS:
                if version in applied:
                    continue
                for statement in [*statements, *migrations.POSTGRES_ONLY.get(version, [])]:
                    await connection.execute(to_pyformat(statement))
                python_step = migrations.python_step(version)
                if python_step is not None:
                    query, make = python_step
                    cursor = await connection.cursor(row_factory=dict_row).execute(query)
                    for sql, params in make(list(await cursor.fetchall())):
                        await connection.execute(to_pyformat(sql), params)
                await connection.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))

    def _chained_insert(self, event: StoredEvent, micros: int) -> list[Statement]:
        return audit.postgres_chained_insert(event, micros)

    async def _run(self, plan: Plan) -> None:
        await self._read_then_run((), None, plan)

    async def _read_then_run(self, locks: tuple[str, ...], read: Statement | None, plan: Plan) -> list[Row]:
        try:
            async with self._pool.connection() as connection:
                try:
                    # Pipeline mode: the plan's statements and the commit go out together, and the
                    # answer comes back once: one round trip for a whole append, not one a
                    # statement. A read waits for its rows (its own round trip) before the plan.
                    async with connection.pipeline(), connection.transaction():
                        # Transaction-scoped advisory locks, taken in one order so that two
                        # transactions never wait on each other crosswise.
                        for name in sorted(set(locks)):
                            await connection.execute(
                                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (name,), prepare=True
                            )
                        rows: list[Row] = []
                        if read is not None:
                            cursor = await connection.cursor(row_factory=dict_row).execute(
                                to_pyformat(read[0]), read[1], prepare=True
                            )
                            rows = list(await cursor.fetchall())
                        for (sql, params), _ in plan:
                            await connection.execute(to_pyformat(sql), params, prepare=True)
                    return rows
                except pg_errors.UniqueViolation as error:
                    # In a pipeline the error arrives at the sync, not at its statement: the table
                    # it names says which statement it was, and so what it means.
                    raise _meaning(plan, error.diag.table_name)(
                        error.diag.constraint_name or "unique"
                    ) from error
        except (psycopg.OperationalError, PoolTimeout) as error:
            raise StoreUnavailable("the PostgreSQL store failed") from error

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        # Every attempt together within POOL_TIMEOUT_S: a database that is down fails a read in
        # that bound, not once per attempt.
        deadline = time.monotonic() + POOL_TIMEOUT_S
        for attempt in range(READ_ATTEMPTS):
            try:
                async with self._pool.connection(timeout=max(0.0, deadline - time.monotonic())) as connection:
                    cursor = await connection.cursor(row_factory=dict_row).execute(
                        to_pyformat(sql), params, prepare=True
                    )
                    return list(await cursor.fetchall())
            except psycopg.OperationalError as error:
                if attempt + 1 == READ_ATTEMPTS:
                    raise StoreUnavailable("the PostgreSQL store failed") from error
            except PoolTimeout as error:
                raise StoreUnavailable("the PostgreSQL store failed") from error
        raise AssertionError("unreachable")


# The tables a statement writes (a data-modifying WITH writes more than one).
_TARGETS = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)", re.IGNORECASE)


def _meaning(plan: Plan, table: str | None) -> type[StoreError]:
    """What a unique violation in table means, by the plan: the meaning of its first statement
    that writes to that table (the events table's is ConcurrencyConflict)."""
    for (sql, _), meaning in plan:
        if table in _TARGETS.findall(sql):
            return meaning
    return UniqueViolation
