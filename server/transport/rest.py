"""JSON on the native API's own paths (each method's google.api.http rule, e.g.
`POST /users/machine`), served by the service itself: on the HTTP port, and through Envoy, which
routes these paths here instead of transcoding them. Like grpcweb.py and connect.py, an adapter: it
turns the HTTP request into a Call, runs the method's Pipeline, and writes the Outcome back.

It reads the JSON itself so that a field the call does not know is refused and named
(json_body.py), which Envoy's transcoder cannot do: it drops such fields. Everything else is
what the transcoder did: path variables fill their fields (a body may not name them otherwise:
path_fields.py), `body: "*"` is the rest of the request, a body of any content type is read as
JSON (curl's `-d` sends no JSON type), answers are proto3 JSON with default values printed, and
errors are google.rpc.Status as JSON with the HTTP status of the code. ZITADEL's REST paths stay
with Envoy's transcoder: ZITADEL accepts unknown fields.
"""

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from server.domain.errors import FieldViolation, InvalidArgument
from server.limits import MAX_ID_LENGTH, MAX_PAGE_TOKEN_LENGTH, MAX_USER_NAME_LENGTH
from server.transport import json_body
from server.transport.asgi import Receive, Send, respond
from server.transport.http_call import HttpCall, read_call_body
from server.transport.http_errors import COMPACT, CONTENT_TYPE, respond_error, status_json
from server.transport.path_fields import NAMED_BY_PATH, HttpBinding, field_owner, http_bindings
from server.transport.pipeline import Runner

# The longest id, percent-encoded: 4 bytes of UTF-8 a character, 3 characters a byte.
MAX_VARIABLE_BYTES = MAX_ID_LENGTH * 12
# The longest query of a call without a body: a page token, a user-name prefix percent-encoded,
# and the short fields (page size, type). A longer one is refused before it is decoded.
MAX_QUERY_BYTES = MAX_PAGE_TOKEN_LENGTH + MAX_USER_NAME_LENGTH * 12 + 256


@dataclass(frozen=True)
class Route:
    binding: HttpBinding
    runner: Runner
    request_type: type[Message]

    @property
    def slashes(self) -> int:
        """The path's segments: a variable matches none of its own, so only paths with as many
        slashes can be this route's."""
        return self.binding.template.count("/")


class RestEndpoint:
    """Serves methods at their HTTP bindings."""

    def __init__(
        self,
        methods: Iterable[tuple[MethodDescriptor, Runner]],
        max_message_bytes: int,
        read_timeout_s: float,
    ) -> None:
        self._routes: list[Route] = []
        for method, runner in methods:
            bindings = http_bindings(method)
            if not bindings:
                raise ValueError(f"{method.full_name} has no HTTP binding")
            self._routes.append(Route(bindings[0], runner, GetMessageClass(method.input_type)))
        self._max_message_bytes = max_message_bytes
        self._read_timeout_s = read_timeout_s

    def prefixes(self) -> set[str]:
        """The first path segments this endpoint answers under, e.g. "/users"."""
        return {"/" + route.binding.template.split("/")[1].split(":")[0] for route in self._routes}

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # Matched on the path as sent, each variable decoded on its own: an id with an escaped
        # slash in it is one (invalid) id, not two segments.
        raw = scope.get("raw_path") or scope["path"].encode()
        found = self._match(scope["method"], raw.decode("latin-1"))
        if found is None:
            # What Envoy's transcoder answered too (reject_unknown_method): NOT_FOUND, 404.
            await _respond_error(send, 404, 5, "no method of the API answers this verb at this path")
            return
        route, variables = found
        query = scope.get("query_string") or b""
        if query and route.binding.body:
            # A query parameter could only name a field of the path or the body again, and
            # redirect the call past whatever judged its path: PUT /users/X/secret?userId=Y.
            message = "query parameters are not accepted: the path and the body name every field"
            await _respond_error(send, 400, 3, message)
            return
        head = HttpCall.of(scope, route.runner.method, "json")
        # Every path variable is an id: one longer than any id can be, percent-encoded, is
        # refused as the domain refuses a long id, before it is decoded.
        too_long = [name for name, value in variables.items() if len(value) > MAX_VARIABLE_BYTES]
        if too_long:
            head.refused = InvalidArgument(
                [FieldViolation(name, f"must be at most {MAX_ID_LENGTH} characters") for name in too_long]
            )
        variables = {name: unquote(value) for name, value in variables.items() if name not in too_long}
        outcome = await route.runner.run(
            head.call, head.read(lambda: self._read(receive, route, variables, query))
        )
        if outcome.response is None:
            await respond_error(send, outcome, status_json(outcome), COMPACT)
        else:
            await respond(send, 200, [("content-type", CONTENT_TYPE)], json_body.render(outcome.response))

    def _match(self, verb: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route of verb and path, and its variables as sent (percent-encoded). Only the
        routes with as many segments are matched: a path of 64 KiB costs one scan or two, not
        one per route."""
        slashes = path.count("/")
        for route in self._routes:
            if (
                route.binding.verb == verb
                and route.slashes == slashes
                and (variables := route.binding.variables(path)) is not None
            ):
                return route, variables
        return None

    async def _read(self, receive: Receive, route: Route, variables: dict[str, str], query: bytes) -> Message:
        request = route.request_type()
        if route.binding.body == "*":
            body = await read_call_body(receive, self._max_message_bytes, self._read_timeout_s)
            json_body.parse(body, request, strict=json_body.is_strict(route.request_type))
        elif query:
            json_body.parse(_query_fields(query, request, variables), request, strict=True)
        for path, value in variables.items():
            owner, name = field_owner(request, path)
            given = getattr(owner, name)
            if given and given != value:
                raise InvalidArgument([FieldViolation(path, NAMED_BY_PATH)])
            setattr(owner, name, value)
        return request


def _query_fields(query: bytes, request: Message, variables: dict[str, str]) -> bytes:
    """A call without a body takes its other fields as query parameters (`?pageSize=10&type=
    USER_TYPE_MACHINE`), as Envoy's transcoder does: each by its JSON or proto name (one of the
    two: json_body.parse refuses both), once, never one the path names. Returned as a proto3 JSON
    object of strings, which json_format reads into numbers and enums as it reads them in a body."""
    if len(query) > MAX_QUERY_BYTES:
        raise InvalidArgument([FieldViolation("query", f"must be at most {MAX_QUERY_BYTES} bytes")])
    try:
        pairs = parse_qsl(
            query.decode("ascii"), keep_blank_values=True, strict_parsing=True, max_num_fields=16
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidArgument(
            [FieldViolation("query", "is not a query string of name=value pairs")]
        ) from None
    names = [name for name, _ in pairs]
    fields = request.DESCRIPTOR.fields_by_name
    named_by_path = {*variables, *(fields[name].json_name for name in variables if name in fields)}
    violations = [FieldViolation(name, "is named by the path") for name in names if name in named_by_path]
    violations += [
        FieldViolation(name, "may be given once") for name in sorted(set(names)) if names.count(name) > 1
    ]
    if violations:
        raise InvalidArgument(violations)
    return json.dumps(dict(pairs)).encode()


async def _respond_error(send: Send, status: int, code: int, message: str) -> None:
    body = json.dumps({"code": code, "message": message, "details": []}, separators=(",", ":")).encode()
    await respond(send, status, [("content-type", CONTENT_TYPE)], body)
