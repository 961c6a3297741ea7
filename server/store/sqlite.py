"""The embedded store: one SQLite file in WAL mode, driven by the standard sqlite3 module.

Every call runs inline on the event loop, on one connection. A transaction never awaits, so no
other call can interleave with it: writes are serialised by construction, and `database is
locked` cannot arise within the process. Running inline is a measured choice: a read by primary
key takes about 20 µs and an append about 0.1 ms, while handing each call to a thread cost far
more under load (the thread must win the GIL back from the busy loop; with a writer thread,
AddSecret on one user peaked near a third of what it does now).

Durability: `synchronous = NORMAL` in WAL mode. A committed transaction survives the process
being killed (the tests SIGKILL a server under load and lose nothing acknowledged) but may be
rolled back by a power loss or an OS crash; the file is never corrupted. Where that matters, run
on PostgreSQL, the production store. A second process on the same file is not a supported
deployment either; it would wait up to the busy timeout.
"""

import os
import sqlite3
from pathlib import Path
from typing import Any

from server.clock import SYSTEM_CLOCK, Clock
from server.store import migrations
from server.store.base import StoreUnavailable
from server.store.codecs import Statement
from server.store.records import Row
from server.store.sql import Plan, SqlStore

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` to a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("a SQLite URL looks like sqlite:///path/to/file.db")
    return url[len(prefix) :]


class SqliteStore(SqlStore):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, url: str, clock: Clock = SYSTEM_CLOCK, synchronous: str = "full") -> "SqliteStore":
        """The store at url. synchronous "full" (the default) makes a commit durable before it is
        acknowledged: WAL with synchronous=NORMAL, SQLite's usual pairing, may lose the last
        commits to a power loss, and a client would then hold a secret the service forgot."""
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _private(Path(path))
        try:
            # isolation_level=None: no implicit transactions; appends open their own.
            connection = sqlite3.connect(path, isolation_level=None)
            connection.row_factory = sqlite3.Row  # rows by column name
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            _migrate(connection)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open the SQLite store: {error}") from error
        store = cls(connection)
        store.clock = clock
        return store

    async def close(self) -> None:
        self._connection.close()

    async def _run(self, plan: Plan) -> None:
        try:
            _transaction(self._connection, plan)
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error

    async def _read_then_run(self, locks: tuple[str, ...], read: Statement | None, plan: Plan) -> list[Row]:
        # No named locks needed: the transaction runs inline, so nothing in this process can come
        # between the read and the plan, and BEGIN IMMEDIATE keeps any other writer out.
        try:
            return _transaction(self._connection, plan, read)
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        try:
            return self._connection.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise StoreUnavailable("the SQLite store failed") from error


def _transaction(
    connection: sqlite3.Connection,
    plan: Plan,
    read: Statement | None = None,
    then: migrations.PythonStep | None = None,
) -> list[Row]:
    """read's rows, then plan, in one transaction; then (a migration's Python step, after its SQL):
    the statements made from the rows of a query."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        rows = [] if read is None else connection.execute(*read).fetchall()
        if then is not None:
            query, make = then
            plan = [*plan, *((step, StoreUnavailable) for step in make(connection.execute(query).fetchall()))]
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
    return rows


def _private(path: Path) -> None:
    """The store holds hashes and the audit trail: only the service's user reads it. The file is
    made 0600 before SQLite opens it (SQLite gives its -wal and -shm files the database file's
    mode), and one made earlier with a wider mode is narrowed."""
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_uid == os.geteuid() and file.stat().st_mode & 0o077:
            file.chmod(0o600)


def _migrate(connection: sqlite3.Connection) -> None:
    connection.execute(migrations.CREATE_MIGRATIONS_TABLE)
    applied = {row["version"] for row in connection.execute("SELECT version FROM schema_migrations")}
    for version, statements in migrations.MIGRATIONS:
        if version in applied:
            continue
        # The migration and its record commit together, or neither does.
        steps: list[tuple[str, tuple[Any, ...]]] = [(statement, ()) for statement in statements]
        steps.append(("INSERT INTO schema_migrations (version) VALUES (?)", (version,)))
        plan: Plan = [(step, StoreUnavailable) for step in steps]
        _transaction(connection, plan, then=migrations.python_step(version))
