"""The embedded store: one SQLite file in WAL mode, driven by the standard sqlite3 module.

Each connection lives on a thread of its own, and each store call is one hop to that thread: an
append runs its whole transaction there, so the event loop waits for one hand-off, not one per
statement. Writes are serialised by the single writer thread (SQLite allows one writer at a time
anyway; queueing there is cheaper and clearer than retrying `database is locked`). Reads use
their own connection and thread, so they see only committed data and never wait for a write.
A second process on the same file is not a supported deployment (use PostgreSQL to scale out);
it would wait up to the busy timeout.
"""

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from server.store import schema
from server.store.base import StoreUnavailable
from server.store.sql import Plan, SqlStore

BUSY_TIMEOUT_MS = 5000
T = TypeVar("T")


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` to a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("a SQLite URL looks like sqlite:///path/to/file.db")
    return url[len(prefix) :]


class _Connection:
    """One sqlite3 connection and the one thread that uses it."""

    def __init__(self, path: str, name: str) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._path = path
        self._connection: sqlite3.Connection | None = None

    def _open(self) -> None:
        # isolation_level=None: no implicit transactions; appends open their own.
        self._connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        self._connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")

    async def call(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self._connection is None:
                self._open()
            assert self._connection is not None
            return work(self._connection)

        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def close(self) -> None:
        def close() -> None:
            if self._connection is not None:
                self._connection.close()

        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=True)


class SqliteStore(SqlStore):
    def __init__(self, writer: _Connection, reader: _Connection) -> None:
        self._writer = writer
        self._reader = reader

    @classmethod
    async def open(cls, url: str) -> "SqliteStore":
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        writer, reader = _Connection(path, "sqlite-writer"), _Connection(path, "sqlite-reader")
        try:
            await writer.call(_migrate)
        except sqlite3.Error as error:
            await writer.close()
            await reader.close()
            raise StoreUnavailable(f"cannot open the SQLite store: {error}") from error
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def _run(self, plan: Plan) -> None:
        try:
            await self._writer.call(lambda connection: _transaction(connection, plan))
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            return await self._reader.call(lambda connection: connection.execute(sql, params).fetchall())
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error


def _transaction(connection: sqlite3.Connection, plan: Plan) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for (sql, params), meaning in plan:
            try:
                connection.execute(sql, params)
            except sqlite3.IntegrityError as error:
                if "UNIQUE" not in str(error):
                    raise
                # SQLite names the columns: "UNIQUE constraint failed: users.user_name_key".
                raise meaning(str(error).rsplit(":", 1)[-1].strip()) from error
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute(schema.CREATE_MIGRATIONS_TABLE)
    applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
    for version, statements in schema.MIGRATIONS:
        if version in applied:
            continue
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                connection.execute(statement)
            connection.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
