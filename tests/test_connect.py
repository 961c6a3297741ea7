"""The Connect protocol's unary call as the protocol itself has it, in both encodings (binary,
`application/proto`, and JSON) and through both doors (the HTTP port, and Envoy): the answer in the
request's encoding, errors as Connect's JSON with the HTTP status of their code, and the limits and
refusals alike in both encodings. The behaviour suite runs every RPC over both encodings too
(tests/service.py's transports "connect", "connect-binary" and their Envoy twins)."""

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.limits import MAX_REQUEST_BYTES
from tests.api import method_path
from tests.service import Running
from tests.world import unique_name

ENCODINGS = {"binary": "application/proto", "json": "application/json"}


@pytest.fixture(params=["http", "envoy"])
async def http(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[httpx.AsyncClient]:
    port = running.service.http_port if request.param == "http" else running.service.envoy_port
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client


def body_of(encoding: str, message: Message) -> bytes:
    if encoding == "binary":
        return message.SerializeToString()
    return json_format.MessageToJson(message).encode()


async def call(
    http: httpx.AsyncClient, encoding: str, method: str, body: bytes, **headers: str
) -> httpx.Response:
    return await http.post(
        method_path(method), content=body, headers={"content-type": ENCODINGS[encoding], **headers}
    )


def connect_error(answer: httpx.Response) -> tuple[int, str, dict[str, Any]]:
    """(HTTP status, code, details by type) of a Connect error, checked to be Connect's JSON."""
    assert answer.headers["content-type"] == "application/json", answer.headers
    payload = answer.json()
    assert set(payload) <= {"code", "message", "details"}, payload
    details: dict[str, Any] = {}
    for detail in payload.get("details", []):
        value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
        kind = {
            "google.rpc.ErrorInfo": error_details_pb2.ErrorInfo,
            "google.rpc.BadRequest": error_details_pb2.BadRequest,
        }
        message = kind[detail["type"]].FromString(value)
        assert json_format.MessageToDict(message) == detail["debug"], detail
        details[detail["type"]] = message
    return answer.status_code, payload["code"], details


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_the_answer_is_in_the_requests_encoding(
    http: httpx.AsyncClient, running: Running, encoding: str
) -> None:
    name = unique_name(f"connect-{encoding}")
    auth = {"authorization": f"Bearer {running.admin_token}"}
    request = user_pb.AddMachineUserRequest(user_name=name, name="Connect")
    answer = await call(http, encoding, "AddMachineUser", body_of(encoding, request), **auth)
    assert (answer.status_code, answer.headers["content-type"]) == (200, ENCODINGS[encoding]), answer.text
    created = (
        user_pb.AddMachineUserResponse.FromString(answer.content)
        if encoding == "binary"
        else json_format.Parse(answer.content, user_pb.AddMachineUserResponse())
    )
    assert created.user_id
    assert created.details.sequence == 1
    got = await call(
        http,
        encoding,
        "GetUserByID",
        body_of(encoding, user_pb.GetUserByIDRequest(user_id=created.user_id)),
        **auth,
    )
    assert got.headers["content-type"] == ENCODINGS[encoding]
    if encoding == "binary":
        assert user_pb.GetUserByIDResponse.FromString(got.content).user.user_name == name


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_errors_are_connects_json_in_either_encoding(http: httpx.AsyncClient, encoding: str) -> None:
    request = body_of(encoding, user_pb.GetUserByIDRequest(user_id="1"))
    status, code, details = connect_error(await call(http, encoding, "GetUserByID", request))
    assert (status, code, details["google.rpc.ErrorInfo"].reason) == (401, "unauthenticated", "TOKEN_MISSING")
    malformed = await call(http, encoding, "GetUserByID", request, **{"connect-timeout-ms": "soon"})
    status, code, details = connect_error(malformed)
    assert (status, code) == (400, "invalid_argument")
    [violation] = details["google.rpc.BadRequest"].field_violations
    assert (violation.field, violation.description) == ("request", "connect-timeout-ms is malformed")


async def test_a_binary_body_that_does_not_parse_is_invalid_argument(
    http: httpx.AsyncClient, running: Running
) -> None:
    auth = {"authorization": f"Bearer {running.admin_token}"}
    status, code, details = connect_error(await call(http, "binary", "GetUserByID", b"\xff\xff\xff", **auth))
    assert (status, code) == (400, "invalid_argument")
    [violation] = details["google.rpc.BadRequest"].field_violations
    assert (violation.field, violation.description) == ("request", "the message does not parse")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("size", [MAX_REQUEST_BYTES + 1, 2 * MAX_REQUEST_BYTES + 1])
async def test_a_body_over_the_limit_is_resource_exhausted(
    http: httpx.AsyncClient, running: Running, encoding: str, size: int
) -> None:
    """The service refuses a body over MAX_REQUEST_BYTES itself; through Envoy, one over what Envoy
    holds (twice that) is Envoy's to refuse, in the same words."""
    auth = {"authorization": f"Bearer {running.admin_token}"}
    request = user_pb.AddMachineUserRequest(user_name="big", name="n", description="d" * size)
    answer = await call(http, encoding, "AddMachineUser", body_of(encoding, request), **auth)
    status, code, _ = connect_error(answer)
    assert (status, code) == (429, "resource_exhausted"), answer.text
    assert answer.json()["message"] == "the request is larger than the limit"


@pytest.mark.parametrize("encoding", ENCODINGS)
async def test_only_post_is_served(running: Running, encoding: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{running.service.http_port}") as http:
        answer = await http.get(method_path("GetUserByID"), headers={"content-type": ENCODINGS[encoding]})
    assert (answer.status_code, answer.headers["allow"]) == (405, "POST")


async def test_a_binary_call_is_not_mistaken_for_json(http: httpx.AsyncClient, running: Running) -> None:
    """A JSON body sent as application/proto is read as protobuf, and refused as one that does not
    parse; not read as JSON."""
    auth = {"authorization": f"Bearer {running.admin_token}"}
    body = json.dumps({"userId": "1"}).encode()
    status, code, details = connect_error(await call(http, "binary", "GetUserByID", body, **auth))
    assert (status, code) == (400, "invalid_argument")
    assert details["google.rpc.BadRequest"].field_violations[0].description == "the message does not parse"
