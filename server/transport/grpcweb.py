"""The grpc-web adapter (binary and text): grpc-web framing in, a Pipeline run, framing out.

It replaces sonora's ASGI application, whose every step is broken for standard clients (sonora
0.2.3, unmaintained since 2023): trailers built from bytes reprs (`b'grpc-status': b'0'`, so
grpc-web and connect-es clients fail with "missing status"), `grpc-status-details-bin` lost,
`abort_with_status` and servicer exceptions answered HTTP 500, the response type copied from
`Accept`, text bodies decoded chunk by chunk (a body split off a 4-byte boundary fails), grpc's
interceptors never run, and every HTTP header passed on as metadata. Of sonora only
`parse_timeout` (the grpc-timeout header) is used. CORS is `cors.py`'s middleware; routing is the
HTTP app's.
"""

import base64
import binascii
import re
import struct
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from sonora.protocol import parse_timeout

from server.domain.errors import Internal, Unimplemented
from server.transport.asgi import Receive, Send, first, header_lists, media_type, respond
from server.transport.http_call import HttpCall, bad_request, message_too_large, read_call_body
from server.transport.pipeline import Outcome, Runner, not_one_message
from server.transport.status import STATUS_DETAILS_KEY

BINARY_TYPES = {"application/grpc-web", "application/grpc-web+proto"}
TEXT_TYPES = {"application/grpc-web-text", "application/grpc-web-text+proto"}
FRAME_HEADER = struct.Struct(">BI")
DATA_FLAG, TRAILER_FLAG, COMPRESSED_FLAG = 0x00, 0x80, 0x01


class GrpcWebEndpoint:
    """Serves the runners at their method paths over grpc-web."""

    def __init__(self, runners: Iterable[Runner], max_message_bytes: int, read_timeout_s: float) -> None:
        self._runners = {runner.method: runner for runner in runners}
        self._max_message_bytes = max_message_bytes
        self._read_timeout_s = read_timeout_s

    @property
    def paths(self) -> list[str]:
        return list(self._runners)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        runner = self._runners[scope["path"]]
        if scope["method"] == "OPTIONS":
            await respond(send, 204, [("allow", "POST, OPTIONS")], b"")
            return
        if scope["method"] != "POST":
            await respond(send, 405, [("allow", "POST, OPTIONS")], b"")
            return
        headers = header_lists(scope)
        content_type = media_type(headers)
        if content_type not in BINARY_TYPES | TEXT_TYPES:
            await respond(send, 415, [("content-type", "text/plain")], b"unsupported content type\n")
            return
        text = content_type in TEXT_TYPES
        head = HttpCall.of(scope, runner.method, "grpc-web", lambda: _timeout(first(headers, "grpc-timeout")))
        outcome = await runner.run(
            head.call, head.read(lambda: self._read(receive, text, first(headers, "grpc-encoding")))
        )
        await respond(send, 200, [("content-type", response_type(text))], answer_body(outcome, text))

    async def _read(self, receive: Receive, text: bool, encoding: str) -> bytes:
        # A base64 body is 4/3 of the bytes it carries; the frame header adds 5.
        limit = (self._max_message_bytes + FRAME_HEADER.size) * (4 if text else 3) // 3 + 4
        body = await read_call_body(receive, limit, self._read_timeout_s)
        if text:
            body = _decode_text(body)
        return _single_message(body, self._max_message_bytes, encoding)


def response_type(text: bool) -> str:
    return "application/grpc-web-text+proto" if text else "application/grpc-web+proto"


def answer_body(outcome: Outcome, text: bool) -> bytes:
    """The body of a grpc-web answer (always HTTP 200): the response's data frame, if any, then
    the trailer frame with the status; base64 for grpc-web-text."""
    body = b"" if outcome.response is None else _frame(DATA_FLAG, outcome.response.SerializeToString())
    body += _frame(TRAILER_FLAG, "".join(f"{k}: {v}\r\n" for k, v in _trailers(outcome)).encode("ascii"))
    return base64.b64encode(body) if text else body


def _trailers(outcome: Outcome) -> list[tuple[str, str]]:
    trailers = [("grpc-status", str(outcome.code.value[0]))]
    if outcome.message:
        trailers.append(("grpc-message", quote(outcome.message, safe=" ")))
    if outcome.status is not None:
        details = base64.b64encode(outcome.status.SerializeToString()).decode("ascii").rstrip("=")
        trailers.append((STATUS_DETAILS_KEY, details))
    return trailers


_BASE64_PIECE = re.compile(rb"[^=]*=*")


def _decode_text(body: bytes) -> bytes:
    """grpc-web-text: base64, possibly several pieces each with its own padding, decoded whole
    (not chunk by chunk, so a body may be split anywhere)."""
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
        raise not_one_message()
    flags, length = FRAME_HEADER.unpack_from(body)
    if flags & TRAILER_FLAG:
        raise bad_request("clients send no trailer frames")
    if flags & COMPRESSED_FLAG and encoding.strip().lower() in ("", "identity"):
        raise Internal("COMPRESSION_UNNAMED", "the compressed flag is set but no grpc-encoding is")
    if flags & COMPRESSED_FLAG:
        raise Unimplemented("COMPRESSION_UNSUPPORTED", "compressed messages are not supported")
    if length > limit:
        raise message_too_large()
    if len(body) != FRAME_HEADER.size + length:
        raise not_one_message()
    return body[FRAME_HEADER.size :]


def _timeout(value: str) -> float | None:
    if not value:
        return None
    try:
        return float(parse_timeout(value.encode("ascii")))
    except (KeyError, ValueError, UnicodeEncodeError):
        raise bad_request("grpc-timeout is malformed") from None


def _frame(flags: int, payload: bytes) -> bytes:
    return FRAME_HEADER.pack(flags, len(payload)) + payload
