"""`POST /secrets/revoke`: a leaked secret, reported by whoever holds it, stops working at once. On
the HTTP port and through Envoy, on both stores; the answer is no oracle."""

import asyncio
import contextlib
import ipaddress
import os
import sqlite3
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import bcrypt
import grpc
import httpx
import psycopg
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.clock import SYSTEM_CLOCK, Clock, ShiftedClock
from server.domain import revocation
from server.domain.credentials import ASIDE_THREAD_NAME, LOWEST_PRIORITY
from server.domain.failure_limits import FailureLimits
from server.domain.secret_format import checksum, random_characters
from server.events.base import AGGREGATE_USER
from server.events.legacy import RevocationReceived
from server.events.secret import SecretRevoked
from server.store.contract import SOURCE_OVERFLOW
from server.transport.oauth import TOKEN_PATH
from server.transport.revocation_endpoint import REVOKE_PATH
from tests import postgres
from tests.api import GrpcApi, exchange, expect_error
from tests.service import BACKENDS, Running, config_for, own_service, start_service
from tests.world import World, unique_name

DOORS = ["http", "envoy"]


def base_url(running: Running, door: str) -> str:
    port = running.service.http_port if door == "http" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def world(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


async def report(base: str, body: Any, content_type: str = "application/json") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        if isinstance(body, bytes):
            return await http.post(base + REVOKE_PATH, content=body, headers={"content-type": content_type})
        return await http.post(base + REVOKE_PATH, json=body)


async def issued_secret(world: World) -> tuple[str, str, str]:
    """A machine user with one secret: its id, user name and secret."""
    name = unique_name("leaky")
    user_id = await world.machine_user(user_name=name)
    created: user_pb.CreateSecretResponse = await world.call(
        "CreateSecret", user_pb.CreateSecretRequest(user_id=user_id)
    )
    return user_id, name, created.client_secret


def well_formed() -> str:
    """A string of the msk_ format with a valid checksum: the checksum is public, so anyone can
    make as many as they like."""
    text = "msk_" + random_characters(55)
    return text + checksum(text)


def with_bad_checksum(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + ("0" if last != "0" else "1")


@contextlib.contextmanager
def counted_bcrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    real = bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        calls["checkpw"] += 1
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    yield calls


@pytest.mark.parametrize("door", DOORS)
async def test_a_reported_secret_stops_working_at_once(world: World, running: Running, door: str) -> None:
    user_id, name, secret = await issued_secret(world)
    _, bystander_name, bystander = await issued_secret(world)
    token_base = f"http://127.0.0.1:{running.service.http_port}"
    access = (await exchange(token_base, name, secret)).json()["access_token"]

    answer = await report(base_url(running, door), {"secrets": [secret, "not a secret at all"]})
    assert (answer.status_code, answer.json()) == (200, {"received": 2})
    assert answer.headers["cache-control"] == "no-store"
    refused = await exchange(token_base, name, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=access),
    )
    listed: user_pb.ListSecretsResponse = await world.call(
        "ListSecrets", user_pb.ListSecretsRequest(user_id=user_id)
    )
    assert list(listed.secrets) == []
    [*_, revoked] = await running.service.store.events(AGGREGATE_USER, user_id)
    assert revoked.type == SecretRevoked.TYPE
    assert isinstance(revoked.event, SecretRevoked)
    # The caller's address: through Envoy, the one it appended to X-Forwarded-For (what Envoy saw;
    # on some sandboxes' loopback that is not 127.0.0.1).
    source = ipaddress.ip_address(revoked.event.source)
    assert door == "envoy" or str(source) == "127.0.0.1"
    # Someone else's secret is untouched; reporting a revoked secret again changes nothing more.
    assert (await exchange(token_base, bystander_name, bystander)).status_code == 200
    again = await report(base_url(running, door), {"secrets": [secret]})
    assert (again.status_code, again.json()) == (200, {"received": 1})
    assert (await running.service.store.events(AGGREGATE_USER, user_id))[-1] == revoked
    assert secret.encode() not in running.raw_store()


@pytest.mark.parametrize("door", DOORS)
async def test_the_answer_is_the_same_whatever_matched(
    world: World, running: Running, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bcrypt check per well-formed string, against a dummy hash when nothing matches; none for
    a string whose checksum is wrong; each report counted, none kept as an event: the same answer
    in the same work."""
    _, _, live = await issued_secret(world)
    cases = {
        "live": [live],
        "well-formed, unknown": [well_formed()],
        "bad checksum": [with_bad_checksum(live)],
        "legacy-looking": [random_characters(64)],
    }
    answers, work = {}, {}
    before = sum(count.reports for count in await running.service.store.revocation_report_counts())
    for case, secrets in cases.items():
        with counted_bcrypt(monkeypatch) as calls:
            answer = await report(base_url(running, door), {"secrets": secrets})
        answers[case] = (answer.status_code, answer.text, answer.headers["content-type"])
        work[case] = calls["checkpw"]
    assert len(set(answers.values())) == 1, answers
    assert work == {"live": 1, "well-formed, unknown": 1, "bad checksum": 0, "legacy-looking": 0}
    after = sum(count.reports for count in await running.service.store.revocation_report_counts())
    assert after == before + len(cases)
    assert RevocationReceived.TYPE.encode() not in running.raw_store()


@pytest.mark.parametrize("door", DOORS)
async def test_bad_reports_are_refused_clearly(running: Running, door: str) -> None:
    base = base_url(running, door)
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        ({"secret": ["x"]}, 400, '{"secrets"'),
        ({"secrets": "msk_x"}, 400, "list of strings"),
        ({"secrets": [1]}, 400, "list of strings"),
        ({"secrets": []}, 400, "1 to 100"),
        ({"secrets": ["x"] * 101}, 400, "1 to 100"),
        ({"secrets": ["x" * 201]}, 400, "longer than 200"),
    ]
    for body, status, words in cases:
        answer = await report(base, body)
        assert (answer.status_code, answer.json()["error"]) == (status, "invalid_request"), body
        assert words in answer.json()["error_description"]
    answer = await report(base, b'{"secrets": ["x"]}', content_type="text/plain")
    assert answer.status_code == 415
    async with httpx.AsyncClient() as http:
        answer = await http.get(base + REVOKE_PATH)
    assert (answer.status_code, answer.json()["error"]) == (405, "invalid_request")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reports_are_limited_per_source(backend: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if backend == "postgres" else None
        limits = FailureLimits(per_client=1000, per_source=3, window_s=60)
        running = await start_service(
            config_for(tmp_path, database_url=url, envoy=True, failure_limits=limits)
        )
        try:
            for door in DOORS:  # each door sees its caller at its own address (see above)
                statuses = []
                for _ in range(4):
                    answer = await report(base_url(running, door), {"secrets": ["msk_" + "0" * 61]})
                    statuses.append(answer.status_code)
                assert statuses == [200, 200, 200, 429], door
                assert int(answer.headers["retry-after"]) >= 1
                assert answer.json()["error"] == "slow_down"
        finally:
            await running.service.stop(0)


# Each door's caller at an address of its own, so that each has an allowance of its own: the HTTP
# port sees the peer, and Envoy passes on the peer it saw (X-Forwarded-For).
DOOR_ADDRESSES = {"http": "127.0.0.41", "envoy": "127.0.0.42"}


@contextlib.asynccontextmanager
async def service(
    backend: str,
    folder: Path,
    limits: FailureLimits,
    bcrypt_cost: int = 4,
    clock: Clock = SYSTEM_CLOCK,
) -> AsyncIterator[Running]:
    """A service of its own (with Envoy) on backend: these tests spend its limits."""
    async with own_service(
        backend, folder, clock, envoy=True, failure_limits=limits, bcrypt_cost=bcrypt_cost
    ) as running:
        yield running


async def report_from(address: str, base: str, secrets: list[str]) -> httpx.Response:
    """A report sent from address (any of 127.0.0.0/8 is this machine's)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=60) as http:
        return await http.post(base + REVOKE_PATH, json={"secrets": secrets})


@pytest.mark.parametrize("backend", BACKENDS)
async def test_each_well_formed_candidate_counts_against_the_allowance(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The allowance (MS_SOURCE_FAILURE_LIMIT) is of bcrypt checks, not of reports: a source gets
    exactly that many candidates checked in a window, however it splits them; a report that does
    not fit is refused before any check, and costs nothing of the allowance."""
    limits = FailureLimits(per_client=1000, per_source=5, window_s=60)
    async with service(backend, tmp_path, limits) as running:
        for door, address in DOOR_ADDRESSES.items():
            base = base_url(running, door)
            three = [well_formed() for _ in range(3)]
            # Strings of the wrong checksum are no candidates, and a repeated one is one.
            steps = [
                ([*three, three[0], with_bad_checksum(three[1]), "x"], 200, 3),
                ([well_formed() for _ in range(3)], 429, 0),  # 3 + 3 > 5
                ([well_formed() for _ in range(2)], 200, 2),  # exactly 5
                ([well_formed()], 429, 0),
                (["not a secret"], 429, 0),  # a report counts one at least
            ]
            for secrets, status, checks in steps:
                with counted_bcrypt(monkeypatch) as calls:
                    answer = await report_from(address, base, secrets)
                assert (answer.status_code, calls["checkpw"]) == (status, checks), (door, len(secrets))
                if status == 429:
                    assert answer.json()["error"] == "slow_down"
                    assert int(answer.headers["retry-after"]) >= 1
            # More candidates than a whole window's allowance could never be checked: 400, not 429.
            with counted_bcrypt(monkeypatch) as calls:
                answer = await report_from(address, base, [well_formed() for _ in range(6)])
            assert (answer.status_code, answer.json()["error"], calls["checkpw"]) == (
                400,
                "invalid_request",
                0,
            )
            assert "at most 5 well-formed secrets" in answer.json()["error_description"]
        counts = await running.service.store.revocation_report_counts()
        assert {c.source: (c.reports, c.candidates) for c in counts} == {
            address: (2, 5) for address in DOOR_ADDRESSES.values()
        }


@dataclass
class BcryptLog:
    """Each bcrypt check: the string checked and the thread it ran on; and how many of the
    revocation's checks (any string but the token endpoint's) ran at once, at most."""

    token_secret: str
    checks: list[tuple[str, str, int]] = field(default_factory=list)
    reports_running: int = 0
    most_reports_running: int = 0


@contextlib.contextmanager
def logged_bcrypt(monkeypatch: pytest.MonkeyPatch, token_secret: str) -> Iterator[BcryptLog]:
    log, lock, real = BcryptLog(token_secret), threading.Lock(), bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        thread = threading.current_thread()
        for_report = password.decode() != log.token_secret
        with lock:
            log.checks.append((password.decode(), thread.name, threading.get_native_id()))
            if for_report:
                log.reports_running += 1
                log.most_reports_running = max(log.most_reports_running, log.reports_running)
        try:
            return real(password, hashed)
        finally:
            if for_report:
                with lock:
                    log.reports_running -= 1

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    yield log


async def token_latencies(base: str, client_id: str, secret: str, count: int) -> list[float]:
    """Seconds each of count token requests took, one after another on one connection."""
    latencies = []
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(count):
            started = time.perf_counter()
            answer = await http.post(base + TOKEN_PATH, data=form)
            latencies.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return latencies


async def hammer(address: str, base: str, answers: list[httpx.Response], stop: asyncio.Event) -> None:
    """Full reports from address, one after another on one connection, until stop (a few hundred
    at most); after a 429, again when its Retry-After says (the bcrypt work is the load here, not
    the number of requests)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(transport=transport, timeout=60) as http:
        for _ in range(400):
            if stop.is_set():
                return
            answer = await http.post(
                base + REVOKE_PATH, json={"secrets": [well_formed() for _ in range(100)]}
            )
            answers.append(answer)
            if answer.status_code == 429:
                await asyncio.sleep(int(answer.headers["retry-after"]))


# Serial: it compares the token endpoint's latency with and without the reports, which other
# tests running beside it would disturb.
@pytest.mark.serial
@pytest.mark.parametrize("backend", BACKENDS)
async def test_reports_from_many_addresses_never_take_the_token_endpoints_bcrypt(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Full reports from 12 addresses at once, again and again, on each door: their checks run one
    at a time on the one low-priority thread of their own, reports past one report's worth of
    waiting checks are refused at once without a check, and a good client's token requests keep
    their threads, and their latency. (Before, the reports' checks took every thread of the default
    executor, and the token requests waited for them and shared the CPUs with them.)"""
    limits = FailureLimits(per_client=1000, per_source=1000, window_s=60)
    async with service(backend, tmp_path, limits, bcrypt_cost=8) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        _, name, secret = await issued_secret(await World.create(api, running.admin_token))
        await api.close()
        for door in DOORS:
            base = base_url(running, door)
            await token_latencies(base, name, secret, 3)  # warm
            before = statistics.median(await token_latencies(base, name, secret, 20))
            answers: list[httpx.Response] = []
            stop = asyncio.Event()
            with logged_bcrypt(monkeypatch, secret) as log:
                addresses = [f"127.0.1.{n}" for n in range(1, 13)]
                hammering = [asyncio.create_task(hammer(a, base, answers, stop)) for a in addresses]
                await asyncio.sleep(0.2)  # the reports are in
                busy = statistics.median(await token_latencies(base, name, secret, 20))
                stop.set()
                await asyncio.gather(*hammering)
            after = statistics.median(await token_latencies(base, name, secret, 20))

            checked = sum(a.status_code == 200 for a in answers)
            refused = [a for a in answers if a.status_code == 429]
            assert checked, [a.status_code for a in answers]
            assert refused, [a.status_code for a in answers]
            assert {a.json()["error_description"] for a in refused} == {
                "too many reports at once; try again later"
            }
            report_checks = [(thread, tid) for text, thread, tid in log.checks if text != secret]
            token_threads = {thread for text, thread, _ in log.checks if text == secret}
            # Each accepted report's 100 checks, and none of a refused one's, on one thread of
            # their own, one at a time; the token endpoint's never on it.
            assert len(report_checks) == 100 * checked
            assert all(thread.startswith(ASIDE_THREAD_NAME) for thread, _ in report_checks)
            assert len({tid for _, tid in report_checks}) == 1
            assert log.most_reports_running == 1
            assert token_threads
            assert not any(thread.startswith(ASIDE_THREAD_NAME) for thread in token_threads)
            if sys.platform == "linux":
                assert os.getpriority(os.PRIO_PROCESS, report_checks[0][1]) == LOWEST_PRIORITY
            # Generous, for the machine is shared: idle is the slower of the medians before and after.
            idle = max(before, after)
            print(f"{door}: token median idle {idle * 1000:.1f} ms, under reports {busy * 1000:.1f} ms")
            assert busy < 3 * idle, (door, before, busy, after)


def event_rows(running: Running) -> int:
    """How many events the store holds, read from the database itself."""
    query = "SELECT COUNT(*) FROM events"
    if running.backend == "postgres":
        with psycopg.connect(running.config.database_url) as connection:
            row = connection.execute(query).fetchone()
    else:
        with contextlib.closing(sqlite3.connect(running.db_path)) as connection:
            row = connection.execute(query).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reports_are_counted_by_hour_and_source_not_kept(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """However many reports come, from however many addresses, what is kept of those that revoked
    nothing is at most one count per hour and source, for MAX_SOURCES_PER_HOUR sources an hour (the
    rest under "*"), and for REPORT_COUNT_RETENTION; what a report revoked stays an event."""
    monkeypatch.setattr(revocation, "MAX_SOURCES_PER_HOUR", 3)
    limits = FailureLimits(per_client=1000, per_source=1000, window_s=60)
    clock = ShiftedClock()
    async with service(backend, tmp_path, limits, clock=clock) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        user_id, _, secret = await issued_secret(await World.create(api, running.admin_token))
        await api.close()
        events = event_rows(running)
        addresses = [f"127.0.2.{n}" for n in range(1, 6)]
        sent: Counter[str] = Counter()
        for door in DOORS:
            for round_ in range(12):
                address = addresses[round_ % len(addresses)]
                secrets = [well_formed() for _ in range(1 + round_ % 3)] + ["not one"]
                answer = await report_from(address, base_url(running, door), secrets)
                assert answer.status_code == 200, answer.text
                sent[address] += 1
        # 24 reports that matched nothing: not one event more.
        assert event_rows(running) == events
        assert RevocationReceived.TYPE.encode() not in running.raw_store()
        counts = await running.service.store.revocation_report_counts()
        hours = {c.hour_start_micros for c in counts}
        assert len(hours) <= 2  # the hour may turn during the test
        by_source: Counter[str] = Counter()
        for count in counts:
            by_source[count.source] += count.reports
        assert sum(by_source.values()) == 24
        assert sum(c.candidates for c in counts) == sum(1 + n % 3 for n in range(12)) * 2
        assert len([c for c in counts if c.source != SOURCE_OVERFLOW]) <= 3 * len(hours)
        assert by_source[SOURCE_OVERFLOW] > 0 or len(hours) > 1  # 5 addresses, 3 places an hour
        # Each counted under its sender's address, through Envoy too (not Envoy's own).
        assert set(by_source) - {SOURCE_OVERFLOW} <= set(addresses), by_source

        # A report that revoked a secret: its event on the user, with the address Envoy saw, and
        # its count.
        answer = await report_from(addresses[0], base_url(running, "envoy"), [secret])
        assert answer.status_code == 200
        assert event_rows(running) == events + 1
        [*_, revoked] = await running.service.store.events(AGGREGATE_USER, user_id)
        assert isinstance(revoked.event, SecretRevoked)
        assert revoked.event.source == addresses[0]
        assert sum(c.revoked for c in await running.service.store.revocation_report_counts()) == 1

        # Past the retention, the counts of those hours are forgotten at the next report.
        clock.advance(revocation.REPORT_COUNT_RETENTION + timedelta(hours=2))
        answer = await report_from(addresses[1], base_url(running, "envoy"), [well_formed()])
        assert answer.status_code == 200
        [left] = await running.service.store.revocation_report_counts()
        assert (left.source, left.reports, left.candidates, left.revoked) == (addresses[1], 1, 1, 0)
        assert event_rows(running) == events + 1  # the revocation itself is kept


@pytest.mark.parametrize("backend", BACKENDS)
async def test_at_a_high_bcrypt_cost_fewer_reports_wait(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue of checks is bounded in time too: at cost 12 (about 0.3 s a check), 2 s of
    waiting work (MAX_PENDING_WORK, 10 s, made shorter here) is a handful of checks, not 100, so
    three reports of 5 at once cannot all wait. One whole report is always let in."""
    monkeypatch.setattr(revocation, "MAX_PENDING_WORK", timedelta(seconds=2))
    limits = FailureLimits(per_client=1000, per_source=5, window_s=60)
    async with service(backend, tmp_path, limits, bcrypt_cost=12) as running:
        for subnet, door in enumerate(DOORS, start=3):
            base = base_url(running, door)
            addresses = [f"127.0.{subnet}.{n}" for n in (1, 2, 3)]  # each with its allowance whole
            with counted_bcrypt(monkeypatch) as calls:
                answers = await asyncio.gather(
                    *(report_from(address, base, [well_formed() for _ in range(5)]) for address in addresses)
                )
            statuses = sorted(a.status_code for a in answers)
            assert statuses[0] == 200, statuses
            assert statuses[-1] == 429, statuses
            assert calls["checkpw"] == 5 * statuses.count(200)
