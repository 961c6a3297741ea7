"""MS_WORKERS: several server processes on the shared ports behind one Envoy, on a real PostgreSQL.
Both workers answer calls; a worker killed is started again and the log says so, while calls go
on; /metrics is one worker's, the same one's at every scrape, on a port that stays when that worker
is started again; SIGTERM stops them all and exits 0. (SQLite refuses MS_WORKERS > 1:
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


async def metrics_worker(process: ServerProcess, workers: set[int]) -> int:
    """The one worker told to serve the metrics (the others are told "off"), once every one of 10
    scrapes shows its count of added users. (A worker writes its access line and counts a call
    just after it answered: until then the two may differ.)"""
    serving = [
        pid for pid in workers if b"--metrics-addr\x00off" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(serving) == 1, serving
    async with asyncio.timeout(10):
        while {await scraped_adds(process) for _ in range(10)} != {added_by(process)[serving[0]]}:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
    return serving[0]


async def scraped_adds(process: ServerProcess) -> float:
    """The count the metrics port shows; -1 while nothing listens there (a worker that serves the
    metrics, started again, binds the port last: until then a scrape is refused)."""
    async with httpx.AsyncClient() as http:
        try:
            answer = await http.get(f"http://127.0.0.1:{process.metrics_port}/metrics")
        except httpx.ConnectError:
            return -1
    assert answer.status_code == 200
    return value(answer.text, "machinesecrets_calls_total", method=ADD, code="OK")


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
        # Every scrape is the same worker's: the first's, whose own count it is.
        killed = await metrics_worker(process, workers)  # the one that serves the metrics
        os.kill(killed, signal.SIGKILL)
        await process.wait_for_log(f"(pid {killed}) exited with code -9: started it again")
        await calls(process, admin, 10, "after")  # Envoy sends them to whichever answers
        now = workers_of(process.pid)
        assert len(now) == 2
        assert killed not in now
        # Started again, it serves them on the same port, counting from naught.
        assert await metrics_worker(process, now) not in workers

        assert await process.stop() == 0
        await asyncio.sleep(0.1)
        assert not any(alive(pid) for pid in now | workers)
    finally:
        if process.alive:
            await process.kill()


@pytest.fixture
def pg_url() -> Iterator[str]:
    with postgres.throwaway_database() as url:
        yield url
