"""Proto3 JSON in and out, for the adapters that read JSON themselves (rest.py, connect.py).

The native API refuses a field it does not know, and names it: a misspelt `"username"` is
`INVALID_ARGUMENT` with a field violation on `username`, not a confusing "user_name must not be
empty", and a field a client believes does something (an organisation, a flag) is never silently
dropped. ZITADEL's services accept unknown fields, as ZITADEL does: its clients, built from newer
protos, send fields this service does not have.
"""

import json
import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from server.domain.errors import FieldViolation, InvalidArgument
from server.limits import MAX_JSON_VALUES

NATIVE_PACKAGE = "machinesecrets.v1"
_UNKNOWN = re.compile(r'has no field named "([^"]+)" at "([^"]+)"')
_WRONG = re.compile(r"Failed to parse (\w+) field")


def is_strict(request_type: type[Message]) -> bool:
    """Whether unknown fields are refused: for the native API's messages."""
    return request_type.DESCRIPTOR.full_name.startswith(NATIVE_PACKAGE + ".")


def parse(body: bytes, request: Message, *, strict: bool) -> None:
    """Fills request from a proto3 JSON body (empty: an empty message); InvalidArgument naming the
    field that is unknown (when strict), malformed, or given twice, or when the body holds more
    than MAX_JSON_VALUES values.

    What json_format.Parse does, in its two steps, with checks between them:
    - the size of the document, known before its conversion: that is pure Python, and runs before
      the call is authenticated;
    - proto3 JSON lets a field be named by its JSON name or its proto name, and json_format takes
      both in one object (`{"userNamePrefix": "a", "user_name_prefix": "b"}`), the last one
      winning. Which one that is depends on who reads the object (a gateway, a log, a WAF may each
      take another), so it is refused, as a key given twice is, and as Go's protojson refuses it."""
    try:
        document = json.loads(body.decode("utf-8") if body else "{}", object_pairs_hook=_unique)
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidArgument([not_json(request.DESCRIPTOR)]) from None
    if not at_most(MAX_JSON_VALUES, document):
        raise InvalidArgument([FieldViolation("request", f"holds more than {MAX_JSON_VALUES} JSON values")])
    twice = _spelt_twice(document, request.DESCRIPTOR, "")
    if twice:
        raise InvalidArgument(twice)
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=not strict)
    except json_format.ParseError as error:
        raise InvalidArgument([_violation(str(error), request.DESCRIPTOR)]) from None
    except Exception:  # as json_format.Parse: a value of a type the converter did not expect
        raise InvalidArgument([not_json(request.DESCRIPTOR)]) from None


def _spelt_twice(document: Any, descriptor: Any, path: str) -> list[FieldViolation]:
    """A violation for each field that the JSON object document (of the message descriptor) names
    twice, by its JSON name and by its proto name, in it or in the messages it holds; by the
    field's JSON name (dotted, below the top)."""
    if not isinstance(document, dict) or descriptor.full_name.startswith("google.protobuf."):
        return []  # not an object, or a well-known type with a JSON form of its own
    violations: list[FieldViolation] = []
    for field in descriptor.fields:
        where = f"{path}.{field.json_name}" if path else field.json_name
        given = [name for name in dict.fromkeys((field.json_name, field.name)) if name in document]
        if len(given) > 1:
            spellings = " and ".join(given)
            violations.append(FieldViolation(where, f"is given twice, as {spellings}: give it once"))
            continue
        if not given or field.message_type is None or field.message_type.GetOptions().map_entry:
            continue
        value = document[given[0]]
        for item in value if isinstance(value, list) else [value]:
            violations += _spelt_twice(item, field.message_type, where)
    return violations


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when it names a member twice (as json_format.Parse refuses it)."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("a member is named twice")
    return document


def at_most(limit: int, document: Any) -> bool:
    """Whether a parsed JSON document holds at most limit values, counting every member, element
    and scalar; it stops counting past the limit, so its cost is bounded by it."""
    count, pending = 0, [document]
    while pending:
        count += 1
        if count > limit:
            return False
        value = pending.pop()
        if isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    return True


def not_json(descriptor: Any) -> FieldViolation:
    return FieldViolation("request", f"the body is not a {descriptor.name} in proto3 JSON")


def _violation(text: str, descriptor: Any) -> FieldViolation:
    unknown = _UNKNOWN.search(text)
    if unknown is not None:
        name, where = unknown.groups()
        path = where.split(".", 1)[1] if "." in where else ""
        known = _known_fields(descriptor, path)
        field = f"{path}.{name}" if path else name
        return FieldViolation(field, f"is not a field of this call; its fields are {', '.join(known)}")
    wrong = _WRONG.search(text)
    if wrong is not None:
        return FieldViolation(wrong[1], "has the wrong type or form for proto3 JSON")
    return not_json(descriptor)


def _known_fields(descriptor: Any, path: str) -> list[str]:
    """The JSON names of the fields of the message at path (dotted JSON names) in descriptor."""
    for step in path.split(".") if path else ():
        fields = {f.json_name: f for f in descriptor.fields} | {f.name: f for f in descriptor.fields}
        if step not in fields or fields[step].message_type is None:
            return []
        descriptor = fields[step].message_type
    return [f.json_name for f in descriptor.fields]


def render(response: Message) -> bytes:
    """A response as compact proto3 JSON, with fields at their default values too (as Envoy's
    transcoder prints them: always_print_primitive_fields)."""
    document = json_format.MessageToDict(response, always_print_fields_with_no_presence=True)
    return json.dumps(document, separators=(",", ":")).encode()
