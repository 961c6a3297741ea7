"""The embedded store: one SQLite file in WAL mode.

Writes are serialised in this process by an asyncio lock around one writer connection: SQLite
allows one writer at a time anyway, and waiting on a lock in the event loop is cheaper and clearer
than retrying `database is locked` errors. A second process on the same file (not a supported
deployment; use PostgreSQL to scale out) waits up to the busy timeout. Reads use their own
connection, so they see only committed data and never wait for a write.
"""

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from server.store import schema
from server.store.base import StoreUnavailable
from server.store.sql import SqlStore

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` to a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("a SQLite URL looks like sqlite:///path/to/file.db")
    return url[len(prefix) :]


class SqliteStore(SqlStore):
    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, url: str) -> "SqliteStore":
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            writer = await _connect(path)
            await writer.execute("PRAGMA journal_mode = WAL")
            await _migrate(writer)
            reader = await _connect(path)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open the SQLite store: {error}") from error
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[schema.Execute]:
        async def execute(sql: str, params: tuple[Any, ...]) -> None:
            await self._writer.execute(sql, params)

        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    yield execute
                except BaseException:
                    await self._writer.rollback()
                    raise
                await self._writer.commit()
            except sqlite3.IntegrityError:
                raise  # turned into a conflict or a unique violation by the caller
            except sqlite3.Error as error:
                raise StoreUnavailable("the SQLite store failed") from error

    def _unique_violation(self, error: Exception) -> str | None:
        # SQLite names the columns: "UNIQUE constraint failed: users.user_name_key".
        if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error):
            return str(error).rsplit(":", 1)[-1].strip()
        return None

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            async with self._reader.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error


async def _connect(path: str) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; writes open their own with BEGIN IMMEDIATE.
    connection = await aiosqlite.connect(path, isolation_level=None)
    await connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


async def _migrate(connection: aiosqlite.Connection) -> None:
    await connection.execute(schema.CREATE_MIGRATIONS_TABLE)
    async with connection.execute("SELECT version FROM schema_migrations") as cursor:
        applied = {row[0] for row in await cursor.fetchall()}
    for version, statements in schema.MIGRATIONS:
        if version in applied:
            continue
        await connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                await connection.execute(statement)
            await connection.execute("INSERT INTO schema_migrations (version) VALUES (?)", (version,))
        except BaseException:
            await connection.rollback()
            raise
        await connection.commit()
