"""The request fields a JSON call names in its path, and the rule that the path wins.

A method's google.api.http binding (`PUT /management/v1/users/{user_id}/secret`) names some
request fields in the path. A gateway rule, an audit log and the caller all read the path as "this
call acts on user X", so nothing else in the request may name another value for them:

- the service's own JSON routes (rest.py) fill them from the path, and refuse a body that names
  them otherwise;
- Envoy's gRPC-JSON transcoder (ZITADEL's REST paths) lets the body win: `PUT .../users/X/secret`
  with the body `{"user_id": "Y"}` (or `{"user\\u005fid": "Y"}`, and on a GET or a DELETE too)
  reached the service as a call on Y. The transcoder records the path it matched in
  `x-envoy-original-path`, replacing any the client sent, and adds `x-envoy-original-method`. The
  pipeline's path step (`check_transcoded`) reads the path's fields again from there, decoded as
  the transcoder decodes a one-segment variable, and refuses a call whose request says otherwise.

The refusal is INVALID_ARGUMENT with a field violation on the field (its proto name), as rest.py's.
Envoy's own guard, `request_validation_options.reject_binding_body_field_collisions`, catches the
same bodies (seen with Envoy 1.40), but answers in its own words, a plain 400 that names no field
and quotes both values; a body that spells the JSON name (`userId`) does not override the path
there.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from google.api import annotations_pb2, http_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message

from server.domain.errors import FieldViolation, InvalidArgument

ORIGINAL_PATH = "x-envoy-original-path"
ORIGINAL_METHOD = "x-envoy-original-method"
NAMED_BY_PATH = "is named by the path; leave it out of the body"
_VARIABLE = re.compile(r"\{([a-z_][a-z0-9_.]*)\}")


@dataclass(frozen=True)
class HttpBinding:
    """One google.api.http rule of a method: `verb template`, and what the body is ("*": the
    request's other fields; "": none)."""

    verb: str
    template: str
    body: str
    pattern: re.Pattern[str]

    def variables(self, path: str) -> dict[str, str] | None:
        """Each path variable's segment as sent (still percent-encoded), by field path; None
        where the path is not this binding's."""
        matched = self.pattern.match(path)
        if matched is None:
            return None
        return {name.replace("__", "."): value for name, value in matched.groupdict().items()}


def http_bindings(method: MethodDescriptor) -> list[HttpBinding]:
    """The method's google.api.http rule and its additional bindings; none for a method without.
    A variable that does not name a string field of the request stops the start: a typo in the
    .proto would otherwise be a field never checked."""
    rule = http_pb2.HttpRule()
    rule.MergeFrom(method.GetOptions().Extensions[annotations_pb2.http])
    bindings = []
    for each in (rule, *rule.additional_bindings):
        verb = each.WhichOneof("pattern")
        if verb is None or verb == "custom":
            continue
        template = str(getattr(each, verb))
        for field in _VARIABLE.findall(template):
            if not _is_string_field(method.input_type, field.split(".")):
                raise ValueError(f"{method.full_name}: {template} names {field!r}, not a string field")
        bindings.append(HttpBinding(verb.upper(), template, each.body, template_pattern(template)))
    return bindings


def template_pattern(template: str) -> re.Pattern[str]:
    """A path template as a regular expression; each {field} matches one segment, empty too (the
    service then says the field must not be empty, as it did behind the transcoder)."""
    parts, position = [], 0
    for variable in _VARIABLE.finditer(template):
        parts.append(re.escape(template[position : variable.start()]))
        parts.append(f"(?P<{variable[1].replace('.', '__')}>[^/]*)")
        position = variable.end()
    parts.append(re.escape(template[position:]))
    return re.compile("".join(parts) + r"\Z")


def field_owner(request: Message, path: str) -> tuple[Message, str]:
    """The message that holds the field at this dotted path, and the field's name."""
    *parents, name = path.split(".")
    owner = request
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def check_transcoded(
    bindings: Sequence[HttpBinding], request: Message, metadata: Sequence[tuple[str, str | bytes]]
) -> None:
    """For a call Envoy's transcoder made from JSON: every field its path names holds the path's
    value, whatever the body said; else INVALID_ARGUMENT naming each field that does not.

    A call is the transcoder's when it carries `x-envoy-original-method`: the transcoder adds it
    to every call it makes, and a route's path rewrite (a proxy further out) sets only the path.
    A gRPC caller who sends the headers itself only has its own call checked against them.
    """
    verbs = [value for key, value in metadata if key == ORIGINAL_METHOD]
    if not verbs or not bindings:
        return
    paths = [value for key, value in metadata if key == ORIGINAL_PATH]
    # Matched as the transcoder matches it: without the query, trailing slashes ignored.
    path = paths[0].partition("?")[0].rstrip("/") if len(paths) == 1 and isinstance(paths[0], str) else ""
    found = [
        variables
        for binding in bindings
        if binding.verb in verbs and (variables := binding.variables(path)) is not None
    ]
    if not found:
        # The transcoder matched it to this method, so this cannot happen unless the path was
        # read differently here: refuse rather than leave the fields unchecked.
        raise InvalidArgument([FieldViolation("path", "does not match this method's HTTP binding")])
    violations = [
        FieldViolation(field, NAMED_BY_PATH)
        for variables in found
        for field, sent in variables.items()
        # The transcoder decodes every %XX of a one-segment variable (a %2F too).
        if getattr(*field_owner(request, field)).encode() != unquote_to_bytes(sent)
    ]
    if violations:
        raise InvalidArgument(violations)


def _is_string_field(message: Descriptor, path: list[str]) -> bool:
    field = message.fields_by_name.get(path[0])
    if field is None or field.is_repeated:
        return False
    if len(path) == 1:
        return field.type == FieldDescriptor.TYPE_STRING
    return field.message_type is not None and _is_string_field(field.message_type, path[1:])
