"""The Connect protocol's unary call in JSON (connectrpc.com/docs/protocol), the call ZITADEL's SDKs
make: `POST /<package>.<Service>/<Method>`, `Content-Type: application/json`, a proto3-JSON body.
The answer is proto3 JSON, or a Connect error `{"code", "message", "details"}` with the HTTP status
of its code. Like grpcweb.py, an adapter: it turns the HTTP request into a Call, runs the method's
Pipeline, and writes the Outcome back.

Unknown JSON fields are ignored on ZITADEL's services, as ZITADEL's own server does (a client built
from newer protos sends fields this service does not know), and refused on the native API
(json_body.py).
"""

import base64
import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from server.domain.errors import DomainError
from server.transport import json_body
from server.transport.asgi import (
    Receive,
    Send,
    first,
    header_lists,
    peer_of,
    respond,
)
from server.transport.grpcweb import bad_request, grpc_metadata, read_call_body
from server.transport.pipeline import Call, Outcome, Runner
from server.transport.status import HTTP_STATUS

CONTENT_TYPE = "application/json"


class ConnectEndpoint:
    """Serves the runners at their method paths as Connect unary JSON calls."""

    def __init__(
        self,
        methods: Iterable[tuple[Runner, type[Message], type[Message]]],
        max_message_bytes: int,
        read_timeout_s: float,
    ) -> None:
        self._methods = {runner.method: (runner, request, response) for runner, request, response in methods}
        self._max_message_bytes = max_message_bytes
        self._read_timeout_s = read_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        runner, request_type, response_type = self._methods[scope["path"]]
        if scope["method"] != "POST":
            await respond(send, 405, [("allow", "POST")], b"")
            return
        headers = header_lists(scope)
        unreadable: DomainError | None = None
        try:
            metadata, timeout_s = grpc_metadata(scope), _timeout(first(headers, "connect-timeout-ms"))
        except DomainError as error:
            unreadable, metadata, timeout_s = error, (), None

        async def read() -> bytes:
            if unreadable is not None:
                raise unreadable
            return await self._read(receive, request_type)

        call = Call(runner.method, "connect", metadata, peer_of(scope), timeout_s)
        outcome = await runner.run(call, read)
        if outcome.response is not None:
            answer = json_format.MessageToDict(
                response_type.FromString(outcome.response), always_print_fields_with_no_presence=True
            )
            await respond(send, 200, [("content-type", CONTENT_TYPE)], json.dumps(answer).encode())
            return
        await respond(
            send,
            HTTP_STATUS[outcome.code],
            [("content-type", CONTENT_TYPE), *json_body.retry_after(outcome)],
            json.dumps(connect_error(outcome)).encode(),
        )

    async def _read(self, receive: Receive, request_type: type[Message]) -> bytes:
        body = await read_call_body(receive, self._max_message_bytes, self._read_timeout_s)
        request = request_type()
        json_body.parse(body, request, strict=json_body.is_strict(request_type))
        return request.SerializeToString()


def connect_error(outcome: Outcome) -> dict[str, Any]:
    """The Connect error body: the code's name in lower snake case, the message, and each detail
    as {"type", "value"} (the packed message, base64 without padding) with a readable "debug"."""
    error: dict[str, Any] = {"code": outcome.code.name.lower(), "message": outcome.message}
    details = []
    for packed in outcome.status.details if outcome.status is not None else ():
        detail: dict[str, Any] = {
            "type": packed.TypeName(),
            "value": base64.b64encode(packed.value).decode("ascii").rstrip("="),
        }
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            message = kind()
            if packed.Unpack(message):
                detail["debug"] = json_format.MessageToDict(message)
        details.append(detail)
    if details:
        error["details"] = details
    return error


def _timeout(value: str) -> float | None:
    """Connect-Timeout-Ms: at most 10 digits of milliseconds."""
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise bad_request("connect-timeout-ms is malformed")
    return int(value) / 1000
