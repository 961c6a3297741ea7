"""MS_WORKERS: several server processes on the shared ports behind one Envoy, on a real PostgreSQL.
Both workers answer calls; a worker killed is started again and the log says so, while calls go
on; /metrics sums every worker's counts, at every scrape, and keeps a killed worker's counts in
the sums after it is started again; SIGTERM stops them all and exits 0. (SQLite refuses MS_WORKERS > 1:
tests/test_server.py.)"""

import asyncio
import json
import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb
from machinesecrets.v1 import user_service_pb2_grpc

from tests import postgres
from tests.processes import ServerProcess
from tests.test_observability import value
from tests.test_tls import der, served_certificate
from tests.tls_files import make_ca, server_files

ADD = "/machinesecrets.v1.UserService/AddMachineUser"


def workers_of(supervisor: int) -> set[int]:
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return {int(pid) for pid in children if b"server.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def calls(process: ServerProcess, admin: str, count: int, prefix: str) -> None:
    """count calls through Envoy (JSON) and as many over direct gRPC, each on a new connection:
    the kernel spreads connections over the workers."""
    auth = {"authorization": f"Bearer {admin}"}
    for i in range(count):
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"http://127.0.0.1:{process.envoy_port}/users/machine",
                json={"userName": f"{prefix}-json-{i}", "name": "W"},
                headers=auth,
            )
            assert answer.status_code == 200, answer.text
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
            request = user_pb.AddMachineUserRequest(user_name=f"{prefix}-grpc-{i}", name="W")
            await user_service_pb2_grpc.UserServiceStub(channel).AddMachineUser(
                request, metadata=tuple(auth.items()), timeout=10
            )


def serving_pids(process: ServerProcess) -> set[int]:
    return set(added_by(process))


def added_by(process: ServerProcess) -> Counter[int]:
    """How many users each process added, by its access lines."""
    lines = [json.loads(line) for line in process.log if line.startswith("{")]
    return Counter(
        line["pid"]
        for line in lines
        if line["logger"] == "machinesecrets.access" and line["code"] == "OK" and line["method"] == ADD
    )


async def scraped_sum_is(process: ServerProcess, pids: set[int]) -> None:
    """Waits until every one of 5 scrapes shows the users that the processes pids added, summed
    over them, and says that both workers answered. (A worker writes its access line and counts a
    call just after it answered: until then the two may differ.)"""
    async with asyncio.timeout(10):
        while True:
            expected = sum(count for pid, count in added_by(process).items() if pid in pids)
            scrapes = [await scrape(process) for _ in range(5)]
            # (A worker started again answers once it listens: until then the sum holds its
            # last answer, and one worker is said to have answered.)
            if all(
                value(s, "machinesecrets_calls_total", method=ADD, code="OK") == expected
                and value(s, "machinesecrets_workers_scraped") == 2
                for s in scrapes
            ):
                return
            await asyncio.sleep(0.2)


async def scrape(process: ServerProcess) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{process.metrics_port}/metrics")
    assert answer.status_code == 200
    return answer.text


async def test_workers_share_the_ports_and_a_killed_one_comes_back(pg_url: str, tmp_path: Path) -> None:
    process = await ServerProcess.start(
        pg_url, tmp_path, MS_WORKERS="2", MS_ENVOY_ADDR="127.0.0.1:0", MS_LOG_FORMAT="json"
    )
    try:
        admin = (tmp_path / "admin.pat").read_text().strip()
        workers = workers_of(process.pid)
        assert len(workers) == 2
        await calls(process, admin, 20, "before")
        assert serving_pids(process) == workers  # both took calls
        # Every scrape is the sum of both workers' counts, whichever took the calls.
        await scraped_sum_is(process, workers)
        killed = min(workers)
        os.kill(killed, signal.SIGKILL)
        await process.wait_for_log(f"(pid {killed}) exited with code -9: started it again")
        await calls(process, admin, 10, "after")  # Envoy sends them to whichever answers
        now = workers_of(process.pid)
        assert len(now) == 2
        assert killed not in now
        # The one started again counts from naught, and the sum keeps what the killed one had
        # counted: it never goes down.
        await scraped_sum_is(process, workers | now)

        assert await process.stop() == 0
        await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in now | workers)
    finally:
        if process.alive:
            await process.kill()


async def test_sighup_renews_the_certificate_of_every_worker(pg_url: str, tmp_path: Path) -> None:
    """SIGHUP to the supervisor: its Envoy and metrics port, and every worker's ports, serve the
    renewed certificate to new connections (ten of them: the kernel spreads them over workers)."""
    ca = make_ca(tmp_path)
    first = server_files(ca, tmp_path)
    process = await ServerProcess.start(
        pg_url,
        tmp_path,
        MS_WORKERS="2",
        MS_ENVOY_ADDR="127.0.0.1:0",
        MS_TLS_CERT_FILE=str(first.cert_file),
        MS_TLS_KEY_FILE=str(first.key_file),
    )
    try:
        renewed = server_files(ca, tmp_path, prefix="renewed")
        os.replace(renewed.cert_file, first.cert_file)
        os.replace(renewed.key_file, first.key_file)
        os.kill(process.pid, signal.SIGHUP)
        await process.wait_for_log("TLS certificate reloaded")
        ports = [process.grpc_port, process.http_port, process.envoy_port, process.metrics_port]
        async with asyncio.timeout(15):
            while True:
                served = [await asyncio.to_thread(served_certificate, port, ca) for port in ports * 10]
                if set(served) == {der(renewed.cert)}:
                    break
                await asyncio.sleep(0.1)
        assert await process.stop() == 0
    finally:
        if process.alive:
            await process.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url
