"""AddSecret, RemoveSecret and the rules around them, through a real client of each transport."""

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import cast

import bcrypt
import grpc
import httpx
import pytest
from google.protobuf.message import Message
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.clock import ShiftedClock
from tests.api import ApiError, JsonApi, expect_error
from tests.service import BACKENDS, TRANSPORTS, Running, client, own_service
from tests.world import World, unique_name

SECRET = re.compile(r"msk_[0-9A-Za-z]{61}")


async def stored_hash(running: Running, user_id: str) -> str | None:
    """The hash of the user's one secret (AddSecret leaves one), or None when it has none."""
    secrets = await running.service.store.secrets(user_id)
    assert len(secrets) <= 1
    return secrets[0].hash if secrets else None


async def add_secret(world: World, user_id: str, **kw: str) -> user_pb.AddSecretResponse:
    response: user_pb.AddSecretResponse = await world.call(
        "AddSecret", user_pb.AddSecretRequest(user_id=user_id), **kw
    )
    return response


async def test_add_secret_for_a_fresh_machine_user(world: World, running: Running) -> None:
    user_name = unique_name("build-bot")
    user_id = await world.machine_user(user_name=user_name)
    before = datetime.now(UTC)
    response = await add_secret(world, user_id)
    after = datetime.now(UTC)

    assert response.client_id == user_name
    assert SECRET.fullmatch(response.client_secret)
    details = response.details
    assert details.sequence == 2  # user.machine.added, then user.machine.secret.set
    assert details.creation_date == details.change_date
    assert before - timedelta(milliseconds=1) <= details.creation_date.ToDatetime(UTC) <= after
    assert details.resource_owner == world.home_org
    hashed = await stored_hash(running, user_id)
    assert hashed is not None
    assert hashed.startswith("$2b$04$")
    assert bcrypt.checkpw(response.client_secret.encode(), hashed.encode())
    assert response.client_secret.encode() not in running.raw_store()


async def test_a_second_secret_replaces_the_first(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    first = await add_secret(world, user_id)
    second = await add_secret(world, user_id)
    assert second.client_secret != first.client_secret
    assert second.details.sequence == 3
    hashed = await stored_hash(running, user_id)
    assert hashed is not None
    assert bcrypt.checkpw(second.client_secret.encode(), hashed.encode())
    assert not bcrypt.checkpw(first.client_secret.encode(), hashed.encode())


async def test_unknown_user_is_not_found(world: World) -> None:
    await expect_error(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", add_secret(world, "123456789"))


async def test_human_user_gets_no_secret(world: World) -> None:
    human = await world.human_user()
    await expect_error(grpc.StatusCode.FAILED_PRECONDITION, "USER_NOT_MACHINE", add_secret(world, human))


async def test_user_of_another_organisation_is_not_found_without_the_header(world: World) -> None:
    other = await world.org()
    user_id = await world.machine_user(org=other)
    await expect_error(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", add_secret(world, user_id))
    # ... and the header makes it reachable for a caller allowed there.
    assert (await add_secret(world, user_id, org=other)).details.resource_owner == other


async def test_header_with_a_membership_there(world: World) -> None:
    other = await world.org()
    target = await world.machine_user(org=other)
    _, token = await world.caller(["ORG_USER_MANAGER"], org=other)  # a user of home, member of other
    response = await add_secret(world, target, token=token, org=other)
    assert response.details.resource_owner == other
    assert response.details.sequence == 2


async def test_header_without_a_membership_there(world: World) -> None:
    other = await world.org()
    target = await world.machine_user(org=other)
    _, token = await world.caller(["ORG_USER_MANAGER"])  # member of home only
    error = await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        add_secret(world, target, token=token, org=other),
    )
    assert error.metadata == {"permission": "user.write"}


async def test_unknown_organisation_in_the_header(world: World) -> None:
    _, token = await world.caller(["ORG_USER_MANAGER"])
    user_id = await world.machine_user()
    # For a caller without rights there it is indistinguishable from an organisation it may not enter...
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        add_secret(world, user_id, token=token, org="42"),
    )
    # ... and an IAM_OWNER, who may enter every organisation, learns that it does not exist.
    for org in ("42", "not-an-id", "1' OR '1'='1"):
        await expect_error(
            grpc.StatusCode.PERMISSION_DENIED, "ORGANIZATION_NOT_FOUND", add_secret(world, user_id, org=org)
        )


async def test_caller_without_user_write(world: World) -> None:
    target = await world.machine_user()
    _, no_roles = await world.caller([])
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", add_secret(world, target, token=no_roles)
    )


async def test_iam_owner_acts_in_any_organisation(world: World) -> None:
    for _ in range(2):
        org = await world.org()
        target = await world.machine_user(org=org)
        assert (await add_secret(world, target, org=org)).details.resource_owner == org


async def test_an_empty_org_header_means_the_callers_own(world: World) -> None:
    target = await world.machine_user()
    assert (await add_secret(world, target, org="")).details.resource_owner == world.home_org


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        (None, "TOKEN_MISSING"),
        ("Basic dXNlcjpwYXNz", "TOKEN_MALFORMED"),
        ("Bearer", "TOKEN_MALFORMED"),
        ("Bearer a b", "TOKEN_MALFORMED"),
        ("Bearer not-a-token-we-issued", "TOKEN_INVALID"),
    ],
)
async def test_missing_and_malformed_tokens(world: World, authorization: str | None, reason: str) -> None:
    target = await world.machine_user()
    metadata = [] if authorization is None else [("authorization", authorization)]
    with pytest.raises(ApiError) as caught:
        await world.api.call("AddSecret", user_pb.AddSecretRequest(user_id=target), metadata)
    assert (caught.value.code, caught.value.reason) == (grpc.StatusCode.UNAUTHENTICATED, reason)


@pytest.fixture(scope="module", params=BACKENDS)
async def clocked(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[Running, ShiftedClock]]:
    """A service of its own, whose clock the test moves: expiry without waiting for it."""
    clock = ShiftedClock()
    folder = tmp_path_factory.mktemp(f"clocked-{request.param}")
    async with own_service(request.param, folder, clock, envoy=True) as running:
        yield running, clock


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_expired_token(clocked: tuple[Running, ShiftedClock], transport: str) -> None:
    running, clock = clocked
    api = client(transport, running.service)
    try:
        world = await World.create(api, running.admin_token)
        user_id = await world.machine_user()
        await world.grant(user_id, ["ORG_USER_MANAGER"])
        expires = clock.now() + timedelta(hours=1)
        request = user_pb.AddPersonalAccessTokenRequest(user_id=user_id)
        request.expiration_date.FromDatetime(expires)
        issued = await world.call("AddPersonalAccessToken", request)
        assert (await add_secret(world, user_id, token=issued.token)).client_id
        clock.advance(expires - clock.now())  # to the very instant: expired then, not a second later
        await expect_error(
            grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", add_secret(world, user_id, token=issued.token)
        )
    finally:
        await api.close()


async def test_remove_secret(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    await add_secret(world, user_id)
    removed = await world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user_id))
    assert removed.details.sequence == 3
    assert removed.details.resource_owner == world.home_org
    assert await stored_hash(running, user_id) is None
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user
    assert not user.has_secret


async def test_remove_without_a_secret(world: World) -> None:
    user_id = await world.machine_user()
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "SECRET_NOT_FOUND",
        world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user_id)),
    )


async def test_remove_for_an_unknown_user(world: World) -> None:
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id="77")),
    )


@pytest.mark.parametrize(
    ("user_id", "description"),
    [
        ("", "must not be empty"),
        ("1" * 201, "must be at most 200 characters"),
        ("abc", "must be an id: decimal digits"),
        ("-5", "must be an id: decimal digits"),
        ("0123", "must be an id: decimal digits"),
        ("9" * 30, "must be an id: decimal digits"),
        ("\uff11\uff12\uff13", "must be an id: decimal digits"),  # full-width digits pass str.isdigit
        ("1; DROP TABLE users", "must be an id: decimal digits"),
        ("1' OR '1'='1", "must be an id: decimal digits"),
        ("../1", "must be an id: decimal digits"),  # over JSON, a path in the path
        ("1/secret", "must be an id: decimal digits"),
        ("%31", "must be an id: decimal digits"),  # percent-encoding is not decoded twice
        ("1\x00", "must be an id: decimal digits"),
    ],
)
@pytest.mark.parametrize("method", ["AddSecret", "RemoveSecret"])
async def test_invalid_user_id(world: World, method: str, user_id: str, description: str) -> None:
    request = (
        user_pb.AddSecretRequest(user_id=user_id)
        if method == "AddSecret"
        else user_pb.RemoveSecretRequest(user_id=user_id)
    )
    error = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", world.call(method, request)
    )
    assert error.violations == {"user_id": description}


async def test_sequence_numbers_follow_the_users_events(world: World) -> None:
    user_id = await world.machine_user()
    sequences = [(await add_secret(world, user_id)).details.sequence for _ in range(3)]
    removed = await world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user_id))
    token = await world.token_for(user_id)
    assert token
    again = await add_secret(world, user_id)
    assert [*sequences, removed.details.sequence, again.details.sequence] == [2, 3, 4, 5, 7]
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user
    assert user.details.sequence == 7
    assert user.has_secret
    # Another user's events do not move this user's sequence.
    other = await world.machine_user()
    assert (await add_secret(world, other)).details.sequence == 2


async def test_a_message_that_does_not_parse_is_invalid_argument(world: World) -> None:
    if world.api.name == "envoy-json":  # JSON carries no protobuf message: a body that is not JSON
        async with httpx.AsyncClient() as http:
            answer = await http.put(
                f"{cast(JsonApi, world.api).base_url}/management/v1/users/1/secret",
                content=b"\xff\xff\xff",
                headers={"authorization": f"Bearer {world.admin_token}", "content-type": "application/json"},
            )
        assert (answer.status_code, answer.json()["code"]) == (400, 3), answer.text
        return
    with pytest.raises(ApiError) as caught:
        await world.api.call(
            "AddSecret",
            cast(Message, RawMessage(b"\xff\xff\xff")),
            [("authorization", f"Bearer {world.admin_token}")],
        )
    error = caught.value
    # Connect carries the bytes as its JSON body: the same refusal, in JSON's words.
    json = world.api.name in ("connect", "envoy-connect")
    expected = "the body is not a AddSecretRequest in proto3 JSON" if json else "the message does not parse"
    assert (error.code, error.violations) == (grpc.StatusCode.INVALID_ARGUMENT, {"request": expected})
    assert "DecodeError" not in error.message


class RawMessage:
    """Stands in for a request message: its bytes on the wire are given, not serialised."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    def SerializeToString(self) -> bytes:
        return self._raw
