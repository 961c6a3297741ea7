"""A field named twice, by its JSON name and by its proto name, is refused (400, INVALID_ARGUMENT
on the field), as a field given twice under one name is: in a query string and in a JSON body, on
the HTTP port and through Envoy.

`GET /users?userNamePrefix=a&user_name_prefix=b` was accepted and the last one won: which one that
is depends on who reads the query (a gateway rule, a WAF, an audit log may each take another).
"""

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.rpc import error_details_pb2

from tests.api import METHODS
from tests.codes import code_name
from tests.service import Running

OPENAPI = json.loads((Path(__file__).parent.parent / "generated" / "openapi.json").read_text())
NATIVE = "machinesecrets.v1."


def get_operations() -> list[tuple[str, Descriptor, bool]]:
    """Every GET operation of the OpenAPI document that is an RPC: its path, its request message,
    and whether it is the native API's (served on the HTTP port too) rather than ZITADEL's (Envoy's
    transcoder alone)."""
    found = []
    for path, operations in OPENAPI["paths"].items():
        if "get" not in operations:
            continue
        methods = {m for name, m in METHODS.items() if _binding(m) == ("GET", path)}
        if not methods:
            continue  # an HTTP endpoint, not an RPC (OAuth discovery)
        (method,) = methods
        native = method.containing_service.full_name.startswith(NATIVE)
        found.append((path, method.input_type, native))
    return found


def _binding(method: MethodDescriptor) -> tuple[str, str] | None:
    """(verb, path template) of a method's google.api.http rule; None for a method without one."""
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    return None if verb is None else (verb.upper(), getattr(rule, verb))


def query_parameters(path: str) -> list[str]:
    return [p["name"] for p in OPENAPI["paths"][path]["get"].get("parameters", []) if p.get("in") == "query"]


def field_named(message: Descriptor, name: str) -> FieldDescriptor:
    (field,) = [f for f in message.fields if name in (f.json_name, f.name)]
    return field


def value_for(field: FieldDescriptor) -> str:
    """A value of the field's type that the call takes."""
    if field.enum_type is not None:
        return str(field.enum_type.values[-1].name)
    if field.message_type is not None and field.message_type.full_name == "google.protobuf.Timestamp":
        return "2026-01-01T00:00:00Z"
    return "1" if field.type in (FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64) else ""


def doors(running: Running, native: bool) -> list[str]:
    service = running.service
    envoy = f"http://127.0.0.1:{service.envoy_port}"
    return [f"http://127.0.0.1:{service.http_port}", envoy] if native else [envoy]


def violations(answer: httpx.Response) -> dict[str, str]:
    """The field violations of a JSON error: google.rpc.Status as the transcoder prints it, or
    Connect's error with its details in base64."""
    found: dict[str, str] = {}
    for detail in answer.json().get("details", []):
        if detail.get("@type", "").endswith("/google.rpc.BadRequest"):
            found |= {v["field"]: v["description"] for v in detail["fieldViolations"]}
        elif detail.get("type") == "google.rpc.BadRequest":
            value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
            bad = error_details_pb2.BadRequest.FromString(value)
            found |= {v.field: v.description for v in bad.field_violations}
    return found


def test_the_document_has_the_lists_filters() -> None:
    """The loops below go through these, at least (a document that lost them would test nothing)."""
    by_path = {path: query_parameters(path) for path, _, _ in get_operations()}
    assert by_path["/users"] == ["userNamePrefix", "type", "pageSize", "pageToken", "contains"]
    assert by_path["/orgs"] == ["pageSize", "pageToken"]
    assert by_path["/events"] == [
        "aggregateType", "aggregateId", "actorUserId", "eventType", "since", "until", "afterPosition",
        "pageSize", "pageToken",
    ]  # fmt: skip
    assert by_path["/users/{user_id}/events"] == ["pageSize", "pageToken"]


async def test_every_query_parameter_spelt_both_ways_is_refused(running: Running) -> None:
    headers = {"authorization": f"Bearer {running.admin_token}"}
    admin = await running.service.store.user_by_name("admin")
    assert admin is not None
    tried = 0
    for template, request, native in get_operations():
        path = template.replace("{user_id}", admin.id)  # a list of a user's: the admin's own
        for parameter in query_parameters(template):
            field = field_named(request, parameter)
            value = value_for(field)
            twice = field.json_name != field.name
            expected = (
                f"is given twice, as {field.json_name} and {field.name}: give it once"
                if twice
                else "may be given once"
            )
            for base in doors(running, native):
                async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                    # One spelling is taken; both, even with one value, are refused.
                    alone = await http.get(path, params={parameter: value})
                    assert alone.status_code == 200, (base, path, parameter, alone.text)
                    both = await http.get(path, params=[(field.json_name, value), (field.name, value)])
                    assert both.status_code == 400, (base, path, parameter, both.text)
                    assert code_name(both.json()["code"]) == "INVALID_ARGUMENT"
                    assert violations(both) == {field.json_name: expected}, (base, path, parameter)
                    tried += 1
    assert tried >= 12  # six parameters of two lists, on two doors


async def test_a_path_field_in_the_query_is_refused_on_every_get(running: Running) -> None:
    """The GET operations without query parameters, ZITADEL's included: a path field named again in
    the query, in both spellings, is refused (by Envoy for ZITADEL's paths, which only its
    transcoder serves)."""
    headers = {"authorization": f"Bearer {running.admin_token}"}
    for path, request, native in get_operations():
        variables = [name for name in request.fields_by_name if "{" + name + "}" in path]
        if not variables:
            continue
        field = request.fields_by_name[variables[0]]
        url = path.replace("{" + field.name + "}", "1")
        for base in doors(running, native):
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                answer = await http.get(url, params=[(field.json_name, "2"), (field.name, "3")])
                assert answer.status_code == 400, (base, url, answer.text)


NAMED_TWICE = {"userName": "spelt-a", "user_name": "spelt-b", "name": "Service"}


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        # The native API's own REST path: the service reads the body itself.
        ("/users/machine", NAMED_TWICE, "userName"),
        # The Connect call in JSON, as ZITADEL's SDKs make it: the native API, and ZITADEL's (whose
        # services take fields they do not know, but not one field twice).
        ("/machinesecrets.v1.UserService/AddMachineUser", NAMED_TWICE, "userName"),
        (
            "/zitadel.user.v2.UserService/CreateUser",
            {"organizationId": "1", "organization_id": "2", "username": "spelt-c", "machine": {"name": "a"}},
            "organizationId",
        ),
    ],
)
async def test_a_body_field_spelt_both_ways_is_refused(
    running: Running, path: str, body: dict[str, Any], field: str
) -> None:
    headers = {"authorization": f"Bearer {running.admin_token}", "content-type": "application/json"}
    proto_name = "".join("_" + ch.lower() if ch.isupper() else ch for ch in field)
    for base in doors(running, native=True):
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            answer = await http.post(path, content=json.dumps(body))
            assert answer.status_code == 400, (base, path, answer.text)
            expected = f"is given twice, as {field} and {proto_name}: give it once"
            assert violations(answer) == {field: expected}, (base, path)
