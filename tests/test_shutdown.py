"""SIGTERM (or Ctrl-C's SIGINT) in the middle of steady load, on every transport, against a real
`python -m server` with its Envoy: every call the service had accepted completes with its real answer, new
connections are refused at once, and the process exits 0 within MS_SHUTDOWN_GRACE.

Which calls the service accepted, it says itself: each call carries a request id of its own, and
the service writes one access line per call it took (JSON log format). bcrypt at cost 12 makes
each AddSecret and token request take a good part of a second under this load, so that calls are
surely in flight when the signal comes.
"""

import asyncio
import base64
import functools
import json
import signal
import socket
import sqlite3
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.transport.oauth import TOKEN_PATH
from tests.api import Api, ApiError, ConnectApi, GrpcApi, GrpcWebApi, JsonApi
from tests.processes import ServerProcess, start_with_envoy

GRACE_S = 10


@dataclass
class Sent:
    request_id: str
    sent: float
    answered: float = 0.0
    outcome: str = ""  # "ok" (the real answer), or how it failed


@dataclass
class Worker:
    name: str
    call: Callable[[str], Awaitable[str]]  # one call with this request id: "ok", or how it failed
    calls: list[Sent] = field(default_factory=list)

    @property
    def in_flight_since(self) -> float | None:
        return self.calls[-1].sent if self.calls and not self.calls[-1].outcome else None


async def run(worker: Worker, stop_at: list[float]) -> None:
    while not stop_at or time.monotonic() < stop_at[0]:
        call = Sent(str(uuid.uuid4()), time.monotonic())
        worker.calls.append(call)
        try:
            outcome = await worker.call(call.request_id)
        except ApiError as error:
            outcome = error.code.name
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError):
            outcome = "refused"
        call.answered, call.outcome = time.monotonic(), outcome
        if outcome != "ok":
            await asyncio.sleep(0.05)


async def refuses_connections(port: int, within_s: float) -> bool:
    """Whether a new connection to port is refused, at once or within within_s."""
    deadline = time.monotonic() + within_s
    while True:
        with socket.socket() as probe:
            probe.settimeout(1)
            try:
                probe.connect(("127.0.0.1", port))
            except ConnectionRefusedError:
                return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_a_stop_under_load_finishes_what_was_accepted(tmp_path: Path, signum: signal.Signals) -> None:
    process, admin = await start_with_envoy(
        tmp_path, MS_BCRYPT_COST="12", MS_SHUTDOWN_GRACE=f"{GRACE_S}s", MS_LOG_FORMAT="json"
    )
    try:
        await load_then_stop(process, admin, signum)
    finally:
        if process.alive:  # the test failed before the signal: nothing is left running
            await process.kill()


async def load_then_stop(process: ServerProcess, admin: str, signum: signal.Signals) -> None:
    grpc_direct, envoy = f"127.0.0.1:{process.grpc_port}", f"127.0.0.1:{process.envoy_port}"
    web = f"http://127.0.0.1:{process.http_port}"
    auth = [("authorization", f"Bearer {admin}")]
    apis: list[Api] = [
        GrpcApi("grpc", grpc_direct),
        GrpcWebApi("grpc-web", web, text=False),
        ConnectApi("connect", web),
        ConnectApi("connect-binary", web, binary=True),
        GrpcApi("envoy-grpc", envoy),
        GrpcWebApi("envoy-grpc-web", f"http://{envoy}", text=False),
        JsonApi("envoy-json", f"http://{envoy}"),
        ConnectApi("envoy-connect", f"http://{envoy}"),
        ConnectApi("envoy-connect-binary", f"http://{envoy}", binary=True),
    ]

    async def add_secret(api: Api, user_id: str, request_id: str) -> str:
        # Each api has a user of its own: AddSecret replaces its secret, so calls never wait on
        # each other.
        metadata = [*auth, ("x-request-id", request_id)]
        answer: user_pb.AddSecretResponse = await api.call(  # type: ignore[assignment]
            "AddSecret", user_pb.AddSecretRequest(user_id=user_id), metadata
        )
        return "ok" if answer.client_secret.startswith("msk_") and answer.client_id else "wrong"

    async def machine_user(name: str) -> str:
        request = user_pb.AddMachineUserRequest(user_name=name, name="Service")
        created: user_pb.AddMachineUserResponse = await apis[0].call("AddMachineUser", request, auth)  # type: ignore[assignment]
        return created.user_id

    workers = []
    for api in apis:
        user_id = await machine_user(f"svc-{api.name}")
        workers.append(Worker(api.name, functools.partial(add_secret, api, user_id)))
    token_user = await machine_user("svc-token")
    secret: user_pb.AddSecretResponse = await apis[0].call(  # type: ignore[assignment]
        "AddSecret", user_pb.AddSecretRequest(user_id=token_user), auth
    )
    basic = base64.b64encode(f"{secret.client_id}:{secret.client_secret}".encode()).decode()

    http = httpx.AsyncClient()  # one kept-alive connection, as the other clients keep theirs

    async def token(request_id: str) -> str:
        answer = await http.post(
            f"http://{envoy}{TOKEN_PATH}",
            data={"grant_type": "client_credentials"},
            headers={"authorization": f"Basic {basic}", "x-request-id": request_id},
        )
        if answer.status_code == 200 and answer.json()["access_token"]:
            return "ok"
        return "UNAVAILABLE" if answer.status_code == 503 else f"HTTP {answer.status_code}"

    workers.append(Worker("token", token))
    stop_at: list[float] = []
    tasks = [asyncio.create_task(run(w, stop_at)) for w in workers]
    try:
        # Steady load: every worker answered at least once, and each has a call well under way.
        async with asyncio.timeout(60):
            while not all(  # noqa: ASYNC110 - a condition of many tasks' state, polled
                any(c.outcome == "ok" for c in w.calls)
                and (since := w.in_flight_since) is not None
                and time.monotonic() - since > 0.1
                for w in workers
            ):
                await asyncio.sleep(0.005)
        signalled = time.monotonic()
        process.launched.process.send_signal(signum)
        stop_at.append(signalled + 3)
        ports = {"gRPC": process.grpc_port, "HTTP": process.http_port, "Envoy": process.envoy_port}
        for name, port in ports.items():
            # Within the drain (at most 2 s: calls that arrive meanwhile are held, then refused
            # UNAVAILABLE), with ten times that as headroom for a busy machine.
            assert await refuses_connections(port, within_s=20), f"the {name} port still accepts connections"
        refused_at = time.monotonic()
        exit_code = await asyncio.to_thread(process.launched.process.wait, GRACE_S + 5)
        exited = time.monotonic()
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        for api in apis:
            await api.close()
        await http.aclose()

    assert exit_code == 0
    assert exited - signalled < GRACE_S + 1, exited - signalled
    lines = [json.loads(line) for line in process.log if line.strip()]
    assert not [line for line in lines if "exception" in line], lines
    taken = {line["request_id"]: line["code"] for line in lines if line["logger"] == "machinesecrets.access"}
    for worker in workers:
        for call in worker.calls:
            assert call.outcome != "CANCELLED", (worker.name, call)  # a client retries none
            if taken.get(call.request_id) in ("OK", "200"):  # the service took it: answered, for real
                assert call.outcome == "ok", (worker.name, call)
            elif call.request_id in taken:  # taken while it drained: refused, for a retry elsewhere
                assert taken[call.request_id] in ("UNAVAILABLE", "503"), (worker.name, call, taken)
                assert call.outcome == "UNAVAILABLE", (worker.name, call)
            else:  # it never reached the service: refused, and said so
                assert call.outcome in ("UNAVAILABLE", "refused"), (worker.name, call)
    # Calls in flight at the signal were drained, not cut: each worker had one under way for a
    # tenth of a second when it came (a client's "sent" is only when it began to send).
    drained = [
        w.name for w in workers if any(c.sent < signalled < c.answered and c.outcome == "ok" for c in w.calls)
    ]
    assert drained, drained
    # And the service still answered after its ports refused new connections.
    assert any(c.answered > refused_at and c.outcome == "ok" for w in workers for c in w.calls)


async def test_callers_at_the_stop_get_an_answer_or_unavailable_never_cancelled(tmp_path: Path) -> None:
    """16 native gRPC callers, each calling again at once, when SIGTERM comes: each call either
    succeeded and is in the store, or failed UNAVAILABLE (which gRPC clients retry) and is not.
    grpc core cancelled the calls it had queued when asked to stop: about 5 a run were CANCELLED
    before the service held the calls of its drain (admission.Admission.drain)."""
    process = await ServerProcess.start(f"sqlite:///{tmp_path / 'ms.db'}", tmp_path, MS_SHUTDOWN_GRACE="10s")
    admin = (tmp_path / "admin.pat").read_text().strip()
    api = GrpcApi("grpc", f"127.0.0.1:{process.grpc_port}")
    auth = [("authorization", f"Bearer {admin}")]
    answered: dict[str, list[str]] = {}
    stop_at: list[float] = []
    try:
        users = []
        for n in range(16):
            request = user_pb.AddMachineUserRequest(user_name=f"caller-{n}", name="Caller")
            created: user_pb.AddMachineUserResponse = await api.call("AddMachineUser", request, auth)  # type: ignore[assignment]
            users.append(created.user_id)
            answered[created.user_id] = []

        async def caller(user_id: str) -> None:
            while not stop_at or time.monotonic() < stop_at[0]:
                try:
                    await api.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id), auth)
                    answered[user_id].append("OK")
                except ApiError as error:
                    answered[user_id].append(error.code.name)
                    await asyncio.sleep(0.01)

        tasks = [asyncio.create_task(caller(user_id)) for user_id in users]
        async with asyncio.timeout(60):
            while sum(map(len, answered.values())) < 100:  # noqa: ASYNC110 - the callers' progress, polled
                await asyncio.sleep(0.01)
        process.launched.process.send_signal(signal.SIGTERM)
        stop_at.append(time.monotonic() + 4)
        await asyncio.gather(*tasks)
        assert await process.stop() == 0
    finally:
        await api.close()
        if process.alive:
            await process.kill()
    outcomes = {outcome for calls in answered.values() for outcome in calls}
    assert outcomes <= {"OK", "UNAVAILABLE"}, outcomes
    assert "UNAVAILABLE" in outcomes  # the callers did call while it stopped
    with sqlite3.connect(tmp_path / "ms.db") as db:
        for user_id, calls in answered.items():
            (stored,) = db.execute(
                "SELECT COUNT(*) FROM events WHERE aggregate_id = ?"
                " AND event_type = 'user.machine.secret.set'",
                (user_id,),
            ).fetchone()
            assert stored == calls.count("OK"), (user_id, stored, calls)
