"""The guarantees that make several processes on one database safe, and a crash harmless.

Real server processes (`python -m server`), real PostgreSQL (a throwaway database), real gRPC
clients and the real token endpoint.
"""

import asyncio
import base64
import os
import resource
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.caller_cache import CALLER_CACHE_TTL_S
from server.events.base import AGGREGATE_USER, StoredEvent
from server.events.secret import SecretSet
from server.store.contract import Store
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from tests import postgres
from tests.api import ApiError, GrpcApi, exchange
from tests.processes import ServerProcess
from tests.world import World, unique_name

CLIENTS, CALLS = 8, 25
STORE_TIMEOUT_S = 3.0  # the bound docs/production.md promises for a store that is down
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


async def assert_no_gaps(store: Store, user_id: str) -> list[StoredEvent]:
    events = await store.events(AGGREGATE_USER, user_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    user = await store.user(user_id)
    assert user is not None
    assert user.sequence == len(events)  # the snapshot is exactly the events, nothing half-written
    return events


async def secrets_at_once(clients: list[World], user_id: str) -> list[user_pb.AddSecretResponse | ApiError]:
    """CLIENTS callers spread over the processes' clients, each making CALLS AddSecret calls on one
    user, all at once: every answer or error."""

    async def calls(world: World) -> list[user_pb.AddSecretResponse | ApiError]:
        outcomes: list[user_pb.AddSecretResponse | ApiError] = []
        for _ in range(CALLS):
            try:
                outcomes.append(await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id)))
            except ApiError as error:
                outcomes.append(error)
        return outcomes

    batches = await asyncio.gather(*(calls(clients[i % len(clients)]) for i in range(CLIENTS)))
    return [o for batch in batches for o in batch]


async def test_concurrent_add_secret_across_two_processes(pg_url: str, tmp_path: Path) -> None:
    processes = [await ServerProcess.start(pg_url, tmp_path, **NO_LIMITS) for _ in range(2)]
    store = await open_store(pg_url)
    try:
        async with worlds(processes, tmp_path) as clients:
            user_id = await clients[0].machine_user()

            outcomes = await secrets_at_once(clients, user_id)
            successes = [o for o in outcomes if not isinstance(o, ApiError)]
            failures = [o for o in outcomes if isinstance(o, ApiError)]
            assert all(f.code == grpc.StatusCode.ABORTED for f in failures), failures[:3]
            events = await assert_no_gaps(store, user_id)
            assert sum(e.type == SecretSet.TYPE for e in events) == len(successes)
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


async def test_a_rotation_in_one_process_holds_at_once_in_the_other(pg_url: str, tmp_path: Path) -> None:
    """Secrets of several processes on one PostgreSQL: a rotation or deletion made through one is
    what the token endpoint of the other decides by, at once, and last use is one value for both
    (noted once a minute, whichever process saw the use)."""
    processes = [await ServerProcess.start(pg_url, tmp_path, **NO_LIMITS) for _ in range(2)]
    try:
        async with worlds(processes, tmp_path) as (first, second):
            name = unique_name("rotated")
            user_id = await first.machine_user(user_name=name)
            old: user_pb.CreateSecretResponse = await first.call(
                "CreateSecret", user_pb.CreateSecretRequest(user_id=user_id)
            )
            assert await authenticates(processes[1].http_port, name, old.client_secret)
            span = user_pb.RotateSecretRequest(user_id=user_id)
            span.grace_period.FromSeconds(0)
            new: user_pb.RotateSecretResponse = await first.call("RotateSecret", span)
            assert not await authenticates(processes[1].http_port, name, old.client_secret)
            assert await authenticates(processes[1].http_port, name, new.client_secret)
            listed: user_pb.ListSecretsResponse = await first.call(
                "ListSecrets", user_pb.ListSecretsRequest(user_id=user_id)
            )
            used = {s.secret_id: s.last_used for s in listed.secrets}
            assert used[new.secret_id].seconds > 0  # used through the second, seen by the first
            assert await authenticates(processes[0].http_port, name, new.client_secret)
            again: user_pb.ListSecretsResponse = await second.call(
                "ListSecrets", user_pb.ListSecretsRequest(user_id=user_id)
            )
            assert {s.secret_id: s.last_used for s in again.secrets} == used  # one note a minute
            delete = user_pb.DeleteSecretRequest(user_id=user_id, secret_id=new.secret_id)
            await second.call("DeleteSecret", delete)
            assert not await authenticates(processes[0].http_port, name, new.client_secret)
    finally:
        for process in processes:
            await process.stop()


async def test_a_conflict_storm_is_answered_aborted_cleanly(pg_url: str, tmp_path: Path) -> None:
    """Three processes with no retry budget (MS_WRITE_ATTEMPTS=1) write one user at once: the
    losers of each race are ABORTED / CONCURRENT_MODIFICATION, and the store holds exactly the
    winners' events."""
    env = {"MS_WRITE_ATTEMPTS": "1"}
    processes = [await ServerProcess.start(pg_url, tmp_path, **env) for _ in range(3)]
    store = await open_store(pg_url)
    try:
        async with worlds(processes, tmp_path) as clients:
            user_id = await clients[0].machine_user()

            outcomes = await secrets_at_once(clients, user_id)
            aborted = [o for o in outcomes if isinstance(o, ApiError)]
            successes = [o for o in outcomes if not isinstance(o, ApiError)]
            assert aborted, "no conflict was forced"
            for error in aborted:
                assert (error.code, error.reason, error.message) == (
                    grpc.StatusCode.ABORTED,
                    "CONCURRENT_MODIFICATION",
                    "the object was changed concurrently; try again",
                )
            events = await assert_no_gaps(store, user_id)
            assert sum(e.type == SecretSet.TYPE for e in events) == len(successes)
    finally:
        await store.close()
        for process in processes:
            await process.stop()


async def test_two_iam_owners_switching_each_other_off_at_once_leave_one(pg_url: str, tmp_path: Path) -> None:
    """The admin and a second IAM_OWNER deactivate each other at the same moment, through two
    processes, round after round: never may both succeed, leaving the instance without one."""
    processes = [await ServerProcess.start(pg_url, tmp_path) for _ in range(2)]
    store = await open_store(pg_url)
    try:
        async with worlds(processes, tmp_path) as clients:
            admin = await store.user_by_name("admin")
            assert admin is not None
            second, second_token = await clients[0].caller(["IAM_OWNER"])
            tokens = {admin.id: clients[0].admin_token, second: second_token}

            async def deactivate(world: World, target: str, token: str) -> str:
                try:
                    await world.call(
                        "DeactivateUser", user_pb.DeactivateUserRequest(user_id=target), token=token
                    )
                except ApiError as error:
                    return error.reason
                return "OK"

            for _ in range(40):
                outcomes = await asyncio.gather(
                    deactivate(clients[0], second, tokens[admin.id]),
                    deactivate(clients[1], admin.id, tokens[second]),
                )
                assert outcomes.count("OK") == 1, outcomes
                assert set(outcomes) - {"OK"} <= {"LAST_IAM_OWNER", "TOKEN_INVALID"}, outcomes
                [left] = await store.active_iam_owners()
                gone = second if left == admin.id else admin.id
                await clients[0].call(
                    "ReactivateUser", user_pb.ReactivateUserRequest(user_id=gone), token=tokens[left]
                )
    finally:
        await store.close()
        for process in processes:
            await process.stop()


async def test_the_failure_limits_count_the_failures_of_every_process(pg_url: str, tmp_path: Path) -> None:
    # A guesser spreading attempts over the processes gets the per-source limit once, not once each.
    limits = {
        "MS_SOURCE_FAILURE_LIMIT": "4",
        "MS_CLIENT_FAILURE_LIMIT": "100",
        "MS_FAILURE_WINDOW": "60s",
        "MS_TRUSTED_PROXIES": "127.0.0.1",  # the test plays a proxy that names each source
    }
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


async def assert_store_unavailable(
    world: World, process: ServerProcess, user_id: str, issued: user_pb.AddSecretResponse
) -> None:
    """While the store is down: a write, a read and the token endpoint each fail cleanly, with the
    documented answer (the pool's timeout, 3 s, gives it: the gRPC deadline is 30 s, and the
    answer would be DEADLINE_EXCEEDED past it). Timed with ten times the bound, for a busy
    machine."""
    for method, request in [
        ("AddSecret", user_pb.AddSecretRequest(user_id=user_id)),
        ("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id)),
    ]:
        started = time.monotonic()
        with pytest.raises(ApiError) as caught:
            await world.call(method, request)
        assert time.monotonic() - started < 10 * STORE_TIMEOUT_S, method  # ten times: a busy machine
        error = caught.value
        assert (error.code, error.reason, error.message) == (
            grpc.StatusCode.UNAVAILABLE,
            "STORE_UNAVAILABLE",
            "the store is unavailable; try again",
        ), error
    started = time.monotonic()
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{process.http_port}/oauth/v2/token",
            data={"grant_type": "client_credentials"},
            auth=(issued.client_id, issued.client_secret),
        )
    assert time.monotonic() - started < 10 * STORE_TIMEOUT_S
    assert answer.status_code == 503, answer.text
    assert answer.json() == {"error": "temporarily_unavailable", "error_description": "try again"}


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


@pytest.mark.serial  # the other tests' PostgreSQL too
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
            issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
            await asyncio.to_thread(cluster, "stop")
            try:
                await assert_store_unavailable(world, process, user_id, issued)
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


async def test_an_sqlite_store_that_cannot_write(tmp_path: Path) -> None:
    """A full disk, made real for the server process alone: it may write no byte past the files'
    present size (RLIMIT_FSIZE; Python ignores SIGXFSZ, so the write fails with EFBIG). Writes are
    UNAVAILABLE with nothing half-written, and the service recovers when there is room again."""
    process = await ServerProcess.start(f"sqlite:///{tmp_path / 'ms.db'}", tmp_path, **NO_LIMITS)
    try:
        async with worlds([process], tmp_path) as [world]:
            user_id = await world.machine_user()
            issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
            # The soft limit only: without CAP_SYS_RESOURCE a lowered hard limit cannot go back up.
            resource.prlimit(process.pid, resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))
            try:
                started = time.monotonic()
                with pytest.raises(ApiError) as caught:
                    await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
                assert time.monotonic() - started < 10 * STORE_TIMEOUT_S
                assert (caught.value.code, caught.value.reason) == (
                    grpc.StatusCode.UNAVAILABLE,
                    "STORE_UNAVAILABLE",
                )
                # Issuing a token writes too; the answer is the token endpoint's own.
                async with httpx.AsyncClient() as http:
                    answer = await http.post(
                        f"http://127.0.0.1:{process.http_port}/oauth/v2/token",
                        data={"grant_type": "client_credentials"},
                        auth=(issued.client_id, issued.client_secret),
                    )
                assert (answer.status_code, answer.json()["error"]) == (503, "temporarily_unavailable")
                # Reads need no room.
                user = await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))
                assert user.user.details.sequence == 2
            finally:
                unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
                resource.prlimit(process.pid, resource.RLIMIT_FSIZE, unlimited)
            again = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
            assert again.details.sequence == 3  # the refused write left nothing behind
            assert await token_status(process.http_port, again.client_id, again.client_secret) == 200
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
            async with asyncio.timeout(60):
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


async def test_a_credential_that_dies_in_one_process_is_refused_by_the_other_within_the_bound(
    pg_url: str, tmp_path: Path
) -> None:
    """Each process keeps the callers it authenticated for at most CALLER_CACHE_TTL_S (1 s): a
    PAT removed, an access token whose secret is deleted, and a user deactivated through one
    process are refused by the other within that bound, and by the writing process at once."""
    processes = [await ServerProcess.start(pg_url, tmp_path, **NO_LIMITS) for _ in range(2)]
    try:
        async with worlds(processes, tmp_path) as (first, second):
            name = unique_name("cached")
            user_id = await first.machine_user(user_name=name)
            await first.grant(user_id, ["ORG_USER_MANAGER"])
            pat: user_pb.AddPersonalAccessTokenResponse = await first.call(
                "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id)
            )
            secret: user_pb.CreateSecretResponse = await first.call(
                "CreateSecret", user_pb.CreateSecretRequest(user_id=user_id)
            )
            access = await access_token(processes[0].http_port, name, secret.client_secret)
            other_user = await first.machine_user()
            await first.grant(other_user, ["ORG_USER_MANAGER"])
            other_pat = await first.token_for(other_user)
            remove_pat = user_pb.RemovePersonalAccessTokenRequest(user_id=user_id, token_id=pat.token_id)
            delete = user_pb.DeleteSecretRequest(user_id=user_id, secret_id=secret.secret_id)
            kills = [
                (pat.token, "RemovePersonalAccessToken", remove_pat),
                (access, "DeleteSecret", delete),
                (other_pat, "DeactivateUser", user_pb.DeactivateUserRequest(user_id=other_user)),
            ]
            for token, method, request in kills:
                assert await serves(second, token, user_id)  # now in the second process's cache
                assert await serves(first, token, user_id)
                await first.call(method, request)
                killed = time.monotonic()
                assert not await serves(first, token, user_id), method  # the writer: at once
                while await serves(second, token, user_id):
                    # Ten times the bound, for a busy machine; the bound itself is
                    # test_caller_cache.py's, on the cache's own clock.
                    assert time.monotonic() - killed < 10 * CALLER_CACHE_TTL_S, f"{method}: still served"
                    await asyncio.sleep(0.05)
    finally:
        for process in processes:
            await process.stop()


async def serves(world: World, token: str, user_id: str) -> bool:
    """Whether a call with the token is served; False when it is refused as UNAUTHENTICATED."""
    code = grpc.StatusCode.OK
    try:
        await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
    except ApiError as error:
        code = error.code
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED), code
    return code == grpc.StatusCode.OK


async def access_token(http_port: int, client_id: str, secret: str) -> str:
    answer = await exchange(f"http://127.0.0.1:{http_port}", client_id, secret)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])
