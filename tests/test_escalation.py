"""No one mints a credential, or grants a role, for more power than they hold themselves.

The outside report this answers: a machine user `mgr`, ORG_USER_MANAGER of the default
organisation, created a PAT for the admin (IAM_OWNER of the same organisation), then used it to
add an organisation; it could also replace or remove the admin's client secret. Each step runs here
on every transport and both stores, and each is refused, with nothing written.
"""

import grpc
import pytest
from google.protobuf.message import Message
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import expect_error
from tests.service import Running
from tests.world import World

DENIED = grpc.StatusCode.PERMISSION_DENIED
CREDENTIAL_CALLS = ["AddSecret", "RemoveSecret", "AddPersonalAccessToken"]


def credential_request(method: str, user_id: str) -> Message:
    requests: dict[str, type[Message]] = {
        "AddSecret": user_pb.AddSecretRequest,
        "RemoveSecret": user_pb.RemoveSecretRequest,
        "AddPersonalAccessToken": user_pb.AddPersonalAccessTokenRequest,
    }
    return requests[method](user_id=user_id)


async def admin_id(running: Running) -> str:
    admin = await running.service.store.user_by_name("admin")
    assert admin is not None
    return admin.id


async def sequence_of(world: World, user_id: str) -> int:
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user
    return int(user.details.sequence)


async def test_a_user_manager_cannot_take_over_the_admin(world: World, running: Running) -> None:
    admin = await admin_id(running)
    await world.call("AddSecret", user_pb.AddSecretRequest(user_id=admin))  # so RemoveSecret has one
    _, mgr = await world.caller(["ORG_USER_MANAGER"])
    before = await sequence_of(world, admin)
    for method in CREDENTIAL_CALLS:
        error = await expect_error(
            DENIED, "PERMISSION_DENIED", world.call(method, credential_request(method, admin), token=mgr)
        )
        assert "IAM_OWNER" not in error.message  # the target's roles are not told
    assert await sequence_of(world, admin) == before, "a refused call wrote nothing"
    # Step 3 of the report needs a token of the admin's; mgr's own cannot add organisations.
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("AddOrganization", org_pb.AddOrganizationRequest(name="escalated"), token=mgr),
    )


@pytest.mark.parametrize("method", CREDENTIAL_CALLS)
async def test_credentials_of_a_more_powerful_user_are_refused(world: World, method: str) -> None:
    """ORG_OWNER holds org.member.write, which a user manager lacks; IAM_OWNER holds everywhere."""
    _, mgr = await world.caller(["ORG_USER_MANAGER"])
    _, owner = await world.caller(["ORG_OWNER"])
    org_owner, _ = await world.caller(["ORG_OWNER"])
    iam_owner, _ = await world.caller(["IAM_OWNER"])
    for caller, target in ((mgr, org_owner), (mgr, iam_owner), (owner, iam_owner)):
        if method == "RemoveSecret":
            await world.call("AddSecret", user_pb.AddSecretRequest(user_id=target))
        await expect_error(
            DENIED, "PERMISSION_DENIED", world.call(method, credential_request(method, target), token=caller)
        )
    # A peer, a weaker user, a user with no roles, and oneself are fine.
    peer, _ = await world.caller(["ORG_USER_MANAGER"])
    mgr_id, mgr_token = await world.caller(["ORG_USER_MANAGER"])
    for caller, target in (
        (mgr, peer),
        (owner, peer),
        (mgr, await world.machine_user()),
        (mgr_token, mgr_id),
    ):
        if method == "RemoveSecret":
            await world.call("AddSecret", user_pb.AddSecretRequest(user_id=target))
        await world.call(method, credential_request(method, target), token=caller)


async def test_roles_in_another_organisation_count(world: World) -> None:
    """A user of this organisation who is ORG_OWNER elsewhere is out of reach of an owner here."""
    elsewhere = await world.org()
    target = await world.machine_user()
    await world.grant(target, ["ORG_USER_MANAGER"], org=elsewhere)
    _, owner = await world.caller(["ORG_OWNER"])
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("AddSecret", user_pb.AddSecretRequest(user_id=target), token=owner),
    )
    # Holding the same permissions there too is enough.
    both_id, both = await world.caller(["ORG_OWNER"])
    await world.grant(both_id, ["ORG_USER_MANAGER"], org=elsewhere)
    assert (await world.call("AddSecret", user_pb.AddSecretRequest(user_id=target), token=both)).client_id


async def test_a_role_is_granted_only_by_a_caller_who_holds_it(world: World) -> None:
    owner_id, owner = await world.caller(["ORG_OWNER"])
    user = await world.machine_user()
    # An ORG_OWNER may make another ORG_OWNER: it gives nothing the owner lacks.
    await world.call(
        "AddOrgMember", org_pb.AddOrgMemberRequest(user_id=user, roles=["ORG_OWNER"]), token=owner
    )
    for roles in (["IAM_OWNER"], ["ORG_USER_MANAGER", "IAM_OWNER"]):
        for target in (owner_id, await world.machine_user()):
            await expect_error(
                DENIED,
                "PERMISSION_DENIED",
                world.call(
                    "AddOrgMember", org_pb.AddOrgMemberRequest(user_id=target, roles=roles), token=owner
                ),
            )
    # An IAM_OWNER that is not the admin may grant IAM_OWNER.
    _, iam = await world.caller(["IAM_OWNER"])
    await world.call(
        "AddOrgMember",
        org_pb.AddOrgMemberRequest(user_id=await world.machine_user(), roles=["IAM_OWNER"]),
        token=iam,
    )


async def test_members_from_other_organisations_do_not_reveal_existence(world: World) -> None:
    """An owner who may not read another organisation's users gets the same answer for one of
    them as for a user id that does not exist: code, reason and message."""
    elsewhere = await world.org()
    stranger = await world.machine_user(org=elsewhere)
    _, owner = await world.caller(["ORG_OWNER"])
    answers = []
    for user_id in (stranger, "99"):
        request = org_pb.AddOrgMemberRequest(user_id=user_id, roles=["ORG_USER_MANAGER"])
        error = await expect_error(
            grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND", world.call("AddOrgMember", request, token=owner)
        )
        answers.append((error.code, error.reason, error.message, error.metadata, error.violations))
    assert answers[0] == answers[1]
    # Given user.read there, the owner may make that user a member here.
    owner_id, owner = await world.caller(["ORG_OWNER"])
    await world.grant(owner_id, ["ORG_USER_MANAGER"], org=elsewhere)
    request = org_pb.AddOrgMemberRequest(user_id=stranger, roles=["ORG_USER_MANAGER"])
    assert (await world.call("AddOrgMember", request, token=owner)).details.resource_owner == world.home_org
