"""grpc-web (binary and text) on sonora, with sonora 0.2.3's defects fixed here and only here.

sonora (unmaintained since 2023) supplies the handler registry that the generated
`add_*Servicer_to_server` functions fill. `GrpcWeb.__call__` replaces its request handling because
each step of sonora's own is broken for standard clients:

1. unary trailer frames are built from bytes tuples (`b'grpc-status': b'0'`), so grpc-web and
   connect-es clients fail with "missing status": trailers here are plain `key: value` text;
2. `context.abort` takes no `trailing_metadata`, so `grpc-status-details-bin` is lost:
   `WebContext.abort` keeps it and it goes into the trailer frame;
3. `abort_with_status` answers HTTP 500 (or UNIMPLEMENTED): it is `abort` with the status' fields;
4. an exception in a servicer is an HTTP 500: it is INTERNAL "internal error" here;
5. the response `Content-Type` is copied from `Accept` (curl gets `*/*`): it follows the request's
   grpc-web content type;
6. CORS echoes the Host with `Allow-Credentials: true`, which browsers reject: allowed Origins
   are echoed from an allow-list, and an origin not on it gets no CORS header at all;
7. grpc-web-text bodies are base64-decoded chunk by chunk, so a body split off a 4-byte boundary
   fails: the whole body is decoded at once, also when it is several separately padded pieces;
8. grpc `ServerInterceptor`s are never called, and metadata is unknown when the handler is looked
   up: the handler is looked up by path, then the very interceptor objects of the grpc.aio server
   run around it with the call's metadata;
9. every HTTP header (host, accept, content-length, ...) appears in `invocation_metadata()`: only
   headers that are gRPC metadata are passed on.
Paths that are not RPCs fall through to the wrapped ASGI application.
"""

import asyncio
import base64
import binascii
import logging
import re
import struct
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote

import grpc
from google.protobuf.message import DecodeError
from grpc import aio
from sonora.asgi import grpcASGI
from sonora.protocol import parse_timeout

from server.domain.errors import DomainError, FieldViolation, InvalidArgument
from server.transport import status
from server.transport.asgi import (
    ASGIApp,
    BodyTooLarge,
    ClientGone,
    Receive,
    Send,
    first,
    header_lists,
    read_body,
    respond,
)
from server.transport.interceptors import UnaryInterceptor, not_one_message, request_too_slow

log = logging.getLogger("machinesecrets.grpcweb")


BINARY_TYPES = {"application/grpc-web", "application/grpc-web+proto"}
TEXT_TYPES = {"application/grpc-web-text", "application/grpc-web-text+proto"}
FRAME_HEADER = struct.Struct(">BI")
DATA_FLAG, TRAILER_FLAG, COMPRESSED_FLAG = 0x00, 0x80, 0x01

# Headers that belong to HTTP or to the grpc-web protocol, not to the call's metadata.
NOT_METADATA = frozenset(
    {
        "host", "content-type", "content-length", "accept", "accept-encoding", "accept-language",
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "origin", "referer", "cookie", "pragma", "cache-control", "x-grpc-web", "x-user-agent",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "priority", "dnt",
    }
)  # fmt: skip
CORS_ALLOW_HEADERS = "content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization, x-zitadel-orgid"
CORS_EXPOSE_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin"
CORS_MAX_AGE = "86400"


class WebCallError(Exception):
    """A call that ends with a status before or instead of its handler."""

    def __init__(self, code: grpc.StatusCode, message: str, details: bytes | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details


def refused(error: DomainError) -> WebCallError:
    """A call ended before its handler with a domain error, as the error mapping would end it."""
    code = status.code_of(error)
    return WebCallError(code, error.message, status.rich_status(code, error).SerializeToString())


def bad_request(description: str) -> WebCallError:
    return refused(InvalidArgument([FieldViolation("request", description)]))


class WebContext:
    """The servicer context of one grpc-web call, with what the interceptors and servicers use."""

    def __init__(self, peer: str) -> None:
        self.metadata: Sequence[tuple[str, str | bytes]] = ()
        self._peer = peer
        self._code = grpc.StatusCode.OK
        self._details = ""
        self._trailing: list[tuple[str, str | bytes]] = []

    def invocation_metadata(self) -> Sequence[tuple[str, str | bytes]]:
        return self.metadata

    def peer(self) -> str:
        return self._peer

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code

    def set_details(self, details: str) -> None:
        self._details = details

    def set_trailing_metadata(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        self._trailing = list(metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    async def abort(
        self,
        code: grpc.StatusCode,
        details: str = "",
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        if code == grpc.StatusCode.OK:
            raise ValueError("abort needs an error code")
        self._code, self._details = code, details
        self._trailing = list(trailing_metadata)
        raise aio.AbortError()  # the same exception grpc.aio raises: interceptors let it through

    async def abort_with_status(self, rich: grpc.Status) -> None:
        await self.abort(rich.code, rich.details, rich.trailing_metadata)

    def trailers(self) -> list[tuple[str, str]]:
        trailers = [("grpc-status", str(self._code.value[0]))]
        if self._details:
            trailers.append(("grpc-message", quote(self._details, safe=" ")))
        for key, value in self._trailing:
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode("ascii").rstrip("=")
            trailers.append((key, value))
        return trailers


class GrpcWeb(grpcASGI):  # type: ignore[misc]
    def __init__(
        self,
        application: ASGIApp,
        interceptors: Sequence[UnaryInterceptor],
        cors_origins: Iterable[str],
        max_message_bytes: int,
        request_read_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(application, enable_cors=False)
        self._interceptors = list(interceptors)
        self._cors_origins = frozenset(cors_origins)
        self._max_message_bytes = max_message_bytes
        self._read_timeout_s = request_read_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        handler = self._get_rpc_handler(scope["path"]) if scope["type"] == "http" else None
        if handler is None:
            await self._application(scope, receive, send)
            return
        headers = header_lists(scope)
        cors = self._cors_headers(first(headers, "origin") or None)
        if scope["method"] == "OPTIONS":
            await respond(send, 204, [*cors, *self._preflight_headers(cors)], b"")
            return
        if scope["method"] != "POST":
            await respond(send, 405, [*cors, ("allow", "POST, OPTIONS")], b"")
            return
        content_type = first(headers, "content-type").split(";")[0].strip().lower()
        if content_type not in BINARY_TYPES | TEXT_TYPES:
            await respond(send, 415, [*cors, ("content-type", "text/plain")], b"unsupported content type\n")
            return
        text = content_type in TEXT_TYPES
        context = WebContext(_peer(scope))
        try:
            context.metadata = _metadata(scope)
            response = await self._call(scope["path"], handler, headers, context, receive, text)
        except WebCallError as error:
            response = None
            context.set_code(error.code)
            context.set_details(error.message)
            if error.details:
                context.set_trailing_metadata([(status.STATUS_DETAILS_KEY, error.details)])
        body = b"" if response is None else _frame(DATA_FLAG, handler.response_serializer(response))
        body += _frame(TRAILER_FLAG, "".join(f"{k}: {v}\r\n" for k, v in context.trailers()).encode("ascii"))
        if text:
            body = base64.b64encode(body)
        response_type = "application/grpc-web-text+proto" if text else "application/grpc-web+proto"
        await respond(send, 200, [*cors, ("content-type", response_type)], body)

    async def _call(
        self,
        path: str,
        handler: Any,
        headers: dict[str, list[str]],
        context: WebContext,
        receive: Receive,
        text: bool,
    ) -> Any:
        if handler.request_streaming or handler.response_streaming:
            raise WebCallError(grpc.StatusCode.UNIMPLEMENTED, "grpc-web serves unary calls only")
        # A base64 body is 4/3 of the bytes it carries; the frame header adds 5.
        limit = (self._max_message_bytes + FRAME_HEADER.size) * (4 if text else 3) // 3 + 4
        try:
            body = await read_body(receive, limit, self._read_timeout_s)
        except BodyTooLarge:
            raise WebCallError(
                grpc.StatusCode.RESOURCE_EXHAUSTED, "the request is larger than the limit"
            ) from None
        except ClientGone:
            raise WebCallError(grpc.StatusCode.CANCELLED, "the client went away") from None
        except TimeoutError:
            raise refused(request_too_slow(self._read_timeout_s)) from None
        if text:
            body = _decode_text(body)
        message = _single_message(body, self._max_message_bytes, first(headers, "grpc-encoding"))
        details = _CallDetails(path, context.invocation_metadata())
        intercepted = await self._intercept(details, handler)
        # The interceptors may take the message as bytes and parse it themselves.
        try:
            deserialize = intercepted.request_deserializer
            request = message if deserialize is None else deserialize(message)
        except DecodeError:
            raise bad_request("the message does not parse") from None
        timeout = _timeout(first(headers, "grpc-timeout") or None)
        if intercepted.request_streaming:  # the interceptors read the request stream themselves
            outcome = intercepted.stream_unary(_stream(request), context)
        else:
            outcome = intercepted.unary_unary(request, context)
        try:
            async with asyncio.timeout(timeout):
                return await outcome
        except aio.AbortError:
            return None
        except TimeoutError:
            raise WebCallError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded") from None
        except Exception:  # a servicer run without the error mapping; never an HTTP 500
            log.exception("unexpected error in %s", path)
            internal = status.internal_status()
            raise WebCallError(
                grpc.StatusCode.INTERNAL, internal.message, internal.SerializeToString()
            ) from None

    async def _intercept(self, details: grpc.HandlerCallDetails, handler: Any) -> Any:
        """Runs the interceptors as grpc.aio does: the first in the list is the outermost."""

        async def found(_: grpc.HandlerCallDetails) -> Any:
            return handler

        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]] = found
        for interceptor in reversed(self._interceptors):
            continuation = _bind(interceptor, continuation)
        return await continuation(details)

    def _cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        if origin is None or origin not in self._cors_origins:
            return []
        return [("access-control-allow-origin", origin), ("vary", "Origin"),
                ("access-control-expose-headers", CORS_EXPOSE_HEADERS)]  # fmt: skip

    @staticmethod
    def _preflight_headers(cors: list[tuple[str, str]]) -> list[tuple[str, str]]:
        if not cors:
            return []
        return [("access-control-allow-methods", "POST, OPTIONS"),
                ("access-control-allow-headers", CORS_ALLOW_HEADERS),
                ("access-control-max-age", CORS_MAX_AGE)]  # fmt: skip


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str, metadata: Sequence[tuple[str, str | bytes]]) -> None:
        self.method = method
        self.invocation_metadata = metadata  # type: ignore[assignment]


def _bind(
    interceptor: UnaryInterceptor, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]]
) -> Callable[[grpc.HandlerCallDetails], Awaitable[Any]]:
    async def next_step(details: grpc.HandlerCallDetails) -> Any:
        return await interceptor.intercept_service(continuation, details)

    return next_step


def _metadata(scope: dict[str, Any]) -> list[tuple[str, str | bytes]]:
    metadata: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        if key in NOT_METADATA or key.startswith(("sec-", "access-control-", ":", "grpc-")):
            continue
        if key.endswith("-bin"):
            try:  # gRPC: accept padded and unpadded base64
                metadata.append(
                    (key, base64.b64decode(raw_value + b"=" * (-len(raw_value) % 4), validate=True))
                )
            except (binascii.Error, ValueError):
                raise bad_request(f"header {key} is not base64") from None
            continue
        try:
            metadata.append((key, raw_value.decode("ascii")))
        except UnicodeDecodeError:
            raise bad_request(f"header {key} is not ASCII") from None
    return metadata


def _peer(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return f"ipv4:{client[0]}:{client[1]}" if client else "unknown"


_BASE64_PIECE = re.compile(rb"[^=]*=*")


def _decode_text(body: bytes) -> bytes:
    """grpc-web-text: base64, possibly several pieces each with its own padding."""
    compact = b"".join(body.split())
    try:
        return b"".join(base64.b64decode(p, validate=True) for p in _BASE64_PIECE.findall(compact) if p)
    except (binascii.Error, ValueError):
        raise bad_request("the grpc-web-text body is not base64") from None


def _single_message(body: bytes, limit: int, encoding: str) -> bytes:
    """The one uncompressed data frame a unary call carries.

    A compressed frame gets what gRPC's compression spec (doc/compression.md) and grpc core give
    it: INTERNAL if no grpc-encoding names how, UNIMPLEMENTED for an encoding not supported (none is).
    """
    if len(body) < FRAME_HEADER.size:
        raise refused(not_one_message())
    flags, length = FRAME_HEADER.unpack_from(body)
    if flags & TRAILER_FLAG:
        raise bad_request("clients send no trailer frames")
    if flags & COMPRESSED_FLAG and encoding.strip().lower() in ("", "identity"):
        raise WebCallError(grpc.StatusCode.INTERNAL, "the compressed flag is set but no grpc-encoding is")
    if flags & COMPRESSED_FLAG:
        raise WebCallError(grpc.StatusCode.UNIMPLEMENTED, "compressed messages are not supported")
    if length > limit:
        raise WebCallError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the message is larger than the limit")
    if len(body) != FRAME_HEADER.size + length:
        raise refused(not_one_message())
    return body[FRAME_HEADER.size :]


async def _stream(message: Any) -> AsyncIterator[Any]:
    yield message


def _timeout(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(parse_timeout(value.encode("ascii")))
    except (KeyError, ValueError, UnicodeEncodeError):
        raise bad_request("grpc-timeout is malformed") from None


def _frame(flags: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(flags, len(payload)) + payload
