"""The path names what a JSON call acts on (issue 28, item 4).

Through Envoy's transcoder, `PUT /management/v1/users/X/secret` with the body `{"user_id": "Y"}`
returned Y's secret: the body overrode the path. Every operation of the OpenAPI document is tried
here, with each of its path fields named again in the body (by its proto name, its JSON name, and
the proto name with an escaped character) and, for a call without a body, in the query: the call
acts on what the path names, or it is refused with INVALID_ARGUMENT naming the field. Through
Envoy, and on the HTTP port's own JSON routes (the native API's; ZITADEL's REST paths are only
Envoy's).
"""

import contextlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import project_service_pb2 as project_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.app import NATIVE_SERVICES
from server.events.base import AGGREGATE_PROJECT, AGGREGATE_USER
from server.transport.path_fields import NAMED_BY_PATH, http_bindings
from tests.api import ApiError
from tests.codes import code_name
from tests.service import Running, client
from tests.world import World

DOCUMENT = json.loads((Path(__file__).resolve().parent.parent / "generated" / "openapi.json").read_text())
VERBS_WITHOUT_BODY = ("GET", "DELETE")


def operations_with_path_fields() -> list[tuple[str, str, list[str]]]:
    """(verb, template, path fields) of every operation of the document that has path fields."""
    found = []
    for template, operations in DOCUMENT["paths"].items():
        for verb, operation in operations.items():
            fields = [p["name"] for p in operation.get("parameters", []) if p.get("in") == "path"]
            if fields:
                found.append((verb.upper(), template, fields))
    return found


def served_on_the_http_port(template: str) -> bool:
    """The native API's paths, which the service's HTTP port serves itself (rest.py)."""
    prefixes = {
        "/" + binding.template.split("/")[1].split(":")[0]
        for service in NATIVE_SERVICES
        for method in service.methods
        for binding in http_bindings(method)
    }
    return "/" + template.split("/")[1].split(":")[0] in prefixes


DOORS = [
    *((verb, template, fields, "envoy") for verb, template, fields in operations_with_path_fields()),
    *(
        (verb, template, fields, "http")
        for verb, template, fields in operations_with_path_fields()
        if served_on_the_http_port(template)
    ),
]


# Every machine's key: one public key uploaded (cheap: no key pair to make for each).
PUBLIC_KEY = (
    ec.generate_private_key(ec.SECP256R1())
    .public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
)


def json_name(field: str) -> str:
    """The proto3 JSON name of a field: lowerCamelCase."""
    head, *rest = field.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def escaped(field: str) -> str:
    """The field's proto name with its first character escaped, as a JSON key (the transcoder's
    parser reads it as the name itself)."""
    return f"\\u{ord(field[0]):04x}{field[1:]}"


@dataclass
class Machine:
    """A machine user with a secret, a personal access token and a machine key, and a project of
    its own with a role, an API application and a grant of the role to the user: something for
    every path field."""

    user_id: str
    secret_id: str
    token_id: str
    key_id: str
    project_id: str
    role_key: str
    app_id: str
    grant_id: str
    issuer_id: str  # a trusted issuer of the organisation's, the machine's own (issuer_of)
    credential_id: str  # its federated credential, of that issuer
    metadata_key: str  # a key of its metadata, its own (metadata_key_of)

    def value(self, field: str, template: str = "") -> str:
        values = {"user_id": self.user_id, "id": self.user_id, "secret_id": self.secret_id,
                  "token_id": self.token_id, "key_id": self.key_id, "project_id": self.project_id,
                  "role_key": self.role_key, "app_id": self.app_id, "grant_id": self.grant_id,
                  "issuer_id": self.issuer_id, "credential_id": self.credential_id,
                  "key": self.metadata_key}  # fmt: skip
        if field == "id" and "/projects/" in template:
            return self.project_id  # ZITADEL's v1 names a project `id`
        if field not in values:
            pytest.fail(f"a new path field {field!r}: say here which value of a user it names")
        return values[field]

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.user_id, self.secret_id, self.token_id, self.key_id, self.project_id, self.app_id,
                self.grant_id, self.issuer_id, self.credential_id)  # fmt: skip


def json_http(running: Running, door: str, **headers: str) -> httpx.AsyncClient:
    """A JSON client of the admin's, through Envoy or on the HTTP port."""
    port = running.service.envoy_port if door == "envoy" else running.service.http_port
    headers = {
        "authorization": f"Bearer {running.admin_token}",
        "content-type": "application/json",
        **headers,
    }
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30)


async def machine_users(running: Running, count: int) -> list[str]:
    api = client("grpc", running.service)
    try:
        world = await World.create(api, running.admin_token)
        return [await world.machine_user() for _ in range(count)]
    finally:
        await api.close()


def filled(template: str, machine: Machine) -> str:
    """The template's path with each field the machine's value for it."""
    return re.sub(r"{([a-z_]+)}", lambda variable: machine.value(variable[1], template), template)


async def new_machine(world: World) -> Machine:
    user_id = await world.machine_user()
    secret = await world.call("CreateSecret", user_pb.CreateSecretRequest(user_id=user_id))
    token = await world.call("AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id))
    key = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id, public_key=PUBLIC_KEY))
    project = await world.call("AddProject", project_pb.AddProjectRequest(name=f"of {user_id}"))
    role_key = f"role-{user_id}"
    await world.call(
        "AddProjectRole", project_pb.AddProjectRoleRequest(project_id=project.project_id, role_key=role_key)
    )
    app = await world.call(
        "AddApiApp", project_pb.AddApiAppRequest(project_id=project.project_id, name="api")
    )
    grant = await world.call(
        "AddUserGrant",
        project_pb.AddUserGrantRequest(user_id=user_id, project_id=project.project_id, role_keys=[role_key]),
    )
    trusted = await world.call("AddTrustedIssuer", org_pb.AddTrustedIssuerRequest(issuer=issuer_of(user_id)))
    credential = await world.call(
        "AddFederatedCredential",
        user_pb.AddFederatedCredentialRequest(
            user_id=user_id, issuer=issuer_of(user_id), subject="s", audience="a"
        ),
    )
    await world.call(
        "SetUserMetadata",
        user_pb.SetUserMetadataRequest(
            user_id=user_id, metadata=[user_pb.UserMetadata(key=metadata_key_of(user_id), value=b"v")]
        ),
    )
    return Machine(
        user_id,
        str(secret.secret_id),
        str(token.token_id),
        str(key.key_id),
        str(project.project_id),
        role_key,
        str(app.app_id),
        str(grant.grant_id),
        str(trusted.issuer_id),
        str(credential.credential_id),
        metadata_key_of(user_id),
    )


def metadata_key_of(user_id: str) -> str:
    """The metadata key a test machine has: its own, so that another's names another key."""
    return f"key-{user_id}"


def issuer_of(user_id: str) -> str:
    """The trusted issuer a test machine's federated credential names: its own."""
    return f"https://idp-{user_id}.example.com"


async def everything_about(running: Running, user_id: str) -> Any:
    """The user's state, and that of its grants and of their projects."""
    store = running.service.store
    grants = await store.grants_of_user(user_id)
    user = await store.user(user_id)
    own_issuer = [] if user is None else await store.trusted_issuers(user.org_id)
    return (
        await store.events(AGGREGATE_USER, user_id),
        user,
        await store.secrets(user_id),
        await store.personal_access_tokens(user_id),
        await store.machine_keys(user_id),
        grants,
        [await store.events(AGGREGATE_PROJECT, grant.project_id) for grant in grants],
        await store.federated_credentials(user_id),
        [i for i in own_issuer if i.issuer == issuer_of(user_id)],
        await store.user_metadata(user_id),
    )


# What a body must hold besides the path's field for the call to be valid at all, so that a
# refusal names the path's field or nothing ({x.…}: the value of the machine in the path).
GRANT = {"projectId": "{x.project_id}", "roleKeys": ["{x.role_key}"]}
REQUIRED_BODY: dict[str, dict[str, Any]] = {
    "/management/v1/projects/{project_id}/apps/api": {"name": "n"},
    "/projects/{project_id}/apps": {"name": "n"},
    "/management/v1/projects/{project_id}/roles": {"roleKey": "k-new"},
    "/projects/{project_id}/roles": {"roleKey": "k-new"},
    "/management/v1/users/{user_id}/grants": GRANT,
    "/users/{user_id}/grants": GRANT,
    # ZITADEL's UpdateMachine sets the name too, which must not be empty.
    "/management/v1/users/{user_id}/machine": {"name": "n"},
    "/management/v1/users/{id}/metadata/{key}": {"value": "dg=="},
    "/management/v1/users/{id}/metadata/_bulk": {"metadata": [{"key": "{x.metadata_key}", "value": "dg=="}]},
    "/v2/users/{user_id}/metadata": {"metadata": [{"key": "{x.metadata_key}", "value": "dg=="}]},
    "/users/{user_id}/metadata": {"metadata": [{"key": "{x.metadata_key}", "value": "dg=="}]},
    "/users/{user_id}/metadata:remove": {"keys": ["{x.metadata_key}"]},
}


# What a call without a body must hold in its query to be valid at all (after the attempt's own
# parameters, so that a refusal names the attempt's).
REQUIRED_QUERY = {("DELETE", "/v2/users/{user_id}/metadata"): "keys={x.metadata_key}"}


def attempts(verb: str, field: str, value: str, template: str = "") -> list[tuple[str, bytes | None]]:
    """(query, body) of each way to name the path's field again, with another value."""
    extra = REQUIRED_BODY.get(template, {}) if verb not in VERBS_WITHOUT_BODY else {}
    head = json.dumps(extra)[1:-1] + ", " if extra else ""
    in_body: list[tuple[str, bytes | None]] = [
        ("", json.dumps({**extra, field: value}).encode()),
        ("", json.dumps({**extra, json_name(field): value}).encode()),
        ("", f'{{{head}"{escaped(field)}": "{value}"}}'.encode()),
    ]
    if verb not in VERBS_WITHOUT_BODY:
        return in_body
    return [*in_body, *((f"{name}={value}", None) for name in sorted({field, json_name(field)}))]


def named_fields(answer: httpx.Response) -> set[str]:
    """The fields an error answer's BadRequest details name."""
    return {
        violation["field"]
        for detail in answer.json()["details"]
        if detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
        for violation in detail["fieldViolations"]
    }


def conclusive(answer: httpx.Response) -> bool:
    """Whether the answer (Y seen untouched, and absent from it) shows that the call was not on Y
    whatever Y's state: it went through, on X, or it was refused as invalid, which no state of a
    user can cause."""
    return answer.is_success or code_name(answer.json()["code"]) == "INVALID_ARGUMENT"


@pytest.mark.parametrize(("verb", "template", "fields", "door"), DOORS)
async def test_the_path_wins_over_the_body_and_the_query(
    running: Running, verb: str, template: str, fields: list[str], door: str
) -> None:
    """X is in the path, Y in the body or the query: nothing happens to Y, and the answer shows
    nothing of Y. The path wins, or the call is refused."""
    api = client("grpc", running.service)
    made: list[Machine] = []
    try:
        world = await World.create(api, running.admin_token)

        async def new_machine_here() -> Machine:
            made.append(await new_machine(world))
            return made[-1]

        async def attempt(
            http: httpx.AsyncClient, field: str, query: str, body: bytes | None, y: Machine
        ) -> httpx.Response:
            x = await new_machine_here()  # a new one each time: a call that went through changed X
            path = filled(template, x)
            if body is not None:
                body = body.replace(b"{x.project_id}", x.project_id.encode())
                body = body.replace(b"{x.role_key}", x.role_key.encode())
                body = body.replace(b"{x.metadata_key}", x.metadata_key.encode())
            before = await everything_about(running, y.user_id)
            required = REQUIRED_QUERY.get((verb, template), "").replace("{x.metadata_key}", x.metadata_key)
            query = "&".join(part for part in (query, required) if part)
            answer = await http.request(verb, f"{path}?{query}" if query else path, content=body)
            case = (door, verb, path, query, body, answer.status_code, answer.text)
            assert await everything_about(running, y.user_id) == before, case
            assert not any(other in answer.text for other in y.ids), case
            assert answer.status_code < 500, case
            if not answer.is_success and code_name(answer.json()["code"]) == "INVALID_ARGUMENT":
                # Refused: in the service's error shape, naming the field as sent.
                assert named_fields(answer) & {field, json_name(field)}, case
            return answer

        async with json_http(running, door) as http:
            for field in fields:
                for query, body in attempts(verb, field, "{other}", template):
                    y = await new_machine_here()
                    query = query.replace("{other}", y.value(field, template))
                    body = body.replace(b"{other}", y.value(field, template).encode()) if body else body
                    if not conclusive(await attempt(http, field, query, body, y)):
                        # Another error (a precondition) may be Y's state answering:
                        # reactivating an active user fails and changes nothing. Once more,
                        # with Y in the other state.
                        await world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=y.user_id))
                        await attempt(http, field, query, body, y)
    finally:
        # Each machine's trusted issuer is one of the organisation's (at most 1,000): gone with
        # the test, so that the module's many cases stay within the limit.
        for machine in made:
            with contextlib.suppress(ApiError):
                await world.call(
                    "RemoveTrustedIssuer", org_pb.RemoveTrustedIssuerRequest(issuer_id=machine.issuer_id)
                )
        await api.close()


# The calls the security pass made, each with what it must now answer: refused, naming the field.
REPORTED = [
    ("PUT", "/management/v1/users/{}/secret", "user_id"),
    ("POST", "/v2/users/{}/secret", "user_id"),
    ("POST", "/v2/users/{}/pats", "user_id"),
    ("POST", "/management/v1/users/{}/pats", "user_id"),
    ("POST", "/management/v1/users/{}/_deactivate", "id"),
    ("POST", "/v2/users/{}/deactivate", "user_id"),
    ("DELETE", "/management/v1/users/{}", "id"),
    ("DELETE", "/v2/users/{}", "user_id"),
    ("GET", "/management/v1/users/{}", "id"),
    ("GET", "/v2/users/{}", "user_id"),
    ("PUT", "/users/{}/secret", "user_id"),
]


@pytest.mark.parametrize(("verb", "template", "field"), REPORTED)
async def test_a_body_that_names_another_user_is_refused_in_the_services_error_shape(
    running: Running, verb: str, template: str, field: str
) -> None:
    """The reported calls through Envoy, the body naming the field by its proto name: 400, the
    service's `{code, message, details}` with a BadRequest on the field, and Y untouched."""
    x, y = await machine_users(running, 2)
    before = await everything_about(running, y)
    async with json_http(running, "envoy") as http:
        answer = await http.request(verb, template.format(x), content=json.dumps({field: y}))
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"code", "message", "details"}
    assert code_name(body["code"]) == "INVALID_ARGUMENT"
    [bad] = [d for d in body["details"] if d["@type"] == "type.googleapis.com/google.rpc.BadRequest"]
    assert [(v["field"], v["description"]) for v in bad["fieldViolations"]] == [(field, NAMED_BY_PATH)]
    assert y not in answer.text
    assert await everything_about(running, y) == before


@pytest.mark.parametrize("door", ["envoy", "http"])
async def test_a_body_that_repeats_the_paths_value_is_accepted(running: Running, door: str) -> None:
    """Naming the path's own value again in the body is no conflict: clients that send the whole
    request message as the body keep working."""
    [x] = await machine_users(running, 1)
    prefixes = ["/management/v1", ""] if door == "envoy" else [""]
    async with json_http(running, door) as http:
        for prefix in prefixes:
            for body in ({"user_id": x}, {"userId": x}):
                answer = await http.put(f"{prefix}/users/{x}/secret", content=json.dumps(body))
                assert answer.status_code == 200, (prefix, body, answer.text)


async def test_the_transcoders_original_path_cannot_be_forged(running: Running) -> None:
    """The check reads the path the transcoder matched from x-envoy-original-path. A client's own
    header of that name is replaced by Envoy's, so it cannot make Y's path out of X's."""
    x, y = await machine_users(running, 2)
    before = await everything_about(running, y)
    forged = {"x-envoy-original-path": f"/management/v1/users/{y}/secret", "x-envoy-original-method": "PUT"}
    async with json_http(running, "envoy", **forged) as http:
        answer = await http.put(f"/management/v1/users/{x}/secret", content=json.dumps({"user_id": y}))
    assert answer.status_code == 400, answer.text
    assert await everything_about(running, y) == before


async def test_a_path_the_transcoder_reads_is_read_alike(running: Running) -> None:
    """The path step reads the transcoder's path as the transcoder does: trailing slashes left
    out, and a one-segment variable's %XX decoded. A call that names only X is not refused."""
    [x] = await machine_users(running, 1)
    encoded = "".join(f"%{ord(c):02X}" for c in x)
    async with json_http(running, "envoy") as http:
        for path in (f"/management/v1/users/{x}/", f"/v2/users/{x}//", f"/management/v1/users/{encoded}"):
            answer = await http.get(path)
            assert answer.status_code == 200, (path, answer.text)
            assert x in answer.text
