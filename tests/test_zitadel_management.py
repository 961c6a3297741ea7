"""ZITADEL's management API (zitadel.management.v1) on every transport and store: the same
behaviour, permissions and errors as the native calls it maps onto, in ZITADEL's message shapes."""

import base64
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.user.v1 import user_pb2

from server.domain.secret_format import is_well_formed
from tests.api import exchange, expect_error
from tests.service import Running
from tests.world import World, unique_name

M = "ManagementService."


async def machine(world: World, org: str | None = None) -> tuple[str, str]:
    """A machine user made through the management API: its id and user name."""
    name = unique_name("zbot")
    request = mgmt.AddMachineUserRequest(user_name=name, name="Z Bot", description="made as ZITADEL's")
    created = await world.call(M + "AddMachineUser", request, org=org)
    assert created.details.resource_owner == (org or world.home_org)
    assert created.details.sequence == 1
    return created.user_id, name


async def test_the_secret_lifecycle_through_zitadels_names(world: World, running: Running) -> None:
    user_id, name = await machine(world)
    got = await world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=user_id))
    assert got.user.WhichOneof("type") == "machine"
    assert (got.user.id, got.user.user_name, got.user.state) == (user_id, name, user_pb2.USER_STATE_ACTIVE)
    assert (list(got.user.login_names), got.user.preferred_login_name) == ([name], name)
    assert (got.user.machine.name, got.user.machine.description) == ("Z Bot", "made as ZITADEL's")
    assert not got.user.machine.has_secret

    issued = await world.call(M + "GenerateMachineSecret", mgmt.GenerateMachineSecretRequest(user_id=user_id))
    assert issued.client_id == name
    assert is_well_formed(issued.client_secret)  # the msk_ format: clients treat it as opaque
    assert (issued.details.sequence, issued.details.resource_owner) == (2, world.home_org)
    base = f"http://127.0.0.1:{running.service.http_port}"
    assert (await exchange(base, issued.client_id, issued.client_secret)).status_code == 200
    got = await world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=user_id))
    assert got.user.machine.has_secret

    again = await world.call(M + "GenerateMachineSecret", mgmt.GenerateMachineSecretRequest(user_id=user_id))
    assert (await exchange(base, name, issued.client_secret)).status_code == 401  # replaced at once
    assert (await exchange(base, name, again.client_secret)).status_code == 200

    removed = await world.call(M + "RemoveMachineSecret", mgmt.RemoveMachineSecretRequest(user_id=user_id))
    assert removed.details.sequence == 4
    assert (await exchange(base, name, again.client_secret)).status_code == 401
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "SECRET_NOT_FOUND",
        world.call(M + "RemoveMachineSecret", mgmt.RemoveMachineSecretRequest(user_id=user_id)),
    )


async def test_personal_access_tokens_and_members(world: World) -> None:
    user_id, _ = await machine(world)
    issued = await world.call(
        M + "AddPersonalAccessToken", mgmt.AddPersonalAccessTokenRequest(user_id=user_id)
    )
    assert issued.token
    assert issued.token_id
    # The token works, and holds no role yet; then a member of the organisation, it reads users.
    read = mgmt.GetUserByIDRequest(id=user_id)
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(M + "GetUserByID", read, token=issued.token),
    )
    added = await world.call(
        M + "AddOrgMember", mgmt.AddOrgMemberRequest(user_id=user_id, roles=["ORG_USER_MANAGER"])
    )
    assert added.details.resource_owner == world.home_org
    assert (await world.call(M + "GetUserByID", read, token=issued.token)).user.id == user_id
    # It may not grant what it does not hold, under ZITADEL's names either.
    other, _ = await machine(world)
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            M + "AddOrgMember",
            mgmt.AddOrgMemberRequest(user_id=other, roles=["ORG_OWNER"]),
            token=issued.token,
        ),
    )


async def test_the_same_errors_as_the_native_calls(world: World) -> None:
    other_org = await world.org()
    theirs, _ = await machine(world, org=other_org)
    human = await world.human_user()
    for request in (
        mgmt.GenerateMachineSecretRequest(user_id="1"),  # no such user
        mgmt.GenerateMachineSecretRequest(user_id=theirs),  # a user of another organisation
    ):
        await expect_error(
            grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", world.call(M + "GenerateMachineSecret", request)
        )
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_MACHINE",
        world.call(M + "GenerateMachineSecret", mgmt.GenerateMachineSecretRequest(user_id=human)),
    )
    got = await world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=human))
    assert got.user.WhichOneof("type") == "human"
    assert got.user.human.profile.display_name == "Jo"
    # x-zitadel-orgid chooses the organisation, as in ZITADEL's v1 API.
    assert (
        await world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=theirs), org=other_org)
    ).user.id == theirs
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=theirs), token="not-a-token"),
    )
    error = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(
            M + "AddMachineUser",
            mgmt.AddMachineUserRequest(
                user_name=unique_name("z"),
                name="n",
                user_id="5",
                # Served (tests/test_jwt_access_tokens.py): only the chosen id is refused.
                access_token_type=user_pb2.ACCESS_TOKEN_TYPE_JWT,
            ),
        ),
    )
    assert set(error.violations) == {"user_id"}


def seed_shape(answer: dict[str, Any]) -> None:
    """The seed's answer: clientId, clientSecret and details with ZITADEL v1's four fields."""
    assert set(answer) == {"clientId", "clientSecret", "details"}
    assert set(answer["details"]) == {"sequence", "creationDate", "changeDate", "resourceOwner"}
    assert isinstance(answer["details"]["sequence"], str)  # uint64: a string in proto3 JSON


@pytest.mark.parametrize("body", [None, b"{}", b'{"unknownField": 1}'])
async def test_the_seeds_call_through_envoy_with_or_without_a_body(
    world: World, running: Running, body: bytes | None
) -> None:
    user_id, name = await machine(world)
    async with httpx.AsyncClient() as http:
        answer = await http.put(
            f"http://127.0.0.1:{running.service.envoy_port}/management/v1/users/{user_id}/secret",
            content=body,
            headers={"authorization": f"Bearer {world.admin_token}", "content-type": "application/json"},
        )
    # No body, as ZITADEL's own load test sends it, and fields of a newer client: all accepted.
    assert answer.status_code == 200, answer.text
    seed_shape(answer.json())
    assert answer.json()["clientId"] == name
    parsed = json_format.ParseDict(answer.json(), mgmt.GenerateMachineSecretResponse())
    assert parsed.details.resource_owner == world.home_org
    basic = base64.b64encode(f"{name}:{parsed.client_secret}".encode()).decode()
    async with httpx.AsyncClient() as http:
        token = await http.post(
            f"http://127.0.0.1:{running.service.envoy_port}/oauth/v2/token",
            data={"grant_type": "client_credentials"},
            headers={"authorization": f"Basic {basic}"},
        )
    assert token.status_code == 200, token.text


async def test_deactivate_reactivate_and_remove_under_zitadels_names(world: World) -> None:
    user_id, _ = await machine(world)
    pat = await world.call(M + "AddPersonalAccessToken", mgmt.AddPersonalAccessTokenRequest(user_id=user_id))
    await world.call(
        M + "AddOrgMember", mgmt.AddOrgMemberRequest(user_id=user_id, roles=["ORG_USER_MANAGER"])
    )
    read = mgmt.GetUserByIDRequest(id=user_id)
    off = await world.call(M + "DeactivateUser", mgmt.DeactivateUserRequest(id=user_id))
    assert off.details.resource_owner == world.home_org
    assert (await world.call(M + "GetUserByID", read)).user.state == user_pb2.USER_STATE_INACTIVE
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", world.call(M + "GetUserByID", read, token=pat.token)
    )
    await world.call(M + "ReactivateUser", mgmt.ReactivateUserRequest(id=user_id))
    assert (
        await world.call(M + "GetUserByID", read, token=pat.token)
    ).user.state == user_pb2.USER_STATE_ACTIVE
    await world.call(M + "RemoveUser", mgmt.RemoveUserRequest(id=user_id))
    await expect_error(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", world.call(M + "GetUserByID", read))
