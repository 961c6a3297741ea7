"""JSON through Envoy as curl sees it: the seed's exact shape, the error body, and Envoy's own
answers to requests that never reach the service."""

import json
import logging
import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from server import app
from server.config import Config
from server.transport.status import HTTP_STATUS
from tests.codes import HTTP_STATUS_OF, code_name
from tests.service import Running, client, config_for, start_service
from tests.world import World, unique_name

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")


@pytest.fixture
async def http(running: Running) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{running.service.envoy_port}",
        headers={"authorization": f"Bearer {running.admin_token}"},
        timeout=30,
    ) as client:
        yield client


async def new_machine_user(http: httpx.AsyncClient) -> tuple[str, str]:
    name = unique_name("json-bot")
    answer = await http.post("/users/machine", json={"userName": name, "name": "JSON bot"})
    assert answer.status_code == 200, answer.text
    return answer.json()["userId"], name


@pytest.mark.parametrize("prefix", ["", "/management/v1"])
async def test_add_secret_has_exactly_the_seeds_shape(http: httpx.AsyncClient, prefix: str) -> None:
    user_id, name = await new_machine_user(http)
    answer = await http.put(f"{prefix}/users/{user_id}/secret", content="{}")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"clientId", "clientSecret", "details"}
    assert set(body["details"]) == {"sequence", "creationDate", "changeDate", "resourceOwner"}
    assert body["clientId"] == name
    assert re.fullmatch(r"msk_[0-9A-Za-z]{61}", body["clientSecret"])
    assert body["details"]["sequence"] == "2"  # uint64: a string in proto3 JSON
    for key in ("creationDate", "changeDate"):
        assert RFC3339_UTC.fullmatch(body["details"][key]), body["details"][key]
    assert body["details"]["creationDate"] == body["details"]["changeDate"]
    assert re.fullmatch(r"[1-9]\d{0,18}", body["details"]["resourceOwner"])
    datetime.fromisoformat(body["details"]["creationDate"])


async def test_remove_secret_over_delete(http: httpx.AsyncClient) -> None:
    user_id, _ = await new_machine_user(http)
    await http.put(f"/users/{user_id}/secret", content="{}")
    answer = await http.delete(f"/management/v1/users/{user_id}/secret")
    assert (answer.status_code, answer.json()["details"]["sequence"]) == (200, "3")


async def test_error_body(http: httpx.AsyncClient) -> None:
    answer = await http.put("/users/123/secret", content="{}")
    assert answer.status_code == 404
    assert answer.json() == {
        "code": 5,
        "message": "user not found",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "USER_NOT_FOUND",
                "domain": "machinesecrets",
                "metadata": {},
            }
        ],
    }
    answer = await http.put("/users/abc/secret", content="{}")
    assert answer.status_code == 400
    details = {d["@type"].rsplit("/", 1)[1]: d for d in answer.json()["details"]}
    [violation] = details["google.rpc.BadRequest"]["fieldViolations"]
    assert (violation["field"], violation["description"]) == ("user_id", "must be an id: decimal digits")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "/users/machine", "{not json", 400, "INVALID_ARGUMENT"),
        ("POST", "/users/machine", '{"userName": 5}', 400, "INVALID_ARGUMENT"),
        (
            "POST",
            "/users/machine",
            '{"userName": "x", "name": "y", "unknownField": 1}',
            400,
            "INVALID_ARGUMENT",
        ),
        ("POST", "/users/machine", "[]", 400, "INVALID_ARGUMENT"),
        ("PUT", "/users/1/secret?foo=1", "{}", 400, "INVALID_ARGUMENT"),
        ("POST", "/users/1/pats", '{"expirationDate": "10000-01-01T00:00:00Z"}', 400, "INVALID_ARGUMENT"),
        ("PATCH", "/users/1/secret", "{}", 404, "NOT_FOUND"),
        ("GET", "/no/such/path", None, 404, "NOT_FOUND"),
        # Envoy refuses it (413) unless it has streamed it to the server already, which refuses it (429).
        (
            "POST",
            "/users/machine",
            json.dumps({"userName": "x", "name": "y", "description": "d" * 70000}),
            {413, 429},
            "RESOURCE_EXHAUSTED",
        ),
    ],
)
async def test_requests_envoy_refuses_get_a_clear_4xx_in_the_same_shape(
    http: httpx.AsyncClient, method: str, path: str, body: str | None, status: int | set[int], code: str
) -> None:
    answer = await http.request(method, path, content=body, headers={"content-type": "application/json"})
    assert answer.status_code in (status if isinstance(status, set) else {status}), answer.text
    assert answer.headers["content-type"] == "application/json"
    payload = answer.json()
    assert code_name(payload["code"]) == code
    assert payload["message"]


async def test_cors_through_envoy(tmp_path: Path) -> None:
    origin = "http://app.example"
    running = await start_service(config_for(tmp_path, envoy=True, cors_origins=(origin,)))
    base = f"http://127.0.0.1:{running.service.envoy_port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            preflight = await client.options(
                "/users/1/secret",
                headers={"origin": origin, "access-control-request-method": "PUT",
                         "access-control-request-headers": "authorization,x-zitadel-orgid,content-type"},
            )  # fmt: skip
            assert preflight.headers["access-control-allow-origin"] == origin
            assert "PUT" in preflight.headers["access-control-allow-methods"]
            stranger = await client.options(
                "/users/1/secret",
                headers={"origin": "http://evil.example", "access-control-request-method": "PUT"},
            )
            assert "access-control-allow-origin" not in stranger.headers
            answer = await client.put("/users/1/secret", content="{}", headers={"origin": origin})
            assert (answer.status_code, answer.headers["access-control-allow-origin"]) == (401, origin)
            assert "grpc-status-details-bin" in answer.headers["access-control-expose-headers"]
    finally:
        await running.service.stop(0)


async def test_without_envoy_the_service_still_serves(
    tmp_path: Path, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    taken = f"127.0.0.1:{running.service.envoy_port}"
    config = Config(**{**config_for(tmp_path).__dict__, "envoy_addr": taken})
    with caplog.at_level(logging.ERROR):
        service = await app.start(config)
    try:
        assert service.envoy is None
        assert "Envoy did not start" in caplog.text
        async with httpx.AsyncClient() as client:
            answer = await client.post(
                f"http://127.0.0.1:{service.http_port}/machinesecrets.v1.UserService/GetUserByID",
                content=b"\x00\x00\x00\x00\x00",
                headers={"content-type": "application/grpc-web+proto"},
            )
        assert answer.status_code == 200
    finally:
        await service.stop(0)


@pytest.mark.parametrize("port", ["http", "envoy"])
async def test_the_openapi_document_is_served(running: Running, port: str) -> None:
    number = running.service.http_port if port == "http" else running.service.envoy_port
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{number}/openapi.json")
    assert answer.status_code == 200
    document = answer.json()
    assert document["openapi"].startswith("3.")
    operation = document["paths"]["/users/{user_id}/secret"]["put"]
    assert {"200", "400", "401", "403", "404", "503", "500"} <= set(operation["responses"])
    assert {"$ref": "#/components/parameters/orgid"} in operation["parameters"]
    assert document["components"]["parameters"]["orgid"]["name"] == "x-zitadel-orgid"
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def openapi_operations() -> list[tuple[str, str]]:
    """(method, path) of every RPC's JSON binding, from the OpenAPI document the service serves."""
    document = json.loads((Path(__file__).resolve().parent.parent / "generated" / "openapi.json").read_text())
    return [
        (verb.upper(), path)
        for path, operations in document["paths"].items()
        for verb in operations
        if not path.startswith(("/oauth/", "/.well-known/"))
    ]


# Through Envoy every operation; on the HTTP port the native ones, which the service reads itself
# (ZITADEL's REST paths are Envoy's transcoder's).
QUERY_DOORS = [
    *((verb, template, "envoy") for verb, template in openapi_operations()),
    *(
        (verb, template, "http")
        for verb, template in openapi_operations()
        if template.startswith(("/users", "/orgs"))
    ),
]


# Lists whose filters these queries name: a filter, not a path field (they have none).
FILTERED_BY = {("GET", "/orgs/me/members"): ("userId=1", "user_id=1")}


@pytest.mark.parametrize(("verb", "template", "door"), QUERY_DOORS)
async def test_a_query_parameter_never_redirects_a_call(
    running: Running, verb: str, template: str, door: str
) -> None:
    """Through the transcoder a query parameter overrode a path field: PUT /users/X/secret?userId=Y
    acted on Y. A query parameter that is not a filter of a list (GET /users) is refused (400),
    before the call is made."""
    api = client("grpc", running.service)
    try:
        target = await (await World.create(api, running.admin_token)).machine_user()
    finally:
        await api.close()
    path = re.sub(r"{[^}]+}", target, template)
    port = running.service.envoy_port if door == "envoy" else running.service.http_port
    base = f"http://127.0.0.1:{port}"
    headers = {"authorization": f"Bearer {running.admin_token}", "content-type": "application/json"}
    before = await running.service.store.user(target)
    async with httpx.AsyncClient(base_url=base) as http:
        for query in ("userId=1", "user_id=1", "tokenId=1&userName=zz", "x=1"):
            if query in FILTERED_BY.get((verb, template), ()):
                continue
            body = "{}" if verb in ("POST", "PUT") else None
            answer = await http.request(verb, f"{path}?{query}", content=body, headers=headers)
            assert answer.status_code == 400, (verb, path, query, answer.text)
            assert code_name(answer.json()["code"]) == "INVALID_ARGUMENT"
    assert await running.service.store.user(target) == before


async def test_error_messages_arrive_as_written(http: httpx.AsyncClient) -> None:
    """No message holds a character that a JSON printer escapes (<, >, &, '): curl shows the text
    as it was written, not `\\u003ctoken\\u003e`."""
    malformed = await http.get("/users/1", headers={"authorization": "Basic abc"})
    assert malformed.status_code == 401
    assert "\\u" not in malformed.text
    assert malformed.json()["message"] == "the authorization header must be `Bearer` and one token"
    user_id, _ = await new_machine_user(http)
    await http.put("/orgs/me/policies/secrets", json={"policy": {"maxLifetime": "3600s"}})
    try:
        too_far = await http.post(
            f"/users/{user_id}/secrets", json={"expirationDate": "2999-01-01T00:00:00Z"}
        )
        assert too_far.status_code == 400
        assert "\\u" not in too_far.text, too_far.text
    finally:
        await http.put("/orgs/me/policies/secrets", json={})


@pytest.mark.parametrize("door", ["envoy", "http"])
async def test_the_native_json_api_refuses_and_names_an_unknown_field(running: Running, door: str) -> None:
    """A person typing JSON by hand misspells a field: the answer names it, on the native paths
    (through Envoy and on the HTTP port) and in the Connect call to a native method."""
    port = running.service.envoy_port if door == "envoy" else running.service.http_port
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {running.admin_token}"}
    ) as http:
        name = unique_name("typo-bot")
        cases = [
            ("/users/machine", {"username": name, "name": "Typo"}, "username"),
            ("/machinesecrets.v1.UserService/AddMachineUser", {"userName": name, "nmae": "T"}, "nmae"),
            ("/orgs/me/policies/secrets", {"policy": {"maxLifetimes": "60s"}}, "policy.maxLifetimes"),
        ]
        for path, body, field in cases:
            verb = "PUT" if path.endswith("/secrets") else "POST"
            answer = await http.request(verb, path, json=body)
            assert answer.status_code == 400, answer.text
            payload = answer.json()
            if isinstance(payload["code"], str):  # the Connect error shape: {"type", "debug"}
                violations = [d["debug"] for d in payload["details"] if d["type"].endswith("BadRequest")]
            else:
                violations = [d for d in payload["details"] if d["@type"].endswith("BadRequest")]
            [violation] = violations[0]["fieldViolations"]
            assert violation["field"] == field, payload
            assert violation["description"].startswith("is not a field of this call; its fields are ")
        # Nothing was made by the misspelt calls.
        assert (await http.post("/users/machine", json={"userName": name, "name": "Typo"})).status_code == 200
        # A field the path names may not name something else in the body.
        user_id = (await http.get(f"/users/{(await new_machine_user(http))[0]}")).json()["user"]["id"]
        twice = await http.put(f"/users/{user_id}/secret", json={"userId": "123"})
        assert twice.status_code == 400
        [bad] = [d for d in twice.json()["details"] if d["@type"].endswith("BadRequest")]
        assert bad["fieldViolations"][0]["field"] == "user_id"


async def test_zitadels_json_paths_accept_unknown_fields(http: httpx.AsyncClient) -> None:
    """As ZITADEL does: its clients, built from newer protos, send fields this service lacks."""
    name = unique_name("zitadel-json")
    body = {"userName": name, "name": "Z", "someNewerField": {"x": 1}}
    answer = await http.post("/management/v1/users/machine", json=body)
    assert answer.status_code == 200, answer.text
    connect = await http.post(
        "/zitadel.management.v1.ManagementService/AddMachineUser",
        json={"userName": unique_name("zitadel-connect"), "name": "Z", "someNewerField": 1},
    )
    assert connect.status_code == 200, connect.text


def test_the_servers_http_statuses_are_google_apis() -> None:
    """The server's one table of HTTP statuses (the JSON API, Connect, Envoy's transcoder) says
    what google/rpc/code.proto says, code by code."""
    assert HTTP_STATUS == HTTP_STATUS_OF
