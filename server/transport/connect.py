"""The Connect protocol's unary call (connectrpc.com/docs/protocol), in both its encodings:
`POST /<package>.<Service>/<Method>` with `Content-Type: application/proto` and the message's
protobuf bytes (`buf curl`'s default, connect-es with useBinaryFormat), or `application/json` and
the message in proto3 JSON (the call ZITADEL's SDKs make). The answer is the response in the
request's encoding, or a Connect error `{"code", "message", "details"}` with the HTTP status of its
code: JSON in both encodings, as the protocol has it. Like grpcweb.py, an adapter: it turns the
HTTP request into a Call, runs the method's Pipeline, and writes the Outcome back.

The protobuf bytes go to the pipeline as they are, and it parses them as it parses gRPC's; the JSON
is read into the message here (json_body.py), and goes to the pipeline as that message. Unknown
JSON fields are ignored on ZITADEL's services, as ZITADEL's own server does (a client built from
newer protos sends fields this service does not know), and refused on the native API.
"""

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.transport import json_body
from server.transport.asgi import Receive, Send, first, header_lists, media_type, respond
from server.transport.http_call import HttpCall, bad_request, read_call_body
from server.transport.http_errors import SPACED, connect_error, respond_error
from server.transport.pipeline import Request, Runner

JSON_TYPE = "application/json"
PROTO_TYPE = "application/proto"
CONTENT_TYPES = (JSON_TYPE, PROTO_TYPE)


class ConnectEndpoint:
    """Serves the runners at their method paths as Connect unary calls, binary and JSON; each
    runner with the type of its request, which a JSON call is read into."""

    def __init__(
        self,
        methods: Iterable[tuple[Runner, type[Message]]],
        max_message_bytes: int,
        read_timeout_s: float,
    ) -> None:
        self._methods = {runner.method: (runner, request_type) for runner, request_type in methods}
        self._max_message_bytes = max_message_bytes
        self._read_timeout_s = read_timeout_s

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        runner, request_type = self._methods[scope["path"]]
        if scope["method"] != "POST":
            await respond(send, 405, [("allow", "POST")], b"")
            return
        headers = header_lists(scope)
        binary = media_type(headers) == PROTO_TYPE
        head = HttpCall.of(
            scope, runner.method, "connect", lambda: _timeout(first(headers, "connect-timeout-ms"))
        )
        outcome = await runner.run(head.call, head.read(lambda: self._read(receive, request_type, binary)))
        if outcome.response is None:
            await respond_error(send, outcome, connect_error(outcome), SPACED)
        elif binary:
            await respond(send, 200, [("content-type", PROTO_TYPE)], outcome.response.SerializeToString())
        else:
            answer = json_format.MessageToDict(outcome.response, always_print_fields_with_no_presence=True)
            await respond(send, 200, [("content-type", JSON_TYPE)], json.dumps(answer).encode())

    async def _read(self, receive: Receive, request_type: type[Message], binary: bool) -> Request:
        body = await read_call_body(receive, self._max_message_bytes, self._read_timeout_s)
        if binary:
            return body
        request = request_type()
        json_body.parse(body, request, strict=json_body.is_strict(request_type))
        return request


def _timeout(value: str) -> float | None:
    """Connect-Timeout-Ms: at most 10 digits of milliseconds."""
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise bad_request("connect-timeout-ms is malformed")
    return int(value) / 1000
