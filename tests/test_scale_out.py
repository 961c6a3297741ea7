"""The guarantees that make several processes on one database safe, and a crash harmless.

Real server processes (`python -m server`), real PostgreSQL (a throwaway database), real gRPC
clients and the real token endpoint.
"""

import asyncio
import base64
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.store import events as ev
from server.store.base import Store
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests import postgres
from tests.api import ApiError, GrpcApi
from tests.processes import ServerProcess
from tests.world import World, unique_name

CLIENTS, CALLS = 8, 25
# For tests that fail authentication on purpose from one address: the limits are not their subject.
NO_LIMITS = {"MS_SOURCE_FAILURE_LIMIT": "100000", "MS_CLIENT_FAILURE_LIMIT": "100000"}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url


@contextmanager
def database(backend: str, folder: Path) -> Iterator[str]:
    if backend == "postgres":
        with postgres.throwaway_database() as url:
            yield url
    else:
        yield f"sqlite:///{folder / 'ms.db'}"


async def open_store(url: str) -> Store:
    return await (PostgresStore.open(url, 2) if url.startswith("postgresql") else SqliteStore.open(url))


@asynccontextmanager
async def worlds(processes: list[ServerProcess], folder: Path) -> AsyncIterator[list[World]]:
    """An admin client of each process."""
    apis = [GrpcApi("grpc", f"127.0.0.1:{p.grpc_port}") for p in processes]
    admin_token = (folder / "admin.pat").read_text().strip()
    try:
        yield [await World.create(api, admin_token) for api in apis]
    finally:
        for api in apis:
            await api.close()


async def token_status(http_port: int, client_id: str, secret: str, source: str | None = None) -> int:
    """The HTTP status of a token request (from source, as a proxy on this host would name it)."""
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = {"authorization": f"Basic {basic}", **({"x-forwarded-for": source} if source else {})}
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{http_port}/oauth/v2/token",
            data={"grant_type": "client_credentials"},
            headers=headers,
        )
    return answer.status_code


async def authenticates(http_port: int, client_id: str, secret: str) -> bool:
    status = await token_status(http_port, client_id, secret)
    assert status in (200, 401), status
    return status == 200


async def assert_no_gaps(store: Store, user_id: str) -> list[ev.StoredEvent]:
    events = await store.events(ev.AGGREGATE_USER, user_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    user = await store.user(user_id)
    assert user is not None
    assert user.sequence == len(events)  # the snapshot is exactly the events, nothing half-written
    return events


async def test_concurrent_add_secret_across_two_processes(pg_url: str, tmp_path: Path) -> None:
    processes = [await ServerProcess.start(pg_url, tmp_path, **NO_LIMITS) for _ in range(2)]
    store = await open_store(pg_url)
    try:
        async with worlds(processes, tmp_path) as clients:
            user_id = await clients[0].machine_user()

            async def calls(world: World) -> list[user_pb.AddSecretResponse | ApiError]:
                outcomes: list[user_pb.AddSecretResponse | ApiError] = []
                for _ in range(CALLS):
                    try:
                        outcomes.append(
                            await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
                        )
                    except ApiError as error:
                        outcomes.append(error)
                return outcomes

            batches = await asyncio.gather(*(calls(clients[i % 2]) for i in range(CLIENTS)))
            outcomes = [o for batch in batches for o in batch]
            successes = [o for o in outcomes if not isinstance(o, ApiError)]
            failures = [o for o in outcomes if isinstance(o, ApiError)]
            assert all(f.code == grpc.StatusCode.ABORTED for f in failures), failures[:3]
            events = await assert_no_gaps(store, user_id)
            assert sum(e.type == ev.USER_MACHINE_SECRET_SET for e in events) == len(successes)
            assert sorted(s.details.sequence for s in successes) == list(range(2, len(events) + 1))
            last = max(successes, key=lambda s: s.details.sequence)
            port = processes[1].http_port
            results = await asyncio.gather(
                *(authenticates(port, s.client_id, s.client_secret) for s in successes)
            )
            assert [s for s, ok in zip(successes, results, strict=True) if ok] == [last]
    finally:
        await store.close()
        for process in processes:
            await process.stop()


async def test_the_failure_limits_count_the_failures_of_every_process(pg_url: str, tmp_path: Path) -> None:
    # A guesser spreading attempts over the processes gets the per-source limit once, not once each.
    limits = {"MS_SOURCE_FAILURE_LIMIT": "4", "MS_CLIENT_FAILURE_LIMIT": "100", "MS_FAILURE_WINDOW": "60s"}
    processes = [await ServerProcess.start(pg_url, tmp_path, **limits) for _ in range(2)]
    try:
        async with worlds(processes, tmp_path) as clients:
            issued = await clients[0].call(
                "AddSecret", user_pb.AddSecretRequest(user_id=await clients[0].machine_user())
            )

            async def attempt(process: ServerProcess, secret: str, source: str) -> int:
                return await token_status(process.http_port, issued.client_id, secret, source)

            for i in range(4):  # two failures on each process
                assert await attempt(processes[i % 2], "guess", "203.0.113.7") == 401
            for process in processes:  # each saw two: only together do they reach four
                assert await attempt(process, issued.client_secret, "203.0.113.7") == 429
                assert await attempt(process, issued.client_secret, "198.51.100.7") == 200
    finally:
        for process in processes:
            await process.stop()


async def test_a_burst_of_guesses_over_two_processes_gets_the_limit_once(pg_url: str, tmp_path: Path) -> None:
    """50 concurrent guesses for one client from one address, spread over two processes: exactly
    the per-client limit (10, the default) is answered 401, the rest 429."""
    processes = [await ServerProcess.start(pg_url, tmp_path) for _ in range(2)]
    try:
        async with worlds(processes, tmp_path) as clients:
            issued = await clients[0].call(
                "AddSecret", user_pb.AddSecretRequest(user_id=await clients[0].machine_user())
            )
            statuses = await asyncio.gather(
                *(token_status(processes[i % 2].http_port, issued.client_id, f"guess-{i}") for i in range(50))
            )
            assert sorted(statuses) == [401] * 10 + [429] * 40
    finally:
        for process in processes:
            await process.stop()


async def test_a_user_name_taken_by_two_processes_at_once(pg_url: str, tmp_path: Path) -> None:
    processes = [await ServerProcess.start(pg_url, tmp_path) for _ in range(2)]
    try:
        async with worlds(processes, tmp_path) as clients:
            for _ in range(20):
                name = unique_name("race")
                request = user_pb.AddMachineUserRequest(user_name=name, name="racer")
                outcomes = await asyncio.gather(
                    *(w.call("AddMachineUser", request) for w in clients), return_exceptions=True
                )
                winners = [o for o in outcomes if not isinstance(o, BaseException)]
                losers = [o for o in outcomes if isinstance(o, BaseException)]
                assert len(winners) == 1, outcomes
                assert [(e.code, e.reason) for e in losers if isinstance(e, ApiError)] == [
                    (grpc.StatusCode.ALREADY_EXISTS, "USER_NAME_TAKEN")
                ]
    finally:
        for process in processes:
            await process.stop()


def cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    mode = ["-m", "fast"] if action == "stop" else []
    command = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action, *mode]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


def can_control_cluster() -> str | None:
    if shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir():
        return "no pg_ctlcluster to stop and start PostgreSQL"
    if os.geteuid() != 0:
        return "stopping PostgreSQL needs root"
    return None


async def test_postgres_stopped_while_serving(pg_url: str, tmp_path: Path) -> None:
    reason = can_control_cluster()
    if reason is not None:
        if os.environ.get("MS_REQUIRE_POSTGRES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    process = await ServerProcess.start(pg_url, tmp_path)
    try:
        async with worlds([process], tmp_path) as [world]:
            user_id = await world.machine_user()
            await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
            await asyncio.to_thread(cluster, "stop")
            try:
                for method, request in [
                    ("AddSecret", user_pb.AddSecretRequest(user_id=user_id)),
                    ("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id)),
                ]:
                    # Fails, and fails fast: the gRPC deadline (30 s) is far from reached.
                    with pytest.raises(ApiError) as caught:
                        await world.call(method, request)
                    assert caught.value.code == grpc.StatusCode.UNAVAILABLE, caught.value
            finally:
                await asyncio.to_thread(cluster, "start")
            # Back: calls succeed again without a restart (the pool reconnects).
            async with asyncio.timeout(60):
                while True:
                    try:
                        issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
                        break
                    except ApiError as error:  # until the pool has reconnected
                        if error.code != grpc.StatusCode.UNAVAILABLE:
                            raise
                        await asyncio.sleep(0.2)
            assert issued.details.sequence == 3  # the refused call wrote nothing
            store = await open_store(pg_url)
            try:
                await assert_no_gaps(store, user_id)
            finally:
                await store.close()
    finally:
        await process.stop()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_process_killed_during_writes_loses_nothing_it_acknowledged(
    backend: str, tmp_path: Path
) -> None:
    with database(backend, tmp_path) as url:
        process = await ServerProcess.start(url, tmp_path)
        acknowledged: dict[str, user_pb.AddSecretResponse] = {}
        users: list[str] = []
        async with worlds([process], tmp_path) as [world]:
            users = [await world.machine_user() for _ in range(120)]

            async def writer(mine: list[str], enough: asyncio.Event) -> None:
                for user_id in mine:
                    try:
                        answer = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
                    except ApiError:
                        return  # the server is gone
                    acknowledged[user_id] = answer
                    if len(acknowledged) >= 40:
                        enough.set()

            enough = asyncio.Event()
            writers = [asyncio.create_task(writer(users[i::CLIENTS], enough)) for i in range(CLIENTS)]
            await enough.wait()
            await process.kill()  # SIGKILL, in the middle of the load
            await asyncio.gather(*writers)
        assert 40 <= len(acknowledged) < len(users), "the kill should land in the middle of the load"

        restarted = await ServerProcess.start(url, tmp_path)
        store = await open_store(url)
        try:
            results = await asyncio.gather(
                *(
                    authenticates(restarted.http_port, a.client_id, a.client_secret)
                    for a in acknowledged.values()
                )
            )
            assert all(results)
            for user_id in users:
                events = await assert_no_gaps(store, user_id)
                assert len(events) in (1, 2)
                if user_id in acknowledged:
                    assert len(events) == 2
        finally:
            await store.close()
            await restarted.stop()
