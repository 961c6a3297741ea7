"""The grpc-web adapter over real HTTP: each sonora defect it fixes, and hostile framing.

Most of these talk to a GrpcWeb app that serves a small test servicer with no interceptors, so a
raw exception, `abort_with_status` and the metadata a servicer sees can be observed directly.
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
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from server.transport.asgi_server import AsgiServer
from server.transport.grpcweb import GrpcWeb
from server.transport.http import HttpApp
from tests.api import frame, grpc_web_frames, trailer_map
from tests.conftest import Running

ORIGIN = "http://app.example"
StringValue = wrappers_pb2.StringValue


async def echo_metadata(request: StringValue, context: Any) -> StringValue:
    return StringValue(value=",".join(sorted(k for k, _ in context.invocation_metadata())))


async def abort_with_status(request: StringValue, context: Any) -> StringValue:
    info = error_details_pb2.ErrorInfo(reason="TEST_REASON")
    status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="nope")
    status.details.add().Pack(info)
    await context.abort_with_status(rpc_status.to_status(status))
    raise AssertionError("unreachable")


async def explode(request: StringValue, context: Any) -> StringValue:
    raise RuntimeError("internal detail that must not leak")


async def slow(request: StringValue, context: Any) -> StringValue:
    await asyncio.sleep(5)
    return request


BEHAVIOURS: dict[str, Callable[[StringValue, Any], Awaitable[StringValue]]] = {
    "/test.Test/EchoMetadata": echo_metadata,
    "/test.Test/AbortWithStatus": abort_with_status,
    "/test.Test/Explode": explode,
    "/test.Test/Slow": slow,
}


class TestServicer(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        behaviour = BEHAVIOURS.get(handler_call_details.method)
        if behaviour is None:
            return None
        return grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=StringValue.FromString,
            response_serializer=StringValue.SerializeToString,
        )


@pytest.fixture(scope="module")
async def web_server() -> AsyncIterator[AsgiServer]:
    app = GrpcWeb(HttpApp({}), [], [ORIGIN], max_message_bytes=1024)
    app.add_generic_rpc_handlers([TestServicer()])
    server = await AsgiServer.start(app, "127.0.0.1:0")
    yield server
    await server.stop(0)


@pytest.fixture
def web(web_server: AsgiServer) -> str:
    return f"http://127.0.0.1:{web_server.port}"


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


async def test_abort_with_status_keeps_its_details(web: str) -> None:
    answer = await post(f"{web}/test.Test/AbortWithStatus", frame(b""))
    assert answer.status_code == 200  # defect 3: no HTTP 500
    messages, trailers = parse(answer.content)
    assert messages == []
    assert (trailers["grpc-status"], trailers["grpc-message"]) == ("5", "nope")
    encoded = trailers["grpc-status-details-bin"]  # defect 2: carried
    status = status_pb2.Status.FromString(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert info.reason == "TEST_REASON"


async def test_an_exception_is_internal_not_http_500(web: str, caplog: pytest.LogCaptureFixture) -> None:
    answer = await post(f"{web}/test.Test/Explode", frame(b""))
    assert answer.status_code == 200  # defect 4
    _, trailers = parse(answer.content)
    assert (trailers["grpc-status"], trailers["grpc-message"]) == ("13", "internal error")
    assert b"must not leak" not in answer.content
    assert "must not leak" in caplog.text  # for the operator


async def test_grpc_timeout_is_honoured(web: str) -> None:
    answer = await post(f"{web}/test.Test/Slow", frame(b""), **{"grpc-timeout": "100m"})
    _, trailers = parse(answer.content)
    assert trailers["grpc-status"] == str(grpc.StatusCode.DEADLINE_EXCEEDED.value[0])


async def test_text_bodies_split_anywhere_and_padded_in_pieces(web: str) -> None:
    first = base64.b64encode(frame(StringValue(value="abc").SerializeToString()))

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(first), 3):  # defect 7: chunks off the 4-byte boundary
            yield first[i : i + 3]

    answer = await post(f"{web}/test.Test/EchoMetadata", chunks(), "application/grpc-web-text")
    assert answer.headers["content-type"] == "application/grpc-web-text+proto"
    _, trailers = parse(base64.b64decode(answer.content))
    assert trailers["grpc-status"] == "0"
    # Two separately padded pieces: the frame header, then the message.
    message = frame(StringValue(value="ab").SerializeToString())
    pieces = base64.b64encode(message[:5]) + base64.b64encode(message[5:])
    answer = await post(f"{web}/test.Test/EchoMetadata", pieces, "application/grpc-web-text")
    assert parse(base64.b64decode(answer.content))[1]["grpc-status"] == "0"


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
    answer = await post(f"{web}/test.Test/EchoMetadata", frame(b""), origin=ORIGIN)
    assert answer.headers["access-control-allow-origin"] == ORIGIN
    exposed = {h.strip() for h in answer.headers["access-control-expose-headers"].split(",")}
    assert exposed == {"grpc-status", "grpc-message", "grpc-status-details-bin"}
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
        (frame(b"\xff\xff"), "application/grpc-web+proto", grpc.StatusCode.INVALID_ARGUMENT),  # not protobuf
        (b"!!!not base64", "application/grpc-web-text", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
async def test_malformed_bodies_get_a_clear_status(
    web: str, body: bytes, content_type: str, code: grpc.StatusCode
) -> None:
    answer = await post(f"{web}/test.Test/EchoMetadata", body, content_type)
    assert answer.status_code == 200
    data = base64.b64decode(answer.content) if "text" in content_type else answer.content
    _, trailers = parse(data)
    assert trailers["grpc-status"] == str(code.value[0]), trailers


async def test_a_compressed_message_in_a_named_encoding_is_unimplemented(web: str) -> None:
    answer = await post(f"{web}/test.Test/EchoMetadata", frame(b"x", 0x01), **{"grpc-encoding": "gzip"})
    assert parse(answer.content)[1]["grpc-status"] == str(grpc.StatusCode.UNIMPLEMENTED.value[0])


async def test_bad_binary_metadata_is_invalid_argument(web: str) -> None:
    answer = await post(f"{web}/test.Test/EchoMetadata", frame(b""), **{"x-thing-bin": "***"})
    assert parse(answer.content)[1]["grpc-status"] == str(grpc.StatusCode.INVALID_ARGUMENT.value[0])


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


async def test_the_service_runs_the_grpc_servers_interceptors(running: Running) -> None:
    # Defect 8: the production adapter runs authentication; no token is UNAUTHENTICATED there too.
    url = f"http://127.0.0.1:{running.service.http_port}/machinesecrets.v1.UserService/GetUserByID"
    answer = await post(url, frame(b""))
    assert parse(answer.content)[1]["grpc-status"] == str(grpc.StatusCode.UNAUTHENTICATED.value[0])


async def test_responses_are_not_held_back_by_nagle(web: str, web_server: AsgiServer) -> None:
    # A response is written in pieces; with Nagle's algorithm on, each piece after the first
    # waits for the client's delayed ACK (about 40 ms on a kept-alive connection).
    async with httpx.AsyncClient() as client:
        await client.get(f"{web}/no/such/path")
        sockets = web_server.connection_sockets()
        assert sockets
        for sock in sockets:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
