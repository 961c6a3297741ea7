"""The HTTP port's backlog (server/transport/backlog.py): past MS_MAX_WAITING requests read and not
yet begun, a request is answered as it is read with RESOURCE_EXHAUSTED (OVERLOADED) in its own
protocol's shape, and the requests within the bound are answered as usual.

How the tests fill the backlog for sure: the service runs in the test's event loop, so requests
written on connections opened before, with no await between the writes, are all in the kernel
when the loop next looks, and it reads them all in one step before any of their tasks begins."""

import asyncio
import base64
import json
import time
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from google.rpc import error_details_pb2, status_pb2
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.metrics import PREFIX
from tests.api import frame, grpc_web_frames
from tests.service import Running, client, config_for, start_service
from tests.test_observability import scrape, value
from tests.world import World

LIMIT = 2
BURST = 6  # requests written at once: LIMIT answered, the rest refused


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Setup:
    running: Running
    user_id: str
    client_id: str
    client_secret: str


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    config = config_for(tmp_path_factory.mktemp("backlog"), envoy=True, max_waiting=LIMIT)
    running = await start_service(config)
    api = client("grpc", running.service)
    try:
        world = await World.create(api, running.admin_token)
        user_id = await world.machine_user()
        issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    finally:
        await api.close()
    yield Setup(running, user_id, issued.client_id, issued.client_secret)
    await running.service.stop(0)


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "host: 127.0.0.1", f"content-length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Answer(int(status_line.split()[1]), headers, body)


async def burst(port: int, requests: list[bytes]) -> list[Answer]:
    """Each request on a connection of its own, all written in one step of the event loop."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in requests]
    await asyncio.sleep(0.1)  # every connection accepted by the service before the burst
    for (_, writer), raw in zip(connections, requests, strict=True):
        writer.write(raw)  # the socket takes it at once: no await
    try:
        return [await read_answer(reader) for reader, _ in connections]
    finally:
        for _, writer in connections:
            writer.close()


def auth(setup: Setup) -> dict[str, str]:
    return {"authorization": f"Bearer {setup.running.admin_token}"}


def get_user(setup: Setup) -> bytes:
    return user_pb.GetUserByIDRequest(user_id=setup.user_id).SerializeToString()


GET_USER_PATH = "/machinesecrets.v1.UserService/GetUserByID"


def json_call(setup: Setup) -> bytes:
    return request("GET", f"/users/{setup.user_id}", auth(setup))


def grpc_web_call(setup: Setup, text: bool) -> bytes:
    body = frame(get_user(setup))
    kind = "application/grpc-web-text" if text else "application/grpc-web+proto"
    return request(
        "POST", GET_USER_PATH, {**auth(setup), "content-type": kind}, base64.b64encode(body) if text else body
    )


def connect_call(setup: Setup, binary: bool) -> bytes:
    if binary:
        body, kind = get_user(setup), "application/proto"
    else:
        body, kind = json.dumps({"userId": setup.user_id}).encode(), "application/json"
    headers = {**auth(setup), "content-type": kind, "connect-protocol-version": "1"}
    return request("POST", GET_USER_PATH, headers, body)


def token_call(setup: Setup) -> bytes:
    form = urllib.parse.urlencode(
        {
            "grant_type": "client_credentials",
            "client_id": setup.client_id,
            "client_secret": setup.client_secret,
        }
    ).encode()
    return request("POST", "/oauth/v2/token", {"content-type": "application/x-www-form-urlencoded"}, form)


def overloaded_status(status: status_pb2.Status) -> tuple[int, str, dict[str, str]]:
    info = error_details_pb2.ErrorInfo()
    assert status.details
    assert status.details[0].Unpack(info)
    return status.code, info.reason, dict(info.metadata)


def refused_as_json(answer: Answer) -> bool:
    if answer.status != 429:
        return False
    body = json.loads(answer.body)
    assert answer.headers["retry-after"] == "1"
    assert (body["code"], body["details"][0]["reason"]) == (8, "OVERLOADED"), body
    return True


def refused_as_connect(answer: Answer) -> bool:
    if answer.status != 429:
        return False
    body = json.loads(answer.body)
    assert body["code"] == "resource_exhausted"
    assert body["details"][0]["debug"]["reason"] == "OVERLOADED"
    return True


def refused_as_grpc_web(answer: Answer, text: bool) -> bool:
    assert answer.status == 200
    body = base64.b64decode(answer.body) if text else answer.body
    _, trailer_blocks = grpc_web_frames(body)
    trailers = dict(line.split(": ", 1) for line in trailer_blocks[0].decode().split("\r\n") if line)
    if trailers["grpc-status"] == "0":
        return False
    details = trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    assert overloaded_status(status) == (8, "OVERLOADED", {"retry_after": "1"})
    return True


def refused_as_oauth(answer: Answer) -> bool:
    if answer.status == 200:
        assert json.loads(answer.body)["access_token"]
        return False
    assert answer.status == 429
    assert answer.headers["retry-after"] == "1"
    assert json.loads(answer.body)["error"] == "slow_down"
    assert answer.headers["cache-control"] == "no-store"
    return True


CASES = {
    "json": (json_call, refused_as_json),
    "grpc-web": (lambda s: grpc_web_call(s, False), lambda a: refused_as_grpc_web(a, False)),
    "grpc-web-text": (lambda s: grpc_web_call(s, True), lambda a: refused_as_grpc_web(a, True)),
    "connect": (lambda s: connect_call(s, False), refused_as_connect),
    "connect-binary": (lambda s: connect_call(s, True), refused_as_connect),
    "token endpoint": (token_call, refused_as_oauth),
}


@pytest.mark.parametrize("case", CASES)
async def test_past_the_bound_a_request_is_refused_as_it_is_read(setup: Setup, case: str) -> None:
    make, refused = CASES[case]
    answers = await burst(setup.running.service.http_port, [make(setup) for _ in range(BURST)])
    # The first LIMIT read are worked on as usual (a refusal fails the check of its kind).
    assert [refused(a) for a in answers] == [False] * LIMIT + [True] * (BURST - LIMIT)
    # Every request refused left the count: LIMIT more at once are all answered.
    again = await burst(setup.running.service.http_port, [make(setup) for _ in range(LIMIT)])
    assert [refused(a) for a in again] == [False] * LIMIT


async def test_the_refusals_are_counted(setup: Setup) -> None:
    name = f"{PREFIX}_requests_refused_waiting_total"
    before = value(await scrape(setup.running), name)
    await burst(setup.running.service.http_port, [json_call(setup) for _ in range(BURST)])
    assert value(await scrape(setup.running), name) - before == BURST - LIMIT


async def test_the_health_probes_are_never_refused(setup: Setup) -> None:
    probes = [request("GET", "/healthz", {}), request("GET", "/readyz", {})] * 3
    answers = await burst(setup.running.service.http_port, [json_call(setup)] * LIMIT + probes)
    assert [a.status for a in answers[LIMIT:]] == [200] * len(probes)


async def test_a_refused_connection_goes_on_when_the_body_was_whole(setup: Setup) -> None:
    port = setup.running.service.http_port
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMIT + 1)]
    await asyncio.sleep(0.1)
    for _, writer in connections:
        writer.write(token_call(setup))
    answers = [await read_answer(reader) for reader, _ in connections]
    assert [a.status for a in answers] == [200] * LIMIT + [429]
    reader, writer = connections[-1]
    writer.write(token_call(setup))  # the refused connection, asked again alone
    assert (await read_answer(reader)).status == 200
    for _, writer in connections:
        writer.close()


async def test_a_refused_request_whose_body_is_still_arriving_closes_its_connection(setup: Setup) -> None:
    port = setup.running.service.http_port
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(LIMIT + 1)]
    await asyncio.sleep(0.1)
    for _, writer in connections[:LIMIT]:
        writer.write(json_call(setup))
    reader, writer = connections[-1]
    head = request("POST", "/oauth/v2/token", {"content-type": "application/x-www-form-urlencoded"})
    writer.write(head.replace(b"content-length: 0", b"content-length: 100") + b"grant_type")
    answers = [await read_answer(r) for r, _ in connections]
    assert [a.status for a in answers] == [200] * LIMIT + [429]
    assert answers[-1].headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the service
    for _, w in connections:
        w.close()


async def test_through_envoy_the_json_api_is_refused_in_its_shape(setup: Setup) -> None:
    """Envoy forwards the JSON API to the service's private socket, where the same bound holds;
    its answer reaches the caller as the service wrote it. Requests that Envoy forwards while the
    loop is held arrive together (the test holds the loop with a blocking sleep)."""
    port = setup.running.service.envoy_port
    assert port is not None
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(BURST)]
    await asyncio.sleep(0.1)
    for _, writer in connections:
        writer.write(json_call(setup))
    time.sleep(0.5)  # noqa: ASYNC251 (the point: Envoy forwards all of them while the loop is held)
    answers = [await read_answer(reader) for reader, _ in connections]
    outcomes = sorted(refused_as_json(a) for a in answers)
    assert outcomes == [False] * LIMIT + [True] * (BURST - LIMIT)
    for _, writer in connections:
        writer.close()
