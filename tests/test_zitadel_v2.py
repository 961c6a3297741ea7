"""ZITADEL's v2 APIs (users, organisations, administrators) on every transport and store: each
method acts in the organisation of what it addresses, with the native calls' rules and errors."""

from collections.abc import AsyncIterator

import grpc
import pytest
from zitadel.internal_permission.v2 import internal_permission_service_pb2 as perm_v2
from zitadel.org.v2 import org_service_pb2 as org_v2
from zitadel.user.v2 import user_pb2
from zitadel.user.v2 import user_service_pb2 as user_v2

from server.domain.secret_format import is_well_formed
from tests.api import exchange, expect_error
from tests.service import TRANSPORTS, Running, client
from tests.world import World, unique_name

USERS, ORGS, ADMINS = "UserServiceV2.", "OrganizationServiceV2.", "InternalPermissionService."


async def create_machine(world: World, org: str, token: str | None = None) -> tuple[str, str]:
    name = unique_name("v2bot")
    request = user_v2.CreateUserRequest(
        organization_id=org,
        username=name,
        machine=user_v2.CreateUserRequest.Machine(name="V2", description="d"),
    )
    created = await world.call(USERS + "CreateUser", request, token=token)
    assert created.creation_date.seconds > 0
    return created.id, name


async def test_the_secret_lifecycle_in_the_organisation_the_request_names(
    world: World, running: Running
) -> None:
    org = await world.org()  # no x-zitadel-orgid anywhere below: v2 finds the organisation itself
    user_id, name = await create_machine(world, org)
    got = await world.call(USERS + "GetUserByID", user_v2.GetUserByIDRequest(user_id=user_id))
    assert (got.details.resource_owner, got.user.user_id, got.user.username) == (org, user_id, name)
    assert got.user.details.resource_owner == org
    assert (got.user.state, got.user.WhichOneof("type")) == (user_pb2.USER_STATE_ACTIVE, "machine")
    assert (got.user.machine.name, got.user.machine.description, got.user.machine.has_secret) == (
        "V2",
        "d",
        False,
    )

    issued = await world.call(USERS + "AddSecret", user_v2.AddSecretRequest(user_id=user_id))
    assert is_well_formed(issued.client_secret)  # the msk_ format: clients treat it as opaque
    assert issued.creation_date.seconds > 0
    base = f"http://127.0.0.1:{running.service.http_port}"
    assert (
        await exchange(base, name, issued.client_secret)
    ).status_code == 200  # the client id: the username
    assert (
        await world.call(USERS + "GetUserByID", user_v2.GetUserByIDRequest(user_id=user_id))
    ).user.machine.has_secret

    pat = await world.call(
        USERS + "AddPersonalAccessToken", user_v2.AddPersonalAccessTokenRequest(user_id=user_id)
    )
    assert pat.token
    assert pat.token_id

    removed = await world.call(USERS + "RemoveSecret", user_v2.RemoveSecretRequest(user_id=user_id))
    assert removed.deletion_date.seconds > 0
    assert (await exchange(base, name, issued.client_secret)).status_code == 401
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "SECRET_NOT_FOUND",
        world.call(USERS + "RemoveSecret", user_v2.RemoveSecretRequest(user_id=user_id)),
    )


async def test_a_user_out_of_the_callers_reach_is_not_found(world: World) -> None:
    mine, theirs = await world.org(), await world.org()
    manager_id, manager = await world.caller(["ORG_USER_MANAGER"], org=mine, home=mine)
    their_user, _ = await create_machine(world, theirs)
    own_user, _ = await create_machine(world, mine, token=manager)
    assert (
        await world.call(USERS + "AddSecret", user_v2.AddSecretRequest(user_id=own_user), token=manager)
    ).client_secret
    for request_id in (their_user, "1"):  # another organisation's user, and no user at all: one answer
        await expect_error(
            grpc.StatusCode.NOT_FOUND,
            "USER_NOT_FOUND",
            world.call(USERS + "AddSecret", user_v2.AddSecretRequest(user_id=request_id), token=manager),
        )
    # An organisation it holds nothing in is refused as the native calls refuse it.
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        create_machine(world, theirs, token=manager),
    )
    human = await world.human_user(org=mine)
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_MACHINE",
        world.call(USERS + "AddSecret", user_v2.AddSecretRequest(user_id=human), token=manager),
    )
    await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(USERS + "GetUserByID", user_v2.GetUserByIDRequest(user_id="not-an-id"), token=manager),
    )
    assert manager_id


async def test_create_user_serves_machines_and_says_what_it_does_not_serve(world: World) -> None:
    org = await world.org()
    unnamed = await world.call(
        USERS + "CreateUser",
        user_v2.CreateUserRequest(organization_id=org, machine=user_v2.CreateUserRequest.Machine(name="n")),
    )
    got = await world.call(USERS + "GetUserByID", user_v2.GetUserByIDRequest(user_id=unnamed.id))
    assert got.user.username == unnamed.id  # no username: the id, as in ZITADEL
    error = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(
            USERS + "CreateUser",
            user_v2.CreateUserRequest(
                organization_id=org, user_id="77", human=user_v2.CreateUserRequest.Human()
            ),
        ),
    )
    assert set(error.violations) == {"user_id", "machine"}


async def test_organisations_with_administrators(world: World) -> None:
    user_id, member = await world.caller([])
    created = await world.call(
        ORGS + "AddOrganization",
        org_v2.AddOrganizationRequest(
            name=unique_name("v2org"),
            admins=[org_v2.AddOrganizationRequest.Admin(user_id=user_id, roles=["ORG_USER_MANAGER"])],
        ),
    )
    org = created.organization_id
    assert created.details.resource_owner == org
    assert [a.user_id for a in created.created_admins] == [user_id]
    await create_machine(world, org, token=member)  # the admin acts in the new organisation
    await expect_error(  # an admin that does not exist, as AddOrgMember answers it
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call(
            ORGS + "AddOrganization",
            org_v2.AddOrganizationRequest(
                name="never", admins=[org_v2.AddOrganizationRequest.Admin(user_id="1")]
            ),
        ),
    )
    await expect_error(  # only an IAM_OWNER creates organisations
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(ORGS + "AddOrganization", org_v2.AddOrganizationRequest(name="mine"), token=member),
    )


# CreateAdministrator has no REST path, in ZITADEL either: gRPC and Connect only, so not over
# Envoy's JSON.
@pytest.fixture(params=[t for t in TRANSPORTS if t != "envoy-json"])
async def admin_world(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[World]:
    api = client(request.param, running.service)
    yield await World.create(api, running.admin_token)
    await api.close()


async def test_administrators_are_granted_within_the_callers_power(admin_world: World) -> None:
    world = admin_world
    user_id, member = await world.caller([])
    created = await world.call(
        ORGS + "AddOrganization",
        org_v2.AddOrganizationRequest(
            name=unique_name("v2admins"),
            admins=[org_v2.AddOrganizationRequest.Admin(user_id=user_id, roles=["ORG_USER_MANAGER"])],
        ),
    )
    org = created.organization_id
    other_id, other = await world.caller([])
    granted = await world.call(
        ADMINS + "CreateAdministrator",
        perm_v2.CreateAdministratorRequest(
            user_id=other_id, resource=perm_v2.ResourceType(organization_id=org), roles=["ORG_USER_MANAGER"]
        ),
    )
    assert granted.creation_date.seconds > 0
    await create_machine(world, org, token=other)
    await expect_error(  # the member may not grant more than it holds
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            ADMINS + "CreateAdministrator",
            perm_v2.CreateAdministratorRequest(
                user_id=other_id, resource=perm_v2.ResourceType(organization_id=org), roles=["ORG_OWNER"]
            ),
            token=member,
        ),
    )
    error = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(
            ADMINS + "CreateAdministrator",
            perm_v2.CreateAdministratorRequest(
                user_id=other_id, resource=perm_v2.ResourceType(instance=True), roles=["IAM_OWNER"]
            ),
        ),
    )
    assert set(error.violations) == {"resource"}


async def test_deactivate_reactivate_and_delete_in_the_users_organisation(world: World) -> None:
    org = await world.org()
    user_id, _ = await create_machine(world, org)
    pat = await world.call(
        USERS + "AddPersonalAccessToken", user_v2.AddPersonalAccessTokenRequest(user_id=user_id)
    )
    read = user_v2.GetUserByIDRequest(user_id=user_id)
    off = await world.call(USERS + "DeactivateUser", user_v2.DeactivateUserRequest(user_id=user_id))
    assert off.details.resource_owner == org
    assert (await world.call(USERS + "GetUserByID", read)).user.state == user_pb2.USER_STATE_INACTIVE
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call(USERS + "AddSecret", user_v2.AddSecretRequest(user_id=user_id), token=pat.token),
    )
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_ACTIVE",
        world.call(USERS + "DeactivateUser", user_v2.DeactivateUserRequest(user_id=user_id)),
    )
    await world.call(USERS + "ReactivateUser", user_v2.ReactivateUserRequest(user_id=user_id))
    assert (await world.call(USERS + "GetUserByID", read)).user.state == user_pb2.USER_STATE_ACTIVE
    deleted = await world.call(USERS + "DeleteUser", user_v2.DeleteUserRequest(user_id=user_id))
    assert deleted.details.resource_owner == org
    await expect_error(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", world.call(USERS + "GetUserByID", read))
