"""The embedded store: one SQLite file in WAL mode.

Writes are serialised in this process by an asyncio lock around one writer connection: SQLite
allows one writer at a time anyway, and waiting on a lock in the event loop is cheaper and clearer
than retrying `database is locked` errors. A second process on the same file (not a supported
deployment; use PostgreSQL to scale out) waits up to the busy timeout. Reads use their own
connection, so they see only committed data and never wait for a write.
"""

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from server.store import schema
from server.store.base import (
    ConcurrencyConflict,
    OrgRecord,
    StoreUnavailable,
    TokenRecord,
    UniqueViolation,
    UserRecord,
)
from server.store.events import NewEvent, StoredEvent

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` to a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("a SQLite URL looks like sqlite:///path/to/file.db")
    return url[len(prefix) :]


class SqliteStore:
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

    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        created_at = datetime.now(UTC)
        micros = schema.to_micros(created_at)
        stored = [
            StoredEvent(
                e.aggregate_type, e.aggregate_id, e.sequence, e.type, e.resource_owner, e.payload, created_at
            )
            for e in events
        ]
        async with self._write_lock:
            try:
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    for event in stored:
                        await self._insert_event(event, micros)
                        try:
                            await schema.project(self._execute, event, micros)
                        except sqlite3.IntegrityError as error:
                            raise UniqueViolation(_unique_key(error)) from error
                except BaseException:
                    await self._writer.rollback()
                    raise
                await self._writer.commit()
            except sqlite3.Error as error:
                raise StoreUnavailable("the SQLite store failed") from error
        return stored

    async def _insert_event(self, event: StoredEvent, micros: int) -> None:
        row = (
            event.aggregate_type,
            event.aggregate_id,
            event.sequence,
            event.type,
            event.resource_owner,
            schema.encode_payload(event.payload),
            micros,
        )
        try:
            await self._writer.execute(schema.INSERT_EVENT, row)
        except sqlite3.IntegrityError as error:
            raise ConcurrencyConflict("sequence taken") from error

    async def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        await self._writer.execute(sql, params)

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        try:
            async with self._reader.execute(sql, params) as cursor:
                return list(await cursor.fetchall())
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error

    async def events(self, aggregate_type: str, aggregate_id: str) -> list[StoredEvent]:
        rows = await self._fetch(schema.SELECT_EVENTS, (aggregate_type, aggregate_id))
        return [
            StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), schema.from_micros(r[6]))
            for r in rows
        ]

    async def user(self, user_id: str) -> UserRecord | None:
        return schema.user_record(await self._fetch(schema.SELECT_USER, (user_id,)))

    async def user_by_name(self, user_name: str) -> UserRecord | None:
        return schema.user_record(
            await self._fetch(schema.SELECT_USER_BY_NAME, (schema.user_name_key(user_name),))
        )

    async def org(self, org_id: str) -> OrgRecord | None:
        rows = await self._fetch(schema.SELECT_ORG, (org_id,))
        if not rows:
            return None
        r = rows[0]
        return OrgRecord(r[0], r[1], r[2], schema.from_micros(r[3]), schema.from_micros(r[4]))

    async def any_org(self) -> bool:
        return bool(await self._fetch(schema.SELECT_ANY_ORG, ()))

    async def roles(self, user_id: str) -> dict[str, frozenset[str]]:
        rows = await self._fetch(schema.SELECT_ROLES, (user_id,))
        return {r[0]: schema.decode_roles(r[1]) for r in rows}

    async def member_roles(self, org_id: str, user_id: str) -> frozenset[str] | None:
        rows = await self._fetch(schema.SELECT_MEMBER_ROLES, (org_id, user_id))
        return schema.decode_roles(rows[0][0]) if rows else None

    async def token(self, token_hash: str) -> TokenRecord | None:
        rows = await self._fetch(schema.SELECT_TOKEN, (token_hash,))
        if not rows:
            return None
        r = rows[0]
        return TokenRecord(r[0], r[1], None if r[2] is None else schema.from_micros(r[2]), r[3])


async def _connect(path: str) -> aiosqlite.Connection:
    # isolation_level=None: no implicit transactions; append() opens its own with BEGIN IMMEDIATE.
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


def _unique_key(error: sqlite3.IntegrityError) -> str:
    # SQLite names the columns: "UNIQUE constraint failed: users.user_name_key".
    return str(error).rsplit(":", 1)[-1].strip()
