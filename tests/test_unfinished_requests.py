"""The bounds on requests still arriving (server/transport/admission.py), and the timeouts that end
them, on every door: the HTTP port (the token endpoint, the JSON API, grpc-web), native gRPC, and
Envoy, which holds a request until it is whole so that the servers never wait on a client.

The load test of the same (300 slow connections while a caller's calls stay fast) is
test_slow_requests.py.
"""

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import httpx
import pytest

from tests.service import Running, config_for, start_service

PER_SOURCE, TOTAL = 3, 8
# The read timeout of the service that times requests out: short, as what is tested is that a
# request is ended, not how fast; the tests wait ten times as long before they call it a failure.
SHORT_READ_S = 1
HEADROOM = 10

TOKEN_HEAD = (
    b"POST /oauth/v2/token HTTP/1.1\r\nhost: 127.0.0.1\r\n"
    b"content-type: application/x-www-form-urlencoded\r\ncontent-length: 100\r\n\r\ngrant_type="
)


def json_head(path: str, token: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {token}\r\n"
        "content-type: application/json\r\ncontent-length: 100\r\n\r\n{"
    ).encode()


@pytest.fixture
async def bounded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    folder = tmp_path_factory.mktemp("unfinished")
    config = config_for(folder, envoy=True, max_unfinished=TOTAL, max_unfinished_per_source=PER_SOURCE)
    running = await start_service(config)
    yield running
    await running.service.stop(0)


@pytest.fixture(scope="module")
async def impatient(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    from datetime import timedelta

    folder = tmp_path_factory.mktemp("impatient")
    config = config_for(folder, envoy=True, request_read_timeout=timedelta(seconds=SHORT_READ_S))
    running = await start_service(config)
    yield running
    await running.service.stop(0)


class Held:
    """Connections holding half-sent requests, closed on leaving."""

    def __init__(self) -> None:
        self.writers: list[asyncio.StreamWriter] = []

    async def http(self, port: int, source: str, head: bytes) -> asyncio.StreamReader:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.write(head)
        await writer.drain()
        self.writers.append(writer)
        return reader

    async def grpc(self, port: int, source: str) -> tuple[asyncio.StreamReader, h2.connection.H2Connection]:
        """A ListOrganizations stream whose message says 100 bytes and brings 10."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        connection.send_headers(
            1,
            [
                (":method", "POST"), (":scheme", "http"), (":authority", "127.0.0.1"),
                (":path", "/machinesecrets.v1.OrgService/ListOrganizations"),
                ("content-type", "application/grpc"), ("te", "trailers"),
            ],
        )  # fmt: skip
        connection.send_data(1, b"\x00\x00\x00\x00\x64" + b"\x0a" * 10)
        writer.write(connection.data_to_send())
        await writer.drain()
        self.writers.append(writer)
        return reader, connection

    def close(self) -> None:
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def held() -> AsyncIterator[Held]:
    connections = Held()
    yield connections
    connections.close()


async def http_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of one HTTP/1.1 answer."""
    async with asyncio.timeout(HEADROOM):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(lines[0].split()[1]), headers, body


async def grpc_answer(reader: asyncio.StreamReader, connection: h2.connection.H2Connection) -> dict[str, str]:
    """The trailers (or trailers-only headers) that end stream 1."""
    found: dict[str, str] = {}
    async with asyncio.timeout(HEADROOM):
        while True:
            data = await reader.read(65536)
            assert data, "the connection closed without an answer"
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    found |= {k.decode(): v.decode() for k, v in event.headers}
                if isinstance(event, h2.events.StreamEnded):
                    return found


def reason_of(grpc_trailers: dict[str, str]) -> str:
    from google.rpc import error_details_pb2, status_pb2

    details = grpc_trailers["grpc-status-details-bin"]
    status = status_pb2.Status.FromString(base64.b64decode(details + "=" * (-len(details) % 4)))
    for packed in status.details:
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(info):
            return str(info.reason)
    return ""


async def arriving(running: Running, count: int) -> None:
    """Waits until the service counts this many requests arriving: the held requests' heads
    reach it in their own time, over connections of their own."""
    async with asyncio.timeout(HEADROOM):
        while running.service.admission.unfinished != count:  # noqa: ASYNC110 (a counter, not an event)
            await asyncio.sleep(0.01)


async def test_one_address_has_at_most_its_share_of_unfinished_requests(bounded: Running, held: Held) -> None:
    port = bounded.service.http_port
    for _ in range(PER_SOURCE):
        await held.http(port, "127.0.0.20", TOKEN_HEAD)
    await arriving(bounded, PER_SOURCE)
    # One more from that address is refused (after a second or two: admission.py), at the token
    # endpoint and on the JSON API...
    status, headers, body = await http_answer(await held.http(port, "127.0.0.20", TOKEN_HEAD))
    assert (status, json.loads(body)["error"], headers["retry-after"]) == (429, "slow_down", "1")
    status, headers, body = await http_answer(
        await held.http(port, "127.0.0.20", json_head("/users/machine", bounded.admin_token))
    )
    answer = json.loads(body)
    assert (status, answer["code"], answer["details"][0]["reason"]) == (429, 8, "UNFINISHED_REQUESTS")
    # ... and over native gRPC.
    for _ in range(PER_SOURCE):
        await held.grpc(bounded.service.grpc_port, "127.0.0.21")
    await arriving(bounded, 2 * PER_SOURCE)
    trailers = await grpc_answer(*await held.grpc(bounded.service.grpc_port, "127.0.0.21"))
    assert (trailers["grpc-status"], reason_of(trailers)) == ("8", "UNFINISHED_REQUESTS")
    # Another address is not refused for them: its whole request is answered.
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.22")) as http:
        answer = await http.get(
            f"http://127.0.0.1:{port}/orgs", headers={"authorization": f"Bearer {bounded.admin_token}"}
        )
    assert answer.status_code == 200, answer.text


async def test_all_addresses_together_have_at_most_the_total(bounded: Running, held: Held) -> None:
    port = bounded.service.http_port
    for n in range(TOTAL):
        await held.http(port, f"127.0.0.{30 + n // PER_SOURCE}", TOKEN_HEAD)
    await arriving(bounded, TOTAL)
    status, _, body = await http_answer(await held.http(port, "127.0.0.40", TOKEN_HEAD))
    assert (status, json.loads(body)["error"]) == (429, "slow_down")
    trailers = await grpc_answer(*await held.grpc(bounded.service.grpc_port, "127.0.0.41"))
    assert (trailers["grpc-status"], reason_of(trailers)) == ("8", "UNFINISHED_REQUESTS")


async def test_places_come_back_when_the_requests_end(bounded: Running, held: Held) -> None:
    port = bounded.service.http_port
    readers = [await held.http(port, "127.0.0.50", TOKEN_HEAD) for _ in range(PER_SOURCE)]
    await arriving(bounded, PER_SOURCE)
    held.close()
    for reader in readers:  # each is answered (the client went away) or simply closed
        async with asyncio.timeout(HEADROOM):
            await reader.read()
    async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.50")) as http:
        for _ in range(PER_SOURCE + 1):
            answer = await http.post(
                f"http://127.0.0.1:{port}/oauth/v2/token", data={"grant_type": "client_credentials"}
            )
            assert answer.status_code == 401, answer.text  # no client: refused, but not as too many


async def test_a_slow_body_is_ended_on_every_door(impatient: Running, held: Held) -> None:
    service = impatient.service
    status, _, body = await http_answer(await held.http(service.http_port, "127.0.0.1", TOKEN_HEAD))
    assert (status, json.loads(body)["error"]) == (408, "invalid_request")
    trailers = await grpc_answer(*await held.grpc(service.grpc_port, "127.0.0.1"))
    assert (trailers["grpc-status"], reason_of(trailers)) == ("4", "REQUEST_TOO_SLOW")
    # Envoy holds the request until it is whole: it ends a slow one itself, with the answer the
    # servers give (test_fuzz.py checks gRPC and grpc-web through it).
    assert service.envoy_port is not None
    head = json_head("/users/machine", impatient.admin_token)
    status, _, body = await http_answer(await held.http(service.envoy_port, "127.0.0.1", head))
    error = json.loads(body)
    assert (status, error["code"], error["details"][0]["reason"]) == (504, 4, "REQUEST_TOO_SLOW")
    status, _, body = await http_answer(await held.http(service.envoy_port, "127.0.0.1", TOKEN_HEAD))
    assert (status, json.loads(body)["error"]) == (408, "invalid_request")


SLOW_HEADS = [
    ("http", b""),
    ("http", b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n"),
    # Envoy's request_headers_timeout runs from a head's first byte; a connection that sends
    # nothing at all costs Envoy a socket until its idle_timeout (envoy.yaml).
    ("envoy", b"GET /healthz HTTP/1.1\r\nhost: 127.0.0.1\r\n"),
]


@pytest.mark.parametrize(("door", "head"), SLOW_HEADS)
async def test_a_slow_head_ends_its_connection(
    impatient: Running, held: Held, door: str, head: bytes
) -> None:
    """A connection that brings no whole request head within the read timeout is closed (Envoy
    answers first, 504 DEADLINE_EXCEEDED as for a slow body)."""
    port = impatient.service.http_port if door == "http" else impatient.service.envoy_port
    assert port is not None
    reader = await held.http(port, "127.0.0.1", head)
    async with asyncio.timeout(HEADROOM):
        rest = await reader.read()
    assert rest == b"" if door == "http" else rest.startswith(b"HTTP/1.1 504"), rest


async def test_a_burst_of_requests_from_one_address_is_served(bounded: Running) -> None:
    """More requests at once from one address than its share of unfinished places, each body a
    moment behind its head (as a client writes them, two packets): each waits its turn in the
    address's line and none is refused."""

    async def one() -> int:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", bounded.service.http_port, local_addr=("127.0.0.60", 0)
        )
        body = b"grant_type=client_credentials"
        writer.write(TOKEN_HEAD.replace(b"content-length: 100", b"content-length: %d" % len(body))[:-11])
        await writer.drain()
        await asyncio.sleep(0.1)  # every head is in before any body
        writer.write(body)
        status, _, _ = await http_answer(reader)
        writer.close()
        return status

    # Its share, and as many waiting in line as the service lets wait (MS_MAX_UNFINISHED).
    statuses = await asyncio.gather(*(one() for _ in range(PER_SOURCE + TOTAL)))
    assert set(statuses) == {401}, statuses  # no client named: refused, but never 429
    assert bounded.service.admission.unfinished == 0
