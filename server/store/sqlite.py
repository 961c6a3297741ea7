"""The embedded store: one SQLite file in WAL mode, driven by the standard sqlite3 module.

Every call runs inline on the event loop, on one connection. A transaction never awaits, so no
other call can interleave with it: writes are serialised by construction, and `database is
locked` cannot arise within the process. Running inline is a measured choice: a read by primary
key takes about 20 µs and an append about 0.1 ms, while handing each call to a thread cost far
more under load (the thread must win the GIL back from the busy loop; with a writer thread,
AddSecret on one user peaked near a third of what it does now).

Durability: by default (`MS_SQLITE_SYNC=full`) a write is acknowledged only once it is on disk,
by group commit: SQLite commits in WAL mode with `synchronous = NORMAL` (no fsync inside the
commit, so the loop never blocks on the disk), and `GroupCommit` then fsyncs the WAL file on a
thread of its own, once for every commit that waits together. With `MS_SQLITE_SYNC=normal` the
fsync is skipped: a committed transaction still survives the process being killed, but the last
ones may be rolled back by a power loss or an OS crash (the file is never corrupted). A second
process on the same file is not a supported deployment; it would wait up to the busy timeout.
"""

import asyncio
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from server.clock import SYSTEM_CLOCK, Clock
from server.events.base import StoredEvent
from server.store import audit, migrations
from server.store.codecs import Statement
from server.store.contract import StoreUnavailable
from server.store.records import Row
from server.store.sql import Plan, SqlStore

BUSY_TIMEOUT_MS = 5000


def sqlite_path(url: str) -> str:
    """`sqlite:///relative/file.db` or `sqlite:////absolute/file.db` to a file path."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("a SQLite URL looks like sqlite:///path/to/file.db")
    return url[len(prefix) :]


class GroupCommit:
    """Makes commits durable in groups: every commit waits for one fsync of the WAL that started
    after it, and one fsync serves all the commits that wait together.

    Why an fsync of the WAL after SQLite's own commit is enough: in WAL mode a commit only appends
    frames (and, after a checkpoint, rewrites the WAL header) in that one file; with synchronous
    NORMAL SQLite fsyncs the WAL before every checkpoint and the database file after it. Once the
    frames of a commit are on disk, recovery replays them. Nothing is acknowledged before its
    fsync, so a power loss can only take commits that no caller was told about.

    `committed` counts the calls to durable() (each made after its commit) and `synced` those that
    a finished fsync covered, so that a test can see that nothing was acknowledged early, and how
    many fsyncs a burst of writes took (`flushes`)."""

    def __init__(self, wal: Path) -> None:
        self._wal = wal
        self._fd: int | None = None
        # One thread of its own: the fsync must not queue behind bcrypt in the default pool.
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-fsync")
        self._waiting: asyncio.Future[None] | None = None  # the commits that the next fsync covers
        self._flusher: asyncio.Task[None] | None = None
        self.committed = self.synced = self.flushes = 0

    async def durable(self) -> None:
        """Returns once everything committed so far is on disk; StoreUnavailable if the fsync fails."""
        self.committed += 1
        loop = asyncio.get_running_loop()
        if self._waiting is None:
            self._waiting = loop.create_future()
        waiting = self._waiting
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        # shield: a caller that gives up does not cancel the fsync the others wait for.
        await asyncio.shield(waiting)

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._waiting is not None:
                group, self._waiting, covered = self._waiting, None, self.committed
                try:
                    await loop.run_in_executor(self._thread, self._fsync)
                except OSError as error:
                    group.set_exception(
                        StoreUnavailable(f"the SQLite store could not sync: {error.strerror}")
                    )
                    group.add_done_callback(lambda done: done.exception())  # nobody may be left to read it
                else:
                    self.synced, self.flushes = covered, self.flushes + 1
                    group.set_result(None)
        finally:
            self._flusher = None

    def _fsync(self) -> None:
        if self._fd is None:
            # The WAL exists once the first commit is made, and SQLite keeps the same file while
            # its connection is open (it rewinds the file after a checkpoint, never replaces it).
            self._fd = os.open(self._wal, os.O_RDONLY)
            directory = os.open(self._wal.parent, os.O_RDONLY)  # the WAL's name is durable too
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        os.fsync(self._fd)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SqliteStore(SqlStore):
    def __init__(self, connection: sqlite3.Connection, group: GroupCommit | None) -> None:
        super().__init__()
        self._connection = connection
        self._group = group  # None: commits are not waited onto the disk (MS_SQLITE_SYNC=normal)

    @classmethod
    async def open(cls, url: str, clock: Clock = SYSTEM_CLOCK, synchronous: str = "full") -> "SqliteStore":
        """The store at url. synchronous "full" (the default) makes a commit durable before it is
        acknowledged, by group commit; "normal" (WAL's usual pairing) may lose the last commits to
        a power loss, and a client would then hold a secret the service forgot."""
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be full or normal, not {synchronous!r}")
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        _private(Path(path))
        try:
            # isolation_level=None: no implicit transactions; appends open their own.
            connection = sqlite3.connect(path, isolation_level=None)
            connection.row_factory = sqlite3.Row  # rows by column name
            audit.register_functions(connection)  # the chain's links, for audit.SQLITE_INSERT_EVENT
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            # NORMAL either way: in "full" mode GroupCommit does the fsync, off the event loop.
            connection.execute("PRAGMA synchronous = NORMAL")
            _migrate(connection)
        except sqlite3.Error as error:
            raise StoreUnavailable(f"cannot open the SQLite store: {error}") from error
        wal = Path(path).with_name(Path(path).name + "-wal")
        store = cls(connection, GroupCommit(wal) if synchronous == "full" else None)
        store.clock = clock
        return store

    async def close(self) -> None:
        if self._group is not None:
            self._group.close()
        self._connection.close()

    def _chained_insert(self, event: StoredEvent, micros: int) -> list[Statement]:
        return audit.sqlite_chained_insert(event, micros)

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

    async def durable(self) -> None:
        if self._group is not None:
            await self._group.durable()

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
