"""The store contract, for every backend: what commands rely on when they append and read."""

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pytest

from server.app import log_look_alikes
from server.events.base import AGGREGATE_USER, NewEvent
from server.events.federation import (
    FederatedAccessTokenAdded,
    FederatedCredentialAdded,
    FederatedCredentialRemoved,
    TrustedIssuerAdded,
    TrustedIssuerRemoved,
)
from server.events.grant import UserGrantAdded
from server.events.org import OrgAdded, OrgMemberAdded
from server.events.project import (
    ApiAppAdded,
    ApiAppAuthMethodChanged,
    ApiAppSecretChanged,
    AppKeyAdded,
    AppKeyRemoved,
    AppRemoved,
    ProjectAdded,
    ProjectRemoved,
    ProjectRoleAdded,
)
from server.events.secret import SecretRevoked, SecretSet
from server.events.user import HumanUserAdded, MachineUserAdded, PatAdded, UserRemoved
from server.store import statements as sql
from server.store.codecs import FOREVER, from_micros
from server.store.contract import (
    SOURCE_OVERFLOW,
    ConcurrencyConflict,
    PatRecord,
    RevocationReportCount,
    Store,
    UniqueViolation,
)
from server.store.migrations import MIGRATIONS, legacy_secret_id
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from server.user_names import user_name_key
from tests import postgres
from tests.service import BACKENDS


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A new, empty store of each backend for every test."""
    if request.param == "sqlite":
        opened: Store = await SqliteStore.open(f"sqlite:///{tmp_path / 'contract.db'}")
        yield opened
        await opened.close()
        return
    with postgres.throwaway_database() as url:
        opened = await PostgresStore.open(url, pool_size=4)
        yield opened
        await opened.close()


def org_added(org_id: str) -> NewEvent:
    return NewEvent(org_id, 1, org_id, OrgAdded(f"org {org_id}"))


def machine_added(user_id: str, org_id: str, user_name: str) -> NewEvent:
    return NewEvent(user_id, 1, org_id, MachineUserAdded(user_name, "n", ""))


def human_added(user_id: str, org_id: str, user_name: str) -> NewEvent:
    return NewEvent(user_id, 1, org_id, HumanUserAdded(user_name, "d", f"{user_id}@example.com"))


def secret_set(user_id: str, org_id: str, sequence: int, hashed: str) -> NewEvent:
    secret = SecretSet(f"{user_id}{sequence}", hashed, f"lookup-{user_id}-{sequence}", "", None)
    return NewEvent(user_id, sequence, org_id, secret)


async def hashes(store: Store, user_id: str) -> list[str]:
    return [s.hash for s in await store.secrets(user_id)]


async def test_append_updates_the_read_models_in_the_same_step(store: Store) -> None:
    assert not await store.any_org()
    [stored] = await store.append([org_added("1")])
    org = await store.org("1")
    assert org is not None
    assert (org.name, org.sequence, org.created_at) == ("org 1", 1, stored.created_at)
    assert await store.any_org()
    await store.append([machine_added("10", "1", "Bot")])
    await store.append([secret_set("10", "1", 2, "$2b$04$hash")])
    user = await store.user("10")
    assert user is not None
    assert (user.org_id, user.user_name, user.type, user.sequence) == ("1", "Bot", "machine", 2)
    assert await hashes(store, "10") == ["$2b$04$hash"]
    assert user.secrets_live_until == FOREVER
    assert user.changed_at > user.created_at


async def test_events_come_back_in_order_with_their_payloads(store: Store) -> None:
    await store.append([org_added("1"), machine_added("10", "1", "bot")])
    for sequence in range(2, 6):
        await store.append([secret_set("10", "1", sequence, f"h{sequence}")])
    events = await store.events(AGGREGATE_USER, "10")
    assert [e.sequence for e in events] == [1, 2, 3, 4, 5]
    assert [e.type for e in events] == [MachineUserAdded.TYPE] + [SecretSet.TYPE] * 4
    assert events[-1].event == SecretSet("105", "h5", "lookup-10-5", "", None)
    assert all(e.resource_owner == "1" for e in events)


async def test_a_taken_sequence_is_a_conflict_and_writes_nothing(store: Store) -> None:
    await store.append([org_added("1"), machine_added("10", "1", "bot")])
    await store.append([secret_set("10", "1", 2, "first")])
    with pytest.raises(ConcurrencyConflict):
        # The second event of the batch conflicts: the first must not stay behind either.
        await store.append([machine_added("11", "1", "other"), secret_set("10", "1", 2, "second")])
    assert await store.user("11") is None
    user = await store.user("10")
    assert user is not None
    assert user.sequence == 2
    assert await hashes(store, "10") == ["first"]
    assert len(await store.events(AGGREGATE_USER, "10")) == 2


async def test_a_taken_user_name_is_a_unique_violation_and_writes_nothing(store: Store) -> None:
    await store.append([org_added("1"), machine_added("10", "1", "Bot")])
    with pytest.raises(UniqueViolation):
        await store.append([machine_added("11", "1", "bOT")])
    assert await store.user("11") is None
    assert await store.events(AGGREGATE_USER, "11") == []


async def test_roles_and_tokens(store: Store) -> None:
    await store.append(
        [
            org_added("1"),
            machine_added("10", "1", "bot"),
            NewEvent("1", 2, "1", OrgMemberAdded("10", ("ORG_OWNER", "IAM_OWNER"))),
            NewEvent("10", 2, "1", PatAdded("5", "abc", None)),
        ]
    )
    assert await store.member_roles("1", "10") == frozenset({"ORG_OWNER", "IAM_OWNER"})
    assert await store.member_roles("1", "11") is None
    caller = await store.caller("abc")
    assert caller is not None
    assert (caller.token.token_id, caller.token.user_id, caller.token.expires_at) == ("5", "10", None)
    assert (caller.org_id, caller.roles) == ("1", {"1": frozenset({"ORG_OWNER", "IAM_OWNER"})})
    assert await store.caller("abd") is None


async def test_federation_read_models_and_the_tokens_that_die_with_them(store: Store) -> None:
    issuer = "https://oidc.example.com"
    credential = FederatedCredentialAdded(
        "7", issuer, "system:serviceaccount:ci:a", "aud", "env", "prod", "d"
    )
    await store.append(
        [
            org_added("1"),
            machine_added("10", "1", "bot"),
            NewEvent("1", 2, "1", TrustedIssuerAdded("5", issuer, "", "", "lab")),
            NewEvent("10", 2, "1", credential),
            NewEvent("20", 1, "1", FederatedAccessTokenAdded("10", "hash-a", 4 * 10**15, "api", "7")),
        ]
    )
    [trusted] = await store.trusted_issuers("1")
    assert (trusted.issuer_id, trusted.issuer, trusted.jwks_uri, trusted.jwks) == ("5", issuer, "", "")
    assert await store.trusted_issuers("2") == []
    [kept] = await store.federated_credentials("10")
    assert (kept.credential_id, kept.subject, kept.claim_name, kept.claim_value) == (
        "7",
        credential.subject,
        "env",
        "prod",
    )
    assert kept.last_used_at is None
    await store.touch_federated_credential("7", 1_000_000, 0)
    [kept] = await store.federated_credentials("10")
    assert kept.last_used_at == from_micros(1_000_000)
    caller = await store.caller("hash-a")
    assert caller is not None
    assert caller.token.credential_id == "7"
    assert caller.secret_live_until is not None  # live while its credential is
    assert await store.personal_access_tokens("10") == []  # not a PAT
    # The issuer's trust ends: the access tokens its tokens earned end with it.
    await store.append([NewEvent("1", 3, "1", TrustedIssuerRemoved("5"))])
    assert await store.trusted_issuers("1") == []
    assert await store.caller("hash-a") is None
    await store.append(
        [NewEvent("21", 1, "1", FederatedAccessTokenAdded("10", "hash-b", 4 * 10**15, "api", "7"))]
    )
    await store.append([NewEvent("10", 3, "1", FederatedCredentialRemoved("7"))])
    assert await store.federated_credentials("10") == []
    assert await store.caller("hash-b") is None


async def test_failed_authentications_are_counted_per_key_and_forgotten(store: Store) -> None:
    keys = ("source-a", "client-b")
    seen = [await store.record_failure(keys, at, after_micros=0, forget_micros=0) for at in (100, 200, 300)]
    # Each note answers the failures noted before it.
    assert seen == [
        {},
        {"source-a": (1, 100), "client-b": (1, 100)},
        {"source-a": (2, 100), "client-b": (2, 100)},
    ]
    await store.record_failure(("source-a", "client-c"), 400, after_micros=0, forget_micros=0)
    assert await store.recent_failures(keys, after_micros=0) == {"source-a": (4, 100), "client-b": (3, 100)}
    assert await store.recent_failures(keys, after_micros=150) == {"source-a": (3, 200), "client-b": (2, 200)}
    assert await store.recent_failures(("nobody", "else"), after_micros=0) == {}
    # A later failure forgets those up to its window's start, of every key.
    await store.record_failure(("source-z", "client-z"), 500, after_micros=0, forget_micros=300)
    assert await store.recent_failures(keys, after_micros=0) == {"source-a": (1, 400)}
    assert await store.recent_failures(("source-z", "client-c"), after_micros=0) == {
        "source-z": (1, 500),
        "client-c": (1, 400),
    }


async def test_concurrent_failures_each_see_all_noted_before_them(store: Store) -> None:
    """The note and the look are one step: 20 at once see 0, 1, ..., 19 failures before them."""
    keys = ("source-burst", "client-burst")
    seen = await asyncio.gather(
        *(store.record_failure(keys, 1000 + n, after_micros=0, forget_micros=0) for n in range(20))
    )
    assert sorted(s.get("client-burst", (0, 0))[0] for s in seen) == list(range(20))


async def test_failures_noted_together_count_each(store: Store) -> None:
    """A revocation report notes one failure per candidate, in one step: a burst of them sees
    every candidate noted before it."""
    keys = ("source-report", "revocation")
    assert await store.record_failure(keys, 100, after_micros=0, forget_micros=0, count=3) == {}
    seen = await asyncio.gather(
        *(store.record_failure(keys, 200 + n, after_micros=0, forget_micros=0, count=4) for n in range(5))
    )
    assert sorted(s["source-report"][0] for s in seen) == [3, 7, 11, 15, 19]
    assert await store.recent_failures(keys, after_micros=0) == {
        "source-report": (23, 100),
        "revocation": (23, 100),
    }


HOUR_MICROS = 3_600_000_000


async def test_revocation_reports_are_counted_per_hour_and_source_within_a_cap(store: Store) -> None:
    def one(hour: int, source: str, candidates: int, revoked: int = 0) -> RevocationReportCount:
        return RevocationReportCount(hour * HOUR_MICROS, source, 1, candidates, revoked)

    for report in [one(10, "a", 3), one(10, "b", 1), one(10, "a", 2, 1), one(10, "c", 0), one(10, "d", 5)]:
        await store.count_revocation_report(report, max_sources=2, forget_before_micros=0)
    await store.count_revocation_report(one(10, "a", 1), max_sources=2, forget_before_micros=0)
    await store.count_revocation_report(one(11, "c", 7), max_sources=2, forget_before_micros=0)
    assert await store.revocation_report_counts() == [
        RevocationReportCount(10 * HOUR_MICROS, SOURCE_OVERFLOW, 2, 5, 0),
        RevocationReportCount(10 * HOUR_MICROS, "a", 3, 6, 1),
        RevocationReportCount(10 * HOUR_MICROS, "b", 1, 1, 0),
        RevocationReportCount(11 * HOUR_MICROS, "c", 1, 7, 0),
    ]
    # A report forgets the hours that start before the retention's start.
    await store.count_revocation_report(one(12, "a", 1), max_sources=2, forget_before_micros=11 * HOUR_MICROS)
    assert [
        (c.hour_start_micros // HOUR_MICROS, c.source) for c in await store.revocation_report_counts()
    ] == [
        (11, "c"),
        (12, "a"),
    ]


async def test_roles_of_a_user_in_every_organisation(store: Store) -> None:
    await store.append([org_added("1"), org_added("2"), machine_added("10", "1", "bot")])
    assert await store.roles_of("10") == {}
    for org, sequence, roles in (("1", 2, ["ORG_USER_MANAGER"]), ("2", 2, ["ORG_OWNER", "IAM_OWNER"])):
        await store.append([NewEvent(org, sequence, org, OrgMemberAdded("10", tuple(roles)))])
    assert await store.roles_of("10") == {
        "1": frozenset({"ORG_USER_MANAGER"}),
        "2": frozenset({"ORG_OWNER", "IAM_OWNER"}),
    }


async def test_members_of_an_organisation_by_user_id_with_their_users(store: Store) -> None:
    await store.append([org_added("1"), org_added("2")])
    for user_id, org in (("10", "1"), ("11", "2"), ("12", "1"), ("13", "1")):
        await store.append([machine_added(user_id, org, f"bot-{user_id}")])
    for sequence, user_id, roles in (
        (2, "12", ["ORG_OWNER"]),
        (3, "11", ["ORG_USER_MANAGER"]),
        (4, "10", ["IAM_OWNER"]),
    ):
        await store.append([NewEvent("1", sequence, "1", OrgMemberAdded(user_id, tuple(roles)))])

    def listed(members: Sequence[Any]) -> list[tuple[str, str, frozenset[str]]]:
        return [(m.user.id, m.user.org_id, m.roles) for m in members]

    every = listed(await store.members_page("1", "", "", 10))
    assert every == [
        ("10", "1", frozenset({"IAM_OWNER"})),
        ("11", "2", frozenset({"ORG_USER_MANAGER"})),  # a member from another organisation
        ("12", "1", frozenset({"ORG_OWNER"})),
    ]
    assert listed(await store.members_page("1", "", "10", 1)) == every[1:2]
    assert listed(await store.members_page("1", "", "", 10, offset=2)) == every[2:]
    assert listed(await store.members_page("1", "12", "", 10)) == every[2:]
    assert await store.members_page("1", "13", "", 10) == []  # a user of it, but no member
    assert (await store.member_count("1", ""), await store.member_count("1", "11")) == (3, 1)
    assert (await store.members_page("2", "", "", 10), await store.member_count("2", "")) == ([], 0)


# A database whose own collation is not code-point order: ICU's English puts "é" beside "e" and
# weighs "-" lightly.
ICU_DATABASE = "TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en' LOCALE 'C.UTF-8'"


@pytest.mark.parametrize("backend", [*BACKENDS, "postgres with an ICU collation"])
async def test_a_page_of_users_is_the_keys_of_a_prefix_and_type_in_code_point_order(
    backend: str, tmp_path: Path
) -> None:
    names = ["e", "e-b", "ea", "eb", "e\U00020000", "eé", "e中", "éa", "fa", "d\U00020000", "E-C"]
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            opened: Store = await SqliteStore.open(f"sqlite:///{tmp_path / 'prefix.db'}")
        else:
            options = ICU_DATABASE if "ICU" in backend else ""
            url = stack.enter_context(postgres.throwaway_database(options))
            opened = await PostgresStore.open(url, pool_size=2)
        stack.push_async_callback(opened.close)
        await opened.append([org_added("1"), org_added("2")])
        types = {}
        for n, name in enumerate(names):
            types[user_name_key(name)] = "human" if n % 3 == 0 else "machine"
            added = human_added if n % 3 == 0 else machine_added
            await opened.append([added(str(10 + n), "1", name)])
        await opened.append([machine_added("9", "2", "e-other-org")])

        async def listed(prefix: str, user_type: str, page: int) -> list[str]:
            keys: list[str] = []
            while True:
                after = keys[-1] if keys else ""
                found = await opened.users_page("1", prefix, user_type, after, page)
                keys += [user.user_name_key for user in found]
                if len(found) < page:
                    return keys

        every = sorted(types)  # Python's str order is code points'
        for prefix in ("", "e", "e-", "é", "d", "e\U00020000", "ez", "g"):
            for user_type in ("", "machine", "human"):
                expected = [k for k in every if k.startswith(prefix) and user_type in ("", types[k])]
                for page in (1, 2, 100):
                    assert await listed(prefix, user_type, page) == expected, (backend, prefix, page)


async def test_sqlite_reads_a_page_of_users_as_one_range_of_the_index_for_it(tmp_path: Path) -> None:
    """The planner's choice, which the bench showed it can get wrong (statements._users_page): with
    a type, a page read the organisation's every name, a third of a second a call at 200,000."""
    path = tmp_path / "plan.db"
    await (await SqliteStore.open(f"sqlite:///{path}")).close()
    with contextlib.closing(sqlite3.connect(path)) as connection:
        for statement, params, index in (
            (sql.SELECT_USERS_PAGE, ("1", "a", "b", "a", 21), "users_by_org_and_name"),
            (sql.SELECT_USERS_OF_TYPE_PAGE, ("1", "human", "a", "b", "a", 21), "users_by_org_type_and_name"),
        ):
            plan = [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statement}", params)]
            assert plan[0].startswith(f"SEARCH users USING INDEX {index} ("), plan
            assert "user_name_key>? AND user_name_key<?)" in plan[0], plan
            assert not any("TEMP B-TREE" in step for step in plan), plan  # no sort: the index's order


async def test_concurrent_appends_of_one_sequence_let_exactly_one_win(store: Store) -> None:
    await store.append([org_added("1"), machine_added("10", "1", "bot")])

    async def attempt(n: int) -> bool:
        try:
            await store.append([secret_set("10", "1", 2, f"h{n}")])
        except ConcurrencyConflict:
            return False
        return True

    results = await asyncio.gather(*(attempt(n) for n in range(20)))
    assert results.count(True) == 1
    assert [e.sequence for e in await store.events(AGGREGATE_USER, "10")] == [1, 2]


async def test_postgres_migrations_run_once_when_processes_start_together() -> None:
    with postgres.throwaway_database() as url:
        stores = await asyncio.gather(*(PostgresStore.open(url, pool_size=1) for _ in range(4)))
        try:
            with psycopg.connect(url) as connection:
                versions = [
                    r[0] for r in connection.execute("SELECT version FROM schema_migrations ORDER BY 1")
                ]
            assert versions == [version for version, _ in MIGRATIONS]
        finally:
            for opened in stores:
                await opened.close()


# What each earlier schema version held, written as the code of that version wrote it: an
# organisation with its admin, a machine user whose secret was set (and then set again), a PAT.
SECRET_SET = "'user.machine.secret.set', '1', '{\"hash\":\"$2b$04$%s\"}'"
ROWS_OF_VERSION_1 = [
    "INSERT INTO events VALUES ('org', '1', 1, 'org.added', '1', '{\"name\":\"default\"}', 1000)",
    "INSERT INTO events VALUES ('org', '1', 2, 'org.member.added', '1',"
    ' \'{"roles":["ORG_OWNER"],"user_id":"10"}\', 1000)',
    "INSERT INTO events VALUES ('user', '10', 1, 'user.machine.added', '1',"
    ' \'{"description":"","name":"n","user_name":"bot"}\', 1000)',
    f"INSERT INTO events VALUES ('user', '10', 2, {SECRET_SET % 'a'}, 2000)",
    "INSERT INTO events VALUES ('user', '10', 3, 'user.pat.added', '1',"
    ' \'{"expires_at":null,"token_hash":"abc","token_id":"5"}\', 3000)',
    f"INSERT INTO events VALUES ('user', '10', 4, {SECRET_SET % 'b'}, 4000)",
    "INSERT INTO orgs VALUES ('1', 'default', 2, 1000, 1000)",
    "INSERT INTO users (id, org_id, user_name, user_name_key, type, secret_hash, sequence, created_at,"
    " changed_at) VALUES ('10', '1', 'bot', 'bot', 'machine', '$2b$04$b', 4, 1000, 4000)",
    "INSERT INTO members VALUES ('1', '10', 'ORG_OWNER')",
    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at) VALUES ('abc', '5', '10', NULL)",
]
ROWS_OF_VERSION_2 = [
    *ROWS_OF_VERSION_1,
    "UPDATE users SET secret_sequence = 4",
    # Access tokens of the secret that holds, and of the one it replaced (dead already).
    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, secret_sequence)"
    " VALUES ('live', '6', '10', NULL, 4)",
    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, secret_sequence)"
    " VALUES ('dead', '7', '10', NULL, 2)",
]
ROWS_OF_VERSION_3 = [*ROWS_OF_VERSION_2, "INSERT INTO auth_failures VALUES ('an-old-key', 10)"]
ROWS_OF_VERSION = {
    1: ROWS_OF_VERSION_1,
    2: ROWS_OF_VERSION_2,
    3: ROWS_OF_VERSION_3,
    4: [*ROWS_OF_VERSION_3, "UPDATE tokens SET created_at = 3000"],
}


async def store_at(
    stack: contextlib.ExitStack,
    backend: str,
    folder: Path,
    version: int,
    statements: Sequence[str] = (),
    insert: str = "",
    rows: Sequence[tuple[Any, ...]] = (),
) -> Store:
    """A store as version `version` of the schema made it, holding what statements and the rows
    of insert put there, then opened (and so upgraded): on SQLite a file in folder, on PostgreSQL
    a throwaway database that stack drops."""
    schema = ["CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)"]
    for number, steps in MIGRATIONS[:version]:
        schema += [*steps, f"INSERT INTO schema_migrations VALUES ({number})"]
    schema += list(statements)
    if backend == "sqlite":
        path = folder / f"v{version}.db"
        with contextlib.closing(sqlite3.connect(path)) as db, db:
            for statement in schema:
                db.execute(statement)
            if rows:
                db.executemany(insert, rows)
        return await SqliteStore.open(f"sqlite:///{path}")
    url = stack.enter_context(postgres.throwaway_database())
    with psycopg.connect(url) as pg:
        for statement in schema:
            query: Any = statement.replace("%", "%%")  # fixed text, no parameters
            pg.execute(query)
        if rows:
            pg.cursor().executemany(insert.replace("?", "%s"), rows)
    return await PostgresStore.open(url, pool_size=2)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("version", sorted(ROWS_OF_VERSION))
async def test_a_store_of_each_earlier_version_upgrades_with_its_data(
    backend: str, version: int, tmp_path: Path
) -> None:
    assert version < MIGRATIONS[-1][0]
    with contextlib.ExitStack() as stack:
        store = await store_at(stack, backend, tmp_path, version, ROWS_OF_VERSION[version])
        try:
            user = await store.user("10")
            assert user is not None
            # Migration 2's backfill, then 6: the secret that holds is the one of the last
            # secret.set, now a secret of its own with an id, and its access tokens name it.
            assert (user.user_name, user.sequence, user.secrets_live_until) == ("bot", 4, FOREVER)
            # Migration 7: what the user was created with, beside it.
            assert (user.name, user.description, user.display_name, user.email) == ("n", "", "", "")
            [secret] = await store.secrets("10")
            assert (secret.hash, secret.lookup, secret.created_at) == ("$2b$04$b", None, from_micros(4000))
            assert secret.secret_id == legacy_secret_id("10", 4000)
            assert secret.secret_id.isdigit()
            caller = await store.caller("abc")
            assert caller is not None
            assert (caller.token.user_id, caller.token.secret_id, caller.roles) == (
                "10",
                None,
                {"1": frozenset({"ORG_OWNER"})},
            )
            if version >= 2:
                live = await store.caller("live")
                assert live is not None
                assert (live.token.secret_id, live.secret_live_until) == (secret.secret_id, FOREVER)
                assert await store.caller("dead") is None
            client = await store.client("bot", None)  # the legacy secret has no lookup key
            assert client is not None
            assert client.secret == secret
            assert [e.sequence for e in await store.events(AGGREGATE_USER, "10")] == [1, 2, 3, 4]
            # Migration 4: users are active, and a PAT's creation is its event's time.
            assert user.active
            assert await store.personal_access_tokens("10") == [PatRecord("5", from_micros(3000), None, None)]
            # Migration 3: the failure table, ready for use.
            assert await store.record_failure(("s", "c"), 5000, 0, 0) == {}
            assert await store.recent_failures(("s", "c"), 0) == {"s": (1, 5000), "c": (1, 5000)}
            # And the store takes new events on top of the old.
            await store.append([secret_set("10", "1", 5, "$2b$04$c")])
            assert await hashes(store, "10") == ["$2b$04$c"]
        finally:
            await store.close()


NAMES_BEFORE_PRECIS = {  # id: user name, as version 4 keyed them (casefold)
    "21": "Cafe\u0301",  # é decomposed: its new key is composed
    "22": "bot",
    "23": "\uff42\uff4f\uff54",  # fullwidth: its new key would be 'bot', which 22 holds
    "24": "Stra\u00dfe",
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_user_names_are_keyed_anew_by_precis(backend: str, tmp_path: Path) -> None:
    rows = [(user_id, name, name.casefold()) for user_id, name in NAMES_BEFORE_PRECIS.items()]
    insert = (
        "INSERT INTO users (id, org_id, user_name, user_name_key, type, sequence, created_at, changed_at)"
        " VALUES (?, '1', ?, ?, 'machine', 1, 0, 0)"
    )
    with contextlib.ExitStack() as stack:
        store = await store_at(stack, backend, tmp_path, 4, insert=insert, rows=rows)
        try:
            found = await store.user_by_name("caf\u00e9")  # composed
            assert found is not None
            assert found.id == "21"
            ascii_bot = await store.user_by_name("BOT")
            assert ascii_bot is not None
            assert ascii_bot.id == "22"  # the fullwidth one kept its old key: no collision
            strasse = await store.user_by_name("STRASSE")
            assert strasse is not None
            assert strasse.id == "24"
        finally:
            await store.close()


NAMES_BEFORE_SKELETONS = {  # id: (organisation, user name), oldest first
    "31": ("1", "cope770157"),
    "32": ("1", "\u0441\u043e\u0440\u0435770157"),  # all Cyrillic: looks like 31
    "33": ("2", "\u0391\u0392\u0395770157"),  # Greek capitals, in another organisation
    "34": ("1", "abe770157"),  # made after 33: looks like it
    "35": ("1", "unlike770157"),
}


@pytest.mark.parametrize("backend", BACKENDS)
async def test_look_alikes_made_before_skeletons_are_kept_listed_and_no_more_can_be_made(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        (user_id, org, name, user_name_key(name), n)
        for n, (user_id, (org, name)) in enumerate(NAMES_BEFORE_SKELETONS.items())
    ]
    insert = (
        "INSERT INTO users (id, org_id, user_name, user_name_key, type, sequence, created_at, changed_at)"
        " VALUES (?, ?, ?, ?, 'machine', 1, ?, 0)"
    )
    with contextlib.ExitStack() as stack:
        store = await store_at(stack, backend, tmp_path, 14, insert=insert, rows=rows)
        try:
            pairs = await store.look_alike_users()
            assert [(holder.id, kept.id) for holder, kept in pairs] == [("31", "32"), ("33", "34")]
            assert (pairs[1][0].org_id, pairs[1][1].org_id) == ("2", "1")
            # Both of each pair are served, each by its own name.
            for user_id, (_, name) in NAMES_BEFORE_SKELETONS.items():
                found = await store.user_by_name(name)
                assert found is not None
                assert found.id == user_id
            # And no third can be made, whichever it looks like.
            for n, name in enumerate(("c\u043epe770157", "COPE770157", "\u0430be770157", "ABE770157")):
                with pytest.raises(UniqueViolation):
                    await store.append([machine_added(f"4{n}", "1", name.replace("\u043e", "o"))])
            # The start-up log names each pair, one line each, the names escaped.
            with caplog.at_level(logging.WARNING, logger="machinesecrets"):
                await log_look_alikes(store)
            lines = [r.getMessage() for r in caplog.records if "look alike" in r.getMessage()]
            assert len(lines) == 2, lines
            assert "31 ('cope770157', organisation 1)" in lines[0]
            assert "32 ('\\u0441\\u043e\\u0440\\u0435770157', organisation 1)" in lines[0]
        finally:
            await store.close()


@pytest.mark.parametrize("mode", [None, "full"])
async def test_sqlite_acknowledges_a_write_only_after_its_fsync(mode: str | None, tmp_path: Path) -> None:
    """By default (and with MS_SQLITE_SYNC=full) every append returns only after an fsync of the
    WAL file that started after its commit: WAL with synchronous=NORMAL alone may lose
    acknowledged commits to a power loss."""
    path = tmp_path / "sync.db"
    store = await (
        SqliteStore.open(f"sqlite:///{path}")
        if mode is None
        else SqliteStore.open(f"sqlite:///{path}", synchronous=mode)
    )
    try:
        group = store._group
        assert group is not None
        await store.append([org_added("1")])
        for n in range(5):
            await store.append([machine_added(f"1{n}", "1", f"bot{n}")])
            assert group.synced == group.committed == n + 2
        assert group.flushes == 6
        # The descriptor it syncs is the WAL's own file.
        assert group._fd is not None
        assert os.path.samefile(f"/proc/self/fd/{group._fd}", path.with_name("sync.db-wal"))
    finally:
        await store.close()


async def test_sqlite_writes_that_wait_together_share_one_fsync(tmp_path: Path) -> None:
    """Group commit: concurrent appends (to different aggregates, so nothing else orders them)
    need far fewer fsyncs than appends, and each returns only once one covered it."""
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'group.db'}")
    try:
        group = store._group
        assert group is not None
        await store.append([org_added("1")])
        flushes_before = group.flushes

        async def add(n: int) -> None:
            before = group.committed  # this append's commit comes later, so it is numbered higher
            await store.append([machine_added(f"2{n}", "1", f"bot{n}")])
            assert group.synced > before  # an fsync covered it: nothing acknowledged early
            assert await store.user(f"2{n}") is not None

        await asyncio.gather(*(add(n) for n in range(64)))
        assert group.synced == group.committed == 65
        assert group.flushes - flushes_before < 64 / 4
    finally:
        await store.close()


async def test_sqlite_normal_mode_skips_the_fsync(tmp_path: Path) -> None:
    """MS_SQLITE_SYNC=normal: commits are acknowledged without waiting for the disk."""
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'fast.db'}", synchronous="normal")
    try:
        assert store._group is None
        await store.append([org_added("1")])
        assert store._connection.execute("PRAGMA synchronous").fetchone()[0] == 1
    finally:
        await store.close()


# Version 10 kept one event per revocation report (revocation.received), whatever it matched.
REPORTS_OF_VERSION_10 = [  # (aggregate type, id, sequence, type, payload, created_at)
    (
        "revocation",
        "r1",
        1,
        "revocation.received",
        '{"candidates":3,"source":"10.0.0.1"}',
        5 * HOUR_MICROS + 1,
    ),
    (
        "user",
        "u1",
        2,
        "user.machine.secret.revoked",
        '{"secret_id":"s1","source":"10.0.0.1"}',
        5 * HOUR_MICROS + 1,
    ),
    (
        "revocation",
        "r2",
        1,
        "revocation.received",
        '{"candidates":0,"source":"10.0.0.1"}',
        6 * HOUR_MICROS - 1,
    ),
    ("revocation", "r3", 1, "revocation.received", '{"candidates":100,"source":"::1"}', 6 * HOUR_MICROS),
    ("user", "u1", 1, "user.machine.added", '{"name":"n","user_name":"leaky"}', 1),
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_revocation_reports_of_version_10_become_counts(backend: str, tmp_path: Path) -> None:
    insert = "INSERT INTO events VALUES (?, ?, ?, ?, '', ?, ?)"
    with contextlib.ExitStack() as stack:
        store = await store_at(stack, backend, tmp_path, 10, insert=insert, rows=REPORTS_OF_VERSION_10)
        try:
            assert await store.revocation_report_counts() == [
                RevocationReportCount(5 * HOUR_MICROS, "10.0.0.1", 2, 3, 1),
                RevocationReportCount(6 * HOUR_MICROS, "::1", 1, 100, 0),
            ]
            for report in ("r1", "r2", "r3"):
                assert await store.events("revocation", report) == []
            revoked = [e.type for e in await store.events(AGGREGATE_USER, "u1")]
            assert revoked == [MachineUserAdded.TYPE, SecretRevoked.TYPE]
        finally:
            await store.close()


async def test_projects_roles_apps_and_grants_are_read_back_and_end_with_their_project(store: Store) -> None:
    """Migration 18's read models on each backend: a project is a snapshot with its sequence; its
    roles, applications (found by client id) and grants go with it, and a user's grants with the
    user."""
    project = "20"
    await store.append([org_added("1"), machine_added("10", "1", "Bot"), machine_added("11", "1", "Other")])
    await store.append([NewEvent(project, 1, "1", ProjectAdded("shop"))])
    await store.append(
        [
            NewEvent(project, 2, "1", ProjectRoleAdded("reader", "Reader", "g")),
            NewEvent(project, 3, "1", ApiAppAdded("30", "api", "30@20", "basic", "lookup", "$2b$04$hash")),
            NewEvent(project, 4, "1", ApiAppSecretChanged("30", "lookup2", "$2b$04$hash2")),
        ]
    )
    await store.append(
        [
            NewEvent("40", 1, "1", UserGrantAdded("10", project, ("reader",))),
            NewEvent("41", 1, "1", UserGrantAdded("11", project, ("reader",))),
        ]
    )
    found = await store.project(project)
    assert found is not None
    assert (found.org_id, found.name, found.sequence) == ("1", "shop", 4)
    assert [p.id for p in await store.projects("1")] == [project]
    assert [(r.key, r.display_name, r.group, r.sequence) for r in await store.project_roles(project)] == [
        ("reader", "Reader", "g", 2)
    ]
    app = await store.app_by_client_id("30@20")
    assert app is not None
    assert (app.app_id, app.secret_lookup, app.secret_hash, app.sequence) == (
        "30",
        "lookup2",
        "$2b$04$hash2",
        4,
    )
    assert [a.app_id for a in await store.apps(project)] == ["30"]
    assert [g.grant_id for g in await store.user_grants("1")] == ["40", "41"]
    grant = await store.user_grant("40")
    assert grant is not None
    assert (grant.user_id, grant.role_keys, grant.sequence) == ("10", frozenset({"reader"}), 1)
    await store.append([NewEvent("11", 2, "1", UserRemoved())])
    assert [g.grant_id for g in await store.user_grants("1")] == ["40"]
    await store.append([NewEvent(project, 5, "1", ProjectRemoved())])
    assert await store.project(project) is None
    assert (
        await store.apps(project),
        await store.project_roles(project),
        await store.grants_of_user("10"),
    ) == (
        [],
        [],
        [],
    )
    assert await store.app_by_client_id("30@20") is None


async def test_application_keys_are_read_back_and_end_with_their_application_and_project(
    store: Store,
) -> None:
    """Migration 22's read model on each backend: an application's keys, oldest first, its auth
    method changed (its secret with it), and its keys gone with it and with its project."""
    project = "20"
    await store.append([org_added("1"), NewEvent(project, 1, "1", ProjectAdded("shop"))])
    await store.append(
        [
            NewEvent(project, 2, "1", ApiAppAdded("30", "api", "30@20", "basic", "lookup", "$2b$04$hash")),
            NewEvent(project, 3, "1", ApiAppAuthMethodChanged("30", "private_key_jwt")),
            NewEvent(project, 4, "1", AppKeyAdded("30", "50", "PEM-50", "RSA", None)),
            NewEvent(project, 5, "1", AppKeyAdded("30", "51", "PEM-51", "EC", 7_000_000)),
            NewEvent(project, 6, "1", ApiAppAdded("31", "b", "31@20", "private_key_jwt", "", "")),
            NewEvent(project, 7, "1", AppKeyAdded("31", "52", "PEM-52", "RSA", None)),
        ]
    )
    app = await store.app_by_client_id("30@20")
    assert app is not None
    assert (app.auth_method, app.secret_lookup, app.secret_hash, app.sequence) == (
        "private_key_jwt",
        "",
        "",
        3,
    )
    keys = await store.app_keys("30")
    assert [(k.key_id, k.app_id, k.project_id, k.public_key, k.key_type) for k in keys] == [
        ("50", "30", project, "PEM-50", "RSA"),
        ("51", "30", project, "PEM-51", "EC"),
    ]
    assert (keys[0].expires_at, keys[1].expires_at is not None) == (None, True)
    await store.append([NewEvent(project, 8, "1", AppKeyRemoved("30", "50"))])
    assert [k.key_id for k in await store.app_keys("30")] == ["51"]
    await store.append([NewEvent(project, 9, "1", AppRemoved("30"))])
    assert (await store.app_keys("30"), [k.key_id for k in await store.app_keys("31")]) == ([], ["52"])
    await store.append([NewEvent(project, 10, "1", ProjectRemoved())])
    assert await store.app_keys("31") == []
