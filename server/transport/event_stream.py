"""`GET /events:stream?after=POSITION`: the events for a SIEM, as NDJSON (one JSON object a line),
on the HTTP port and through Envoy.

Like rest.py, an adapter of ListEvents' Pipeline: it turns the request into a Call of
`AuditService.ListEvents` with `after_position` and a page size, so the caller is authenticated
and authorised exactly as every call is (`audit.read`: an IAM_OWNER reads the instance's events,
an ORG_OWNER those of the context organisation, `x-zitadel-orgid`), and logged and counted with
transport `ndjson`. Each line is an Event of audit_service.proto in proto3 JSON, with every field
(`position`, `aggregateType`, `aggregateId`, `sequence`, `eventType`, `resourceOwner`,
`creationDate`, `payload`, `actor`). A request answers at most `limit` events (1 to 100, 100 by
default) after `after` (0: from the first), in position order, and ends: a consumer sends the
last line's position as `after` again, and an empty answer means it has read everything so far.
Positions are given in commit order (server/store/audit.py), so resuming after the last position
read loses no event and repeats none. Errors are the JSON API's: google.rpc.Status as JSON with
the HTTP status of the code.
"""

import json
from typing import Any
from urllib.parse import parse_qsl

from google.protobuf import json_format
from machinesecrets.v1 import audit_service_pb2 as audit_pb

from server.domain.errors import DomainError, FieldViolation, InvalidArgument
from server.domain.paging import MAX_PAGE_SIZE
from server.transport.asgi import Receive, Send, respond
from server.transport.http_call import HttpCall
from server.transport.http_errors import COMPACT, respond_error, status_json
from server.transport.pipeline import Request, Runner

EVENTS_STREAM_PATH = "/events:stream"
CONTENT_TYPE = "application/x-ndjson"
MAX_POSITION_DIGITS = 18  # a BIGINT's positions
MAX_QUERY_BYTES = 64


def ndjson(response: audit_pb.ListEventsResponse) -> bytes:
    """One line per event, each a compact proto3 JSON object with every field."""
    return b"".join(
        json.dumps(
            json_format.MessageToDict(event, always_print_fields_with_no_presence=True), separators=(",", ":")
        ).encode()
        + b"\n"
        for event in response.events
    )


class EventStream:
    """Serves ListEvents' runner as NDJSON pages after a position."""

    def __init__(self, runner: Runner) -> None:
        self._runner = runner

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await respond(send, 405, [("allow", "GET")], b"")
            return
        head = HttpCall.of(scope, self._runner.method, "ndjson")
        request = audit_pb.ListEventsRequest()
        try:
            request.after_position, request.page_size = _after_and_limit(scope.get("query_string") or b"")
        except DomainError as error:
            head.refused = head.refused or error

        async def body() -> Request:
            return request

        outcome = await self._runner.run(head.call, head.read(body))
        if isinstance(outcome.response, audit_pb.ListEventsResponse):
            await respond(
                send,
                200,
                [("content-type", CONTENT_TYPE), ("cache-control", "no-store")],
                ndjson(outcome.response),
            )
            return
        await respond_error(send, outcome, status_json(outcome), COMPACT)


def _after_and_limit(query: bytes) -> tuple[int, int]:
    """`after` (0 when absent) and `limit` (MAX_PAGE_SIZE when absent), each at most once; any
    other parameter is refused and named."""
    if len(query) > MAX_QUERY_BYTES:
        raise InvalidArgument([FieldViolation("query", f"must be at most {MAX_QUERY_BYTES} bytes")])
    try:
        pairs = parse_qsl(query.decode("ascii"), keep_blank_values=True, strict_parsing=bool(query))
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument(
            [FieldViolation("query", "is not a query string of name=value pairs")]
        ) from None
    given: dict[str, str] = {}
    violations = []
    for name, value in pairs:
        if name not in ("after", "limit"):
            violations.append(FieldViolation(name, "is not a parameter of the stream: after, limit"))
        elif name in given:
            violations.append(FieldViolation(name, "may be given once"))
        given[name] = value
    after, limit = given.get("after", "0"), given.get("limit", str(MAX_PAGE_SIZE))
    if not (after.isascii() and after.isdigit() and len(after) <= MAX_POSITION_DIGITS):
        violations.append(FieldViolation("after", "must be a position: decimal digits"))
    if not (len(limit) <= 3 and limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_PAGE_SIZE):
        violations.append(FieldViolation("limit", f"must be from 1 to {MAX_PAGE_SIZE}"))
    if violations:
        raise InvalidArgument(violations)
    return int(after), int(limit)
