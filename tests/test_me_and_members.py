"""Who the caller is (GetMe; ZITADEL's GetMyUser and ListMyZitadelPermissions), and who holds
roles in an organisation (ListOrgMembers, native and ZITADEL's), over every transport and store."""

import grpc
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.auth.v1 import auth_pb2
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.member.v1 import member_pb2
from zitadel.v1 import object_pb2

from server.domain.permissions import PERMISSIONS, ROLE_PERMISSIONS
from tests.api import exchange, expect_error
from tests.service import Running
from tests.world import World, unique_name

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
M = "ManagementService."


async def test_get_me_names_the_caller_and_its_permissions_by_organisation(world: World) -> None:
    home, other = await world.org(), await world.org()
    name = unique_name("me")
    user_id = await world.machine_user(org=home, user_name=name)
    await world.grant(user_id, ["ORG_USER_MANAGER"], org=home)
    await world.grant(user_id, ["ORG_OWNER"], org=other)
    token = await world.token_for(user_id, org=home)
    me = await world.call("GetMe", user_pb.GetMeRequest(), token=token)
    assert (me.user.id, me.user.user_name, me.org_id) == (user_id, name, home)
    assert me.user.details.resource_owner == home
    by_org = {m.org_id: m for m in me.memberships}
    assert set(by_org) == {home, other}
    assert list(by_org[home].roles) == ["ORG_USER_MANAGER"]
    assert list(by_org[home].permissions) == sorted(ROLE_PERMISSIONS["ORG_USER_MANAGER"])
    assert list(by_org[other].permissions) == sorted(ROLE_PERMISSIONS["ORG_OWNER"])
    assert list(me.instance_permissions) == []
    # x-zitadel-orgid is not read: the answer is the caller's, wherever it points.
    assert await world.call("GetMe", user_pb.GetMeRequest(), token=token, org=other) == me


async def test_get_me_names_the_user_of_a_client_secrets_access_token(world: World, running: Running) -> None:
    org = await world.org()
    name = unique_name("by-secret")
    user_id = await world.machine_user(org=org, user_name=name)
    secret = await world.call("CreateSecret", user_pb.CreateSecretRequest(user_id=user_id), org=org)
    answer = await exchange(
        f"http://127.0.0.1:{running.service.http_port}", secret.client_id, secret.client_secret
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    me = await world.call("GetMe", user_pb.GetMeRequest(), token=token)
    assert (me.user.id, me.user.user_name, me.org_id) == (user_id, name, org)
    zitadel = await world.call("AuthService.GetMyUser", auth_pb2.GetMyUserRequest(), token=token)
    assert zitadel.user.id == user_id
    # About itself only: it names no one else, and a dead token is refused as everywhere.
    await world.call("RemoveUser", user_pb.RemoveUserRequest(user_id=user_id), org=org)
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("GetMe", user_pb.GetMeRequest(), token=token),
    )


async def test_a_caller_with_no_roles_and_an_iam_owner_tell_apart(world: World) -> None:
    org = await world.org()
    _, nobody = await world.caller([], home=org)
    me = await world.call("GetMe", user_pb.GetMeRequest(), token=nobody)
    assert (list(me.memberships), list(me.instance_permissions)) == ([], [])
    assert (
        await world.call(
            "AuthService.ListMyZitadelPermissions", auth_pb2.ListMyZitadelPermissionsRequest(), token=nobody
        )
        == auth_pb2.ListMyZitadelPermissionsResponse()
    )
    _, owner = await world.caller(["IAM_OWNER"], org=org, home=org)
    me = await world.call("GetMe", user_pb.GetMeRequest(), token=owner)
    assert list(me.instance_permissions) == sorted(PERMISSIONS)
    listed = await world.call(
        "AuthService.ListMyZitadelPermissions", auth_pb2.ListMyZitadelPermissionsRequest(), token=owner
    )
    assert list(listed.result) == sorted(PERMISSIONS)


async def test_zitadel_get_my_user_is_the_caller_as_zitadel_shows_it(world: World) -> None:
    org = await world.org()
    name = unique_name("zme")
    user_id = await world.machine_user(org=org, user_name=name)
    await world.grant(user_id, ["ORG_USER_MANAGER"], org=org)
    token = await world.token_for(user_id, org=org)
    answer = await world.call("AuthService.GetMyUser", auth_pb2.GetMyUserRequest(), token=token)
    assert (answer.user.id, answer.user.user_name, answer.user.preferred_login_name) == (user_id, name, name)
    assert answer.user.details.resource_owner == org
    assert answer.user.HasField("machine")
    assert not answer.HasField("last_login")
    listed = await world.call(
        "AuthService.ListMyZitadelPermissions", auth_pb2.ListMyZitadelPermissionsRequest(), token=token
    )
    assert list(listed.result) == sorted(ROLE_PERMISSIONS["ORG_USER_MANAGER"])


async def members_of(world: World, org: str, page_size: int, token: str | None = None) -> list[list[str]]:
    pages: list[list[str]] = []
    page_token = ""
    while True:
        request = org_pb.ListOrgMembersRequest(page_size=page_size, page_token=page_token)
        answer = await world.call("ListOrgMembers", request, org=org, token=token)
        pages.append([m.user_id for m in answer.members])
        page_token = answer.next_page_token
        if not page_token:
            return pages
        assert len(pages) < 20, "the list does not end"


async def test_list_org_members_pages_through_the_members_with_their_roles(world: World) -> None:
    org, elsewhere = await world.org(), await world.org()
    managers = [await world.machine_user(org=org) for _ in range(3)]
    for user_id in managers:
        await world.grant(user_id, ["ORG_USER_MANAGER"], org=org)
    outsider = await world.machine_user(org=elsewhere)  # a member from another organisation
    await world.grant(outsider, ["ORG_OWNER"], org=org)
    await world.machine_user(org=org)  # no roles: no member
    pages = await members_of(world, org, page_size=2)
    assert [len(p) for p in pages] == [2, 2]
    listed = [user_id for page in pages for user_id in page]
    assert listed == sorted([*managers, outsider])  # in the order of their ids
    answer = await world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(user_id=outsider), org=org)
    [member] = answer.members
    assert (member.user_org_id, list(member.roles)) == (elsewhere, ["ORG_OWNER"])
    assert member.user_name
    # A removed user is no member.
    await world.call("RemoveUser", user_pb.RemoveUserRequest(user_id=managers[0]), org=org)
    answer = await world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(user_id=managers[0]), org=org)
    assert list(answer.members) == []


async def test_list_org_members_needs_user_read_and_refuses_bad_input(world: World) -> None:
    org = await world.org()
    _, nobody = await world.caller([], home=org)
    error = await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(), token=nobody),
    )
    assert error.metadata == {"permission": "user.read"}
    manager_id, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    answer = await world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(), token=manager)
    assert [m.user_id for m in answer.members] == [manager_id]
    bad = org_pb.ListOrgMembersRequest(page_size=101, user_id="x")
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListOrgMembers", bad, org=org))
    assert set(error.violations) == {"page_size", "user_id"}
    first = await world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(page_size=1), org=org)
    assert not first.next_page_token  # one member
    other = await world.org()
    await world.grant(manager_id, ["ORG_USER_MANAGER"], org=other)
    more = await world.machine_user(org=org)
    await world.grant(more, ["ORG_USER_MANAGER"], org=org)
    first = await world.call("ListOrgMembers", org_pb.ListOrgMembersRequest(page_size=1), org=org)
    stolen = org_pb.ListOrgMembersRequest(page_size=1, page_token=first.next_page_token)
    await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListOrgMembers", stolen, org=other))


async def test_zitadel_list_org_members_by_offset_and_user(world: World) -> None:
    org = await world.org()
    members = sorted([await world.machine_user(org=org) for _ in range(3)])
    for user_id in members:
        await world.grant(user_id, ["ORG_USER_MANAGER"], org=org)
    request = mgmt.ListOrgMembersRequest(query=object_pb2.ListQuery(offset=1, limit=1))
    answer = await world.call(M + "ListOrgMembers", request, org=org)
    assert answer.details.total_result == 3
    [member] = answer.result
    assert (member.user_id, list(member.roles)) == (members[1], ["ORG_USER_MANAGER"])
    assert member.preferred_login_name
    assert member.details.resource_owner == org
    by_user = mgmt.ListOrgMembersRequest(
        queries=[member_pb2.SearchQuery(user_id_query=member_pb2.UserIDQuery(user_id=members[2]))]
    )
    answer = await world.call(M + "ListOrgMembers", by_user, org=org)
    assert [m.user_id for m in answer.result] == [members[2]]
    assert answer.details.total_result == 1
    by_email = mgmt.ListOrgMembersRequest(
        queries=[member_pb2.SearchQuery(email_query=member_pb2.EmailQuery(email="a@example.com"))]
    )
    error = await expect_error(
        INVALID, "INVALID_ARGUMENT", world.call(M + "ListOrgMembers", by_email, org=org)
    )
    assert error.violations == {"queries[0]": "only user_id_query is supported"}
    too_many = mgmt.ListOrgMembersRequest(query=object_pb2.ListQuery(limit=101))
    await expect_error(INVALID, "INVALID_ARGUMENT", world.call(M + "ListOrgMembers", too_many, org=org))
    _, nobody = await world.caller([], home=org)
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call(M + "ListOrgMembers", mgmt.ListOrgMembersRequest(), token=nobody),
    )
