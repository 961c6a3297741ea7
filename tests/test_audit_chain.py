"""The audit chain on both stores: every append is chained, `machine-secrets audit verify` finds
each kind of change made directly in the database (an edited payload, a removed event, two
events reordered, a tail cut off) and says where, migration 16 chains the events written before,
and an export verifies with the algorithm of SECURITY.md, by a verifier that uses none of the
service's code."""

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from server.actor import Actor
from server.audit.chain import Break
from server.audit.cli import export, verify
from server.events.base import AGGREGATE_ORG, Event, NewEvent
from server.events.org import OrgAdded
from server.events.user import MachineUserAdded, PatAdded, PatRemoved, UserDeactivated, UserReactivated
from server.store.contract import Store
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests import postgres
from tests.service import BACKENDS
from tests.test_store_contract import store_at

ROOT = Path(__file__).resolve().parent.parent
ADMIN = Actor("7", "1", "pat", "8", "req-1", "192.0.2.10", "json")


@contextlib.asynccontextmanager
async def opened(backend: str, folder: Path) -> AsyncIterator[tuple[Store, str]]:
    """A new store of backend, and its URL (for the command and for changes made beside it)."""
    if backend == "sqlite":
        url = f"sqlite:///{folder / 'audit.db'}"
        store: Store = await SqliteStore.open(url)
        try:
            yield store, url
        finally:
            await store.close()
        return
    with postgres.throwaway_database() as url:
        store = await PostgresStore.open(url, pool_size=2)
        try:
            yield store, url
        finally:
            await store.close()


async def six_events(store: Store) -> None:
    """Positions 1 to 6: org 1; user 10 (1, 2); user 11 (1); user 10 (3); user 11 (2)."""

    def user(user_id: str, sequence: int, event: Event) -> NewEvent:
        return NewEvent(user_id, sequence, "1", event, actor=ADMIN)

    await store.append([NewEvent("1", 1, "1", OrgAdded("Zoë 東京"), actor=ADMIN)])
    await store.append([user("10", 1, MachineUserAdded("a", "A", ""))])
    await store.append([user("10", 2, PatAdded("5", "x", None))])
    await store.append([user("11", 1, MachineUserAdded("b", "B", ""))])
    await store.append([user("10", 3, PatRemoved("5"))])
    await store.append([user("11", 2, UserDeactivated())])


def change(backend: str, url: str, *statements: str) -> None:
    """Statements run on the database itself, beside the service."""
    if backend == "sqlite":
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db, db:
            for statement in statements:
                db.execute(statement)
        return
    with psycopg.connect(url) as pg:
        for statement in statements:
            pg.execute(statement.encode())


async def verified(store: Store) -> tuple[Break | None, str]:
    out = io.StringIO()
    broken = await verify(store, out)
    return broken, out.getvalue()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_every_append_is_chained_and_verifies(backend: str, tmp_path: Path) -> None:
    async with opened(backend, tmp_path) as (store, _):
        assert await verified(store) == (None, "audit chain verified: 0 events, head at position 0: \n")
        await six_events(store)
        # Two events of one append, and of one aggregate, each take a position of their own.
        await store.append(
            [
                NewEvent("11", 3, "1", UserReactivated(), actor=ADMIN),
                NewEvent("11", 4, "1", UserDeactivated(), actor=ADMIN),
            ]
        )
        broken, said = await verified(store)
        assert broken is None, said
        position, head = await store.audit_head()
        assert said == f"audit chain verified: 8 events, head at position 8: {head}\n"
        assert position == 8
        assert [int(r["position"]) for r in await store.chain_rows(0, 100)] == list(range(1, 9))
        # What the chain covers is what a read gives back: the actor included.
        [first] = await store.events(AGGREGATE_ORG, "1")
        assert first.actor == ADMIN


async def concurrent_appends(store: Store) -> None:
    await store.append([NewEvent("1", 1, "1", OrgAdded("o"))])

    async def one(n: int) -> None:
        user_id = str(100 + n)
        await store.append([NewEvent(user_id, 1, "1", MachineUserAdded(f"u{n}", "n", ""))])
        await store.append([NewEvent(user_id, 2, "1", UserDeactivated())])

    await asyncio.gather(*(one(n) for n in range(20)))


@pytest.mark.parametrize("backend", BACKENDS)
async def test_concurrent_appends_take_consecutive_positions(backend: str, tmp_path: Path) -> None:
    async with opened(backend, tmp_path) as (store, _):
        await concurrent_appends(store)
        broken, said = await verified(store)
        assert broken is None, said
        assert await store.audit_head() == (41, (await store.chain_rows(40, 1))[0]["head_hash"])


# Each change made in the database, and the first link it breaks: position, aggregate, what.
TAMPERING: dict[str, tuple[list[str], tuple[int, str, str]]] = {
    "an edited payload": (
        ["UPDATE events SET payload = '{\"expires_at\":null,\"token_hash\":\"y\",\"token_id\":\"6\"}'"
         " WHERE position = 3"],
        (3, "user/10", "chain_hash"),
    ),
    "an edited actor": (
        ["UPDATE events SET actor_user_id = '9' WHERE position = 2"],
        (2, "user/10", "chain_hash"),
    ),
    "a removed event": (["DELETE FROM events WHERE position = 3"], (3, "user/11", "position")),
    "an event taken out of its user's history": (
        ["UPDATE events SET subject_user_id = '' WHERE position = 5"],
        (5, "user/10", "subject_user_id"),
    ),
    "two events reordered": (
        [
            "UPDATE events SET position = -1 WHERE position = 3",
            "UPDATE events SET position = 3 WHERE position = 5",
            "UPDATE events SET position = 5 WHERE position = -1",
        ],
        (3, "user/10", "chain_hash"),
    ),
    "two aggregates' events reordered": (
        [
            "UPDATE events SET position = -1 WHERE position = 3",
            "UPDATE events SET position = 3 WHERE position = 4",
            "UPDATE events SET position = 4 WHERE position = -1",
        ],
        (3, "user/11", "head_hash"),
    ),
    "a tail cut off": (["DELETE FROM events WHERE position >= 5"], (6, "", "audit_head")),
    "an aggregate's last event removed": (
        ["DELETE FROM events WHERE position = 5"],
        (5, "user/11", "position"),
    ),
    "an event put beside the chain": (
        ["INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload,"
         " created_at) VALUES ('user', '12', 1, 'user.removed', '1', '{}', 1)"],
        (6, "", "events in the chain"),
    ),
}  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", sorted(TAMPERING))
async def test_verify_reports_the_first_broken_link(backend: str, kind: str, tmp_path: Path) -> None:
    statements, (position, aggregate, what) = TAMPERING[kind]
    async with opened(backend, tmp_path) as (store, url):
        await six_events(store)
        assert (await verified(store))[0] is None
        change(backend, url, *statements)
        broken, said = await verified(store)
        assert broken is not None, kind
        assert (broken.position, broken.aggregate, broken.what) == (position, aggregate, what), said
        assert broken.expected != broken.found
        assert said.startswith(
            f"audit chain broken: position {position}, aggregate {aggregate or '-'}: {what}:"
        )


async def run_command(*args: str, database_url: str) -> tuple[int, str]:
    """`python -m server audit ...` (the machine-secrets command), on the store of database_url."""
    env = {**os.environ, "MS_DATABASE_URL": database_url}
    done = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server", "audit", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(done.communicate(), 60))[0].decode()
    assert done.returncode is not None
    return done.returncode, output


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_command_verifies_and_exports_the_store_the_settings_name(
    backend: str, tmp_path: Path
) -> None:
    async with opened(backend, tmp_path) as (store, url):
        await six_events(store)
        _, head = await store.audit_head()
        code, output = await run_command("verify", database_url=url)
        assert (code, output) == (0, f"audit chain verified: 6 events, head at position 6: {head}\n")
        code, output = await run_command("export", "--since", "4", database_url=url)
        assert code == 0, output
        assert [json.loads(line)["position"] for line in output.splitlines()] == [5, 6]
        change(backend, url, "UPDATE events SET created_at = created_at + 1 WHERE position = 4")
        code, output = await run_command("verify", database_url=url)
        assert code == 1
        assert re.fullmatch(
            r"audit chain broken: position 4, aggregate user/11: chain_hash: expected [0-9a-f]{64},"
            r" found [0-9a-f]{64}\n",
            output,
        ), output
    code, output = await run_command("verify", database_url="mysql://nowhere")
    assert code == 2
    assert "MS_DATABASE_URL" in output


@pytest.mark.parametrize("backend", BACKENDS)
async def test_migration_16_chains_the_events_written_before_once_in_their_order(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [  # as version 15 wrote them: no actor, no position; written out of order
        "INSERT INTO events VALUES ('user', '10', 2, 'user.deactivated', '1', '{}', 3000)",
        "INSERT INTO events VALUES ('user', '10', 1, 'user.machine.added', '1',"
        ' \'{"description":"","name":"n","user_name":"bot"}\', 1000)',
        "INSERT INTO events VALUES ('token', '20', 1, 'token.access.added', '1',"
        ' \'{"expires_at":9,"scope":"api","secret_id":"30","token_hash":"t","user_id":"10"}\', 2000)',
        "INSERT INTO events VALUES ('org', '1', 1, 'org.added', '1', '{\"name\":\"o\"}', 1000)",
    ]
    with contextlib.ExitStack() as stack, caplog.at_level(logging.INFO, "machinesecrets"):
        store = await store_at(stack, backend, tmp_path, 15, rows)
        try:
            assert "audit: migration 16 chained the 4 events written before it" in caplog.messages
            chained = await store.chain_rows(0, 10)
            # In the order (created_at, aggregate type, aggregate id, sequence).
            assert [(r["aggregate_type"], r["sequence"]) for r in chained] == [
                ("org", 1),
                ("user", 1),
                ("token", 1),
                ("user", 2),
            ]
            # Who made them is not known, and not guessed.
            assert {r["credential_kind"] for r in chained} == {"unknown"}
            assert {r["actor_user_id"] for r in chained} == {""}
            assert (await verified(store))[0] is None
            # A user's history finds its access token by the payload that names it.
            history = await store.user_audit_events("10", "1", 1 << 62, 10)
            assert [(e.event.aggregate_type, e.event.type) for e in history] == [
                ("user", "user.deactivated"),
                ("token", "token.access.added"),
                ("user", "user.machine.added"),
            ]
            # New events go on from there.
            await store.append([NewEvent("10", 3, "1", UserReactivated(), actor=ADMIN)])
            assert (await verified(store))[0] is None
            assert (await store.audit_head())[0] == 5
        finally:
            await store.close()


# -- an independent verifier, written from SECURITY.md's "Verifying the audit chain" alone ---------


def independent_verify(
    lines: list[str], kept_head: str = "", kept_chains: dict[str, str] | None = None
) -> str:
    """Checks an export as SECURITY.md describes, with nothing of the service's code: "" when
    every link holds, else what does not. kept_head and kept_chains: what the export before
    ended with (its last head_hash, each aggregate's last chain_hash), for one that starts later."""

    def sha256_hex(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    fields = ("aggregate_type", "aggregate_id", "sequence", "event_type", "resource_owner", "payload",
              "created_at", "actor_user_id", "actor_org_id", "credential_kind", "credential_id",
              "request_id", "peer", "transport")  # fmt: skip
    chains = dict(kept_chains or {})
    head, position = kept_head, None
    first_position = json.loads(lines[0])["position"] if lines else 1
    for number, line in enumerate(lines):
        event = json.loads(line)
        if position is not None and event["position"] != position + 1:
            return f"line {number}: position {event['position']} after {position}"
        position = event["position"]
        if event["previous_head_hash"] != head and (number > 0 or kept_head or event["position"] == 1):
            return f"position {position}: previous_head_hash"
        aggregate = f"{event['aggregate_type']}/{event['aggregate_id']}"
        # An aggregate's first event in a whole export comes after nothing.
        before = chains.get(aggregate, "" if first_position == 1 else None)
        if before is not None and event["previous_chain_hash"] != before:
            return f"position {position}: previous_chain_hash"
        canonical = json.dumps({name: event[name] for name in fields}, sort_keys=True, separators=(",", ":"))
        if event["chain_hash"] != sha256_hex(event["previous_chain_hash"] + "\n" + canonical):
            return f"position {position}: chain_hash"
        if event["head_hash"] != sha256_hex(event["previous_head_hash"] + "\n" + event["chain_hash"]):
            return f"position {position}: head_hash"
        chains[aggregate], head = event["chain_hash"], event["head_hash"]
    return ""


async def exported(store: Store, since: int) -> list[str]:
    out = io.StringIO()
    await export(store, since, out)
    return out.getvalue().splitlines()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_export_verifies_by_the_documented_algorithm_alone(backend: str, tmp_path: Path) -> None:
    async with opened(backend, tmp_path) as (store, _):
        await six_events(store)
        whole = await exported(store, 0)
        assert len(whole) == 6
        assert independent_verify(whole) == ""
        last = json.loads(whole[-1])
        assert (last["position"], last["head_hash"]) == await store.audit_head()
        # The export is each event whole, with its hashes: text as it was written.
        assert json.loads(whole[0])["payload"] == {"name": "Zoë 東京"}
        assert json.loads(whole[0])["credential_kind"] == "pat"
        # One that starts later checks against what the one before ended with.
        part = await exported(store, 3)
        kept_chains = {}
        for line in whole[:3]:
            event = json.loads(line)
            kept_chains[f"{event['aggregate_type']}/{event['aggregate_id']}"] = event["chain_hash"]
        assert independent_verify(part, json.loads(whole[2])["head_hash"], kept_chains) == ""
        assert part == whole[3:]
        # Any edit of an exported line is found.
        edits: list[Callable[[dict[str, Any]], None]] = [
            lambda e: e["payload"].update(name="Zoe"),
            lambda e: e.update(peer="198.51.100.1"),
            lambda e: e.update(sequence=2),
            lambda e: e.update(created_at=e["created_at"] + 1),
        ]
        for edit in edits:
            event = json.loads(whole[0])
            edit(event)
            assert independent_verify([json.dumps(event), *whole[1:]]) == "position 1: chain_hash"
        assert independent_verify([whole[0], *whole[2:]]).startswith("line 1: position 3 after 1")
        assert independent_verify(part, "0" * 64, kept_chains) == "position 4: previous_head_hash"
