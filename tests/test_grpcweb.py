"""The grpc-web adapter over real HTTP: each sonora defect it fixes, hostile framing, and the
pipeline's steps seen through it.

The adapter serves two kinds of runner here: a runner that echoes the metadata it was given (what
the adapter passes on is the subject), and real Pipelines on a real store whose handlers explode,
stall or echo (what the pipeline makes of them, through this adapter, is the subject). The same
pipelines are served by the grpc.aio adapter too, and answer alike there.
"""

import asyncio
import base64
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from machinesecrets.v1.options_pb2 import AuthOption

from server.domain.access import Access
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.ids import IdGenerator
from server.domain.permissions import USER_READ, CallContext
from server.metrics import Metrics
from server.store.sqlite import SqliteStore
from server.transport.admission import Admission
from server.transport.asgi_server import AsgiServer
from server.transport.cors import CorsMiddleware
from server.transport.grpc_server import method_handlers
from server.transport.grpcweb import GrpcWebEndpoint
from server.transport.http import HttpApp
from server.transport.pipeline import Call, Outcome, Pipeline, Read
from tests.api import frame, grpc_web_frames, trailer_map
from tests.codes import code_name
from tests.service import Running

ORIGIN = "http://app.example"
StringValue = wrappers_pb2.StringValue


class EchoMetadata:
    """Answers the names of the metadata the adapter passed on."""

    method = "/test.Test/EchoMetadata"

    async def run(self, call: Call, read: Read) -> Outcome:
        await read()
        names = ",".join(sorted(k for k, _ in call.metadata))
        return Outcome(grpc.StatusCode.OK, response=StringValue(value=names))


async def echo(request: StringValue, ctx: CallContext) -> StringValue:
    return request


async def explode(request: StringValue, ctx: CallContext) -> StringValue:
    raise RuntimeError("internal detail that must not leak")


async def slow(request: StringValue, ctx: CallContext) -> StringValue:
    await asyncio.sleep(5)
    return request


HANDLERS: dict[str, Callable[[StringValue, CallContext], Awaitable[StringValue]]] = {
    "/test.Test/Echo": echo,
    "/test.Test/Explode": explode,
    "/test.Test/Slow": slow,
}


class Served:
    def __init__(self, web: AsgiServer, grpc_server: grpc.aio.Server, grpc_port: int, token: str) -> None:
        self.web, self.grpc_server, self.grpc_port, self.token = web, grpc_server, grpc_port, token

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web.port}"


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    store = await SqliteStore.open(f"sqlite:///{tmp_path_factory.mktemp('web') / 'ms.db'}")
    token = await Commands(store, SecretHasher(4), IdGenerator(), 3).set_up_instance("org", "admin")
    assert token is not None
    access, metrics = Access(store), Metrics()
    runners: list[Any] = [EchoMetadata()]
    runners += [
        Pipeline(
            method,
            StringValue,
            StringValue,
            AuthOption(permission=USER_READ),
            handler,
            access,
            metrics,
            Admission(100),
        )
        for method, handler in HANDLERS.items()
    ]
    endpoint = CorsMiddleware(GrpcWebEndpoint(runners, 1024, 10.0), [ORIGIN])
    web = await AsgiServer.start(HttpApp({runner.method: endpoint for runner in runners}), "127.0.0.1:0")
    grpc_server = grpc.aio.server()
    grpc_server.add_generic_rpc_handlers(method_handlers(runners, 10.0))
    port = grpc_server.add_insecure_port("127.0.0.1:0")
    await grpc_server.start()
    yield Served(web, grpc_server, port, token)
    await grpc_server.stop(0)
    await web.stop(0)
    await store.close()


@pytest.fixture
def web(served: Served) -> str:
    return served.url


@pytest.fixture
def bearer(served: Served) -> dict[str, str]:
    return {"authorization": f"Bearer {served.token}"}


def parse(body: bytes) -> tuple[list[bytes], dict[str, str]]:
    messages, blocks = grpc_web_frames(body)
    for block in blocks:  # defect 1: a text block of "key: value" lines, not bytes reprs
        assert block.endswith(b"\r\n")
        assert all(b": " in line for line in block.split(b"\r\n") if line), block
    return messages, trailer_map(blocks)


async def post(
    url: str, body: Any, content_type: str = "application/grpc-web+proto", **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, content=body, headers={"content-type": content_type, **headers})


async def test_trailers_are_a_text_block_and_content_type_follows_the_request(web: str) -> None:
    answer = await post(
        f"{web}/test.Test/EchoMetadata", frame(StringValue(value="x").SerializeToString()), accept="*/*"
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/grpc-web+proto"  # defect 5: not */*
    messages, trailers = parse(answer.content)
    assert len(messages) == 1
    assert trailers == {"grpc-status": "0"}


async def test_only_grpc_metadata_reaches_the_servicer(web: str) -> None:
    answer = await post(
        f"{web}/test.Test/EchoMetadata",
        frame(b""),
        **{
            "x-custom": "1",
            "authorization": "Bearer t",
            "x-grpc-web": "1",
            "user-agent": "t",
            "grpc-timeout": "10S",
        },
    )
    [message], _ = parse(answer.content)
    assert StringValue.FromString(message).value == "authorization,x-custom"  # defect 9


async def test_an_error_keeps_its_status_details(web: str) -> None:
    answer = await post(f"{web}/test.Test/Echo", frame(b""))  # no token
    assert answer.status_code == 200  # defect 3: no HTTP 500
    messages, trailers = parse(answer.content)
    assert messages == []
    assert code_name(trailers["grpc-status"]) == "UNAUTHENTICATED"
    encoded = trailers["grpc-status-details-bin"]  # defect 2: carried
    status = status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (status.message, info.reason) == (trailers["grpc-message"], "TOKEN_MISSING")


async def test_an_exception_is_internal_not_http_500(
    web: str, bearer: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    answer = await post(f"{web}/test.Test/Explode", frame(b""), **bearer)
    assert answer.status_code == 200  # defect 4
    _, trailers = parse(answer.content)
    assert (code_name(trailers["grpc-status"]), trailers["grpc-message"]) == ("INTERNAL", "internal error")
    assert b"must not leak" not in answer.content
    assert "must not leak" in caplog.text  # for the operator


async def test_the_grpc_adapter_answers_the_same_pipeline_alike(
    served: Served, bearer: dict[str, str]
) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.grpc_port}") as channel:
        explode_call = channel.unary_unary("/test.Test/Explode", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await explode_call(b"", metadata=tuple(bearer.items()))
        assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.INTERNAL, "internal error")
        slow_call = channel.unary_unary("/test.Test/Slow", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await slow_call(b"", metadata=tuple(bearer.items()), timeout=0.1)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        echo_call = channel.unary_unary("/test.Test/Echo", None, None)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await echo_call(b"\xff\xff", metadata=tuple(bearer.items()))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        message = StringValue(value="x").SerializeToString()
        assert await echo_call(message, metadata=tuple(bearer.items())) == message


async def test_grpc_timeout_is_honoured(web: str, bearer: dict[str, str]) -> None:
    answer = await post(f"{web}/test.Test/Slow", frame(b""), **{"grpc-timeout": "100m"}, **bearer)
    _, trailers = parse(answer.content)
    assert code_name(trailers["grpc-status"]) == "DEADLINE_EXCEEDED"


async def test_text_bodies_split_anywhere_and_padded_in_pieces(web: str) -> None:
    first = base64.b64encode(frame(StringValue(value="abc").SerializeToString()))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(first), 3):  # defect 7: chunks off the 4-byte boundary
            yield first[i : i + 3]

    answer = await post(f"{web}/test.Test/EchoMetadata", chunks(), "application/grpc-web-text")
    assert answer.headers["content-type"] == "application/grpc-web-text+proto"
    _, trailers = parse(base64.b64decode(answer.content))
    assert code_name(trailers["grpc-status"]) == "OK"
    # Two separately padded pieces: the frame header, then the message.
    message = frame(StringValue(value="ab").SerializeToString())
    pieces = base64.b64encode(message[:5]) + base64.b64encode(message[5:])
    answer = await post(f"{web}/test.Test/EchoMetadata", pieces, "application/grpc-web-text")
    assert code_name(parse(base64.b64decode(answer.content))[1]["grpc-status"]) == "OK"


async def test_cors_from_the_allow_list_only(web: str) -> None:
    async with httpx.AsyncClient() as client:
        preflight = await client.options(
            f"{web}/test.Test/EchoMetadata",
            headers={
                "origin": ORIGIN,
                "access-control-request-method": "POST",
                "access-control-request-headers": "content-type,x-grpc-web,authorization,x-zitadel-orgid",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN  # defect 6: the Origin, not Host
        assert "access-control-allow-credentials" not in preflight.headers
        allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
        expected = {
            "content-type",
            "x-grpc-web",
            "x-user-agent",
            "grpc-timeout",
            "authorization",
            "x-zitadel-orgid",
        }
        assert expected <= allowed
        assert "POST" in preflight.headers["access-control-allow-methods"]
        stranger = await client.options(
            f"{web}/test.Test/EchoMetadata", headers={"origin": "http://evil.example"}
        )
        assert not [h for h in stranger.headers if h.startswith("access-control-")]
        # A 204 has no content, so no Content-Length either (RFC 9110, 8.6).
        assert (stranger.status_code, stranger.headers.get("content-length")) == (204, None)
    answer = await post(f"{web}/test.Test/EchoMetadata", frame(b""), origin=ORIGIN)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"}
    answer = await post(f"{web}/test.Test/EchoMetadata", frame(b""), origin="http://evil.example")
    assert not [h for h in answer.headers if h.startswith("access-control-")]


@pytest.mark.parametrize(
    ("body", "content_type", "code"),
    [
        (b"", "application/grpc-web+proto", grpc.StatusCode.INVALID_ARGUMENT),  # no message at all
        (b"\x00\x00\x00", "application/grpc-web+proto", grpc.StatusCode.INVALID_ARGUMENT),  # short header
        (
            b"\x00\x00\x00\x00\x09ab",
            "application/grpc-web+proto",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),  # truncated
        (
            frame(b"") + frame(b""),
            "application/grpc-web+proto",
            grpc.StatusCode.INVALID_ARGUMENT,
        ),  # two messages
        (frame(b"", 0x80), "application/grpc-web+proto", grpc.StatusCode.INVALID_ARGUMENT),  # client trailers
        (
            frame(b"x", 0x01),
            "application/grpc-web+proto",
            grpc.StatusCode.INTERNAL,
        ),  # compressed: the spec's code
        (frame(b"", length=10**6), "application/grpc-web+proto", grpc.StatusCode.RESOURCE_EXHAUSTED),
        (
            frame(b"a" * 2000),
            "application/grpc-web+proto",
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ),  # over the limit
        (b"!!!not base64", "application/grpc-web-text", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_malformed_bodies_get_a_clear_status(
    web: str, body: bytes, content_type: str, code: grpc.StatusCode
) -> None:
    answer = await post(f"{web}/test.Test/Echo", body, content_type)
    assert answer.status_code == 200
    data = base64.b64decode(answer.content) if "text" in content_type else answer.content
    _, trailers = parse(data)
    assert code_name(trailers["grpc-status"]) == code.name, trailers


async def test_a_compressed_message_in_a_named_encoding_is_unimplemented(web: str) -> None:
    answer = await post(f"{web}/test.Test/Echo", frame(b"x", 0x01), **{"grpc-encoding": "gzip"})
    assert code_name(parse(answer.content)[1]["grpc-status"]) == "UNIMPLEMENTED"


async def test_bad_binary_metadata_is_invalid_argument(web: str) -> None:
    answer = await post(f"{web}/test.Test/Echo", frame(b""), **{"x-thing-bin": "***"})
    assert code_name(parse(answer.content)[1]["grpc-status"]) == "INVALID_ARGUMENT"


async def test_http_level_mistakes(web: str) -> None:
    async with httpx.AsyncClient() as client:
        wrong_method = await client.get(f"{web}/test.Test/EchoMetadata")
        assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST, OPTIONS")
        wrong_type = await client.post(
            f"{web}/test.Test/EchoMetadata", content=b"{}", headers={"content-type": "application/json"}
        )
        assert wrong_type.status_code == 415
        elsewhere = await client.get(f"{web}/no/such/path")  # falls through to the HTTP app
        assert (elsewhere.status_code, elsewhere.json()["error"]) == (404, "not_found")


async def test_the_service_runs_the_pipeline_over_grpc_web(running: Running) -> None:
    # Defect 8: the production adapter runs authentication; no token is UNAUTHENTICATED there too.
    url = f"http://127.0.0.1:{running.service.http_port}/machinesecrets.v1.UserService/GetUserByID"
    answer = await post(url, frame(b""))
    assert code_name(parse(answer.content)[1]["grpc-status"]) == "UNAUTHENTICATED"


async def test_a_message_that_does_not_parse_is_invalid_argument(web: str, bearer: dict[str, str]) -> None:
    answer = await post(f"{web}/test.Test/Echo", frame(b"\xff\xff"), **bearer)
    assert code_name(parse(answer.content)[1]["grpc-status"]) == "INVALID_ARGUMENT"


async def test_responses_are_not_held_back_by_nagle(web: str, served: Served) -> None:
    # A response is written in pieces; with Nagle's algorithm on, each piece after the first
    # waits for the client's delayed ACK (about 40 ms on a kept-alive connection).
    async with httpx.AsyncClient() as client:
        await client.get(f"{web}/no/such/path")
        sockets = served.web.connection_sockets()
        assert sockets
        for sock in sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
