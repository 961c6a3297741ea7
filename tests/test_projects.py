"""Projects, project roles, API applications and user grants under ZITADEL's management v1 names,
on every transport and store: the same answers, permissions and errors everywhere."""

import grpc
from machinesecrets.v1 import project_service_pb2 as project_pb
from zitadel.app.v1 import app_pb2
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.project.v1 import project_pb2

from server.domain.secret_format import is_well_formed
from tests.api import expect_error
from tests.world import World, unique_name

M = "ManagementService."


async def project(world: World, org: str | None = None, token: str | None = None) -> str:
    added = await world.call(
        M + "AddProject", mgmt.AddProjectRequest(name=unique_name("shop")), org=org, token=token
    )
    assert added.details.resource_owner == (org or world.home_org)
    assert added.details.sequence == 1
    return str(added.id)


async def test_a_project_its_roles_apps_and_grants(world: World) -> None:
    project_id = await project(world)
    got = await world.call(M + "GetProjectByID", mgmt.GetProjectByIDRequest(id=project_id))
    assert (got.project.id, got.project.state) == (project_id, project_pb2.PROJECT_STATE_ACTIVE)
    listed = await world.call(M + "ListProjects", mgmt.ListProjectsRequest())
    assert project_id in [p.id for p in listed.result]
    assert listed.details.total_result == len(listed.result)

    role = mgmt.AddProjectRoleRequest(
        project_id=project_id, role_key="reader", display_name="Reader", group="g"
    )
    assert (await world.call(M + "AddProjectRole", role)).details.sequence == 2
    await expect_error(
        grpc.StatusCode.ALREADY_EXISTS, "ROLE_ALREADY_EXISTS", world.call(M + "AddProjectRole", role)
    )
    await world.call(
        M + "AddProjectRole", mgmt.AddProjectRoleRequest(project_id=project_id, role_key="writer")
    )
    roles = await world.call(M + "ListProjectRoles", mgmt.ListProjectRolesRequest(project_id=project_id))
    assert [(r.key, r.display_name, r.group) for r in roles.result] == [
        ("reader", "Reader", "g"),
        ("writer", "", ""),
    ]

    app = await world.call(M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=project_id, name="api"))
    assert app.client_id == f"{app.app_id}@{project_id}"
    assert is_well_formed(app.client_secret)  # shown once
    apps = await world.call(M + "ListApps", mgmt.ListAppsRequest(project_id=project_id))
    [listed_app] = apps.result
    assert (listed_app.id, listed_app.name, listed_app.api_config.client_id) == (
        app.app_id,
        "api",
        app.client_id,
    )
    assert listed_app.api_config.auth_method_type == app_pb2.API_AUTH_METHOD_TYPE_BASIC
    assert app.client_secret not in str(apps)
    again = await world.call(
        M + "RegenerateAPIClientSecret",
        mgmt.RegenerateAPIClientSecretRequest(project_id=project_id, app_id=app.app_id),
    )
    assert is_well_formed(again.client_secret)
    assert again.client_secret != app.client_secret

    user_id = await world.machine_user()
    granted = await world.call(
        M + "AddUserGrant",
        mgmt.AddUserGrantRequest(user_id=user_id, project_id=project_id, role_keys=["reader"]),
    )
    grants = await world.call(M + "ListUserGrants", mgmt.ListUserGrantRequest())
    [grant] = [g for g in grants.result if g.id == granted.user_grant_id]
    assert (grant.user_id, grant.project_id, list(grant.role_keys)) == (user_id, project_id, ["reader"])
    assert grant.org_id == world.home_org
    await expect_error(
        grpc.StatusCode.ALREADY_EXISTS,
        "GRANT_ALREADY_EXISTS",
        world.call(
            M + "AddUserGrant",
            mgmt.AddUserGrantRequest(user_id=user_id, project_id=project_id, role_keys=["writer"]),
        ),
    )
    await world.call(M + "RemoveUserGrant", mgmt.RemoveUserGrantRequest(user_id=user_id, grant_id=grant.id))
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "GRANT_NOT_FOUND",
        world.call(M + "RemoveUserGrant", mgmt.RemoveUserGrantRequest(user_id=user_id, grant_id=grant.id)),
    )

    await world.call(
        M + "RemoveProjectRole", mgmt.RemoveProjectRoleRequest(project_id=project_id, role_key="writer")
    )
    await world.call(M + "RemoveApp", mgmt.RemoveAppRequest(project_id=project_id, app_id=app.app_id))
    assert not (await world.call(M + "ListApps", mgmt.ListAppsRequest(project_id=project_id))).result
    await world.call(M + "RemoveProject", mgmt.RemoveProjectRequest(id=project_id))
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "PROJECT_NOT_FOUND",
        world.call(M + "GetProjectByID", mgmt.GetProjectByIDRequest(id=project_id)),
    )


async def test_bad_input_and_other_organisations(world: World) -> None:
    other = await world.org()
    theirs = await project(world, org=other)
    for call in (
        world.call(M + "GetProjectByID", mgmt.GetProjectByIDRequest(id=theirs)),  # another organisation's
        world.call(M + "ListApps", mgmt.ListAppsRequest(project_id="1")),  # none at all
        world.call(M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=theirs, name="api")),
    ):
        await expect_error(grpc.StatusCode.NOT_FOUND, "PROJECT_NOT_FOUND", call)
    project_id = await project(world)
    for request, field in (
        (mgmt.AddProjectRoleRequest(project_id=project_id, role_key="a b"), "role_key"),
        (mgmt.AddProjectRoleRequest(project_id="x", role_key="ok"), "project_id"),
    ):
        refused = await expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", world.call(M + "AddProjectRole", request)
        )
        assert field in refused.violations
    assert (await world.call(M + "AddProject", mgmt.AddProjectRequest(name="x"), org=other)).id
    user_id = await world.machine_user()
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "ROLE_NOT_FOUND",
        world.call(
            M + "AddUserGrant",
            mgmt.AddUserGrantRequest(user_id=user_id, project_id=project_id, role_keys=["nope"]),
        ),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "APP_NOT_FOUND",
        world.call(M + "RemoveApp", mgmt.RemoveAppRequest(project_id=project_id, app_id="1")),
    )


async def test_who_may_manage_projects(world: World) -> None:
    """PROJECT_OWNER manages projects and grants and nothing else; a user manager no project; and
    a user manager may not make someone a PROJECT_OWNER (it does not hold that power)."""
    _, owner = await world.caller(["PROJECT_OWNER"])
    project_id = await project(world, token=owner)
    await world.call(
        M + "AddProjectRole", mgmt.AddProjectRoleRequest(project_id=project_id, role_key="r"), token=owner
    )
    app = await world.call(
        M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=project_id, name="a"), token=owner
    )
    assert app.client_secret
    user_id = await world.machine_user()
    await world.call(
        M + "AddUserGrant",
        mgmt.AddUserGrantRequest(user_id=user_id, project_id=project_id, role_keys=["r"]),
        token=owner,
    )
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=user_id), token=owner),
    )
    manager_id, manager = await world.caller(["ORG_USER_MANAGER"])
    for method, request in (
        ("AddProject", mgmt.AddProjectRequest(name="m")),
        ("ListProjects", mgmt.ListProjectsRequest()),
        ("AddAPIApp", mgmt.AddAPIAppRequest(project_id=project_id, name="b")),
        (
            "AddUserGrant",
            mgmt.AddUserGrantRequest(user_id=manager_id, project_id=project_id, role_keys=["r"]),
        ),
    ):
        await expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
            world.call(M + method, request, token=manager),
        )
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            M + "AddOrgMember",
            mgmt.AddOrgMemberRequest(user_id=user_id, roles=["PROJECT_OWNER"]),
            token=manager,
        ),
    )


async def test_the_native_project_service(world: World) -> None:
    """machinesecrets.v1.ProjectService: the same commands under the native API's names and paths."""
    added = await world.call("AddProject", project_pb.AddProjectRequest(name=unique_name("native")))
    project_id = added.project_id
    assert (added.details.sequence, added.details.resource_owner) == (1, world.home_org)
    got = await world.call("GetProject", project_pb.GetProjectRequest(project_id=project_id))
    assert got.project.id == project_id
    assert project_id in [
        p.id for p in (await world.call("ListProjects", project_pb.ListProjectsRequest())).projects
    ]
    await world.call(
        "AddProjectRole", project_pb.AddProjectRoleRequest(project_id=project_id, role_key="r.1")
    )
    roles = await world.call("ListProjectRoles", project_pb.ListProjectRolesRequest(project_id=project_id))
    assert [r.key for r in roles.roles] == ["r.1"]
    app = await world.call("AddApiApp", project_pb.AddApiAppRequest(project_id=project_id, name="api"))
    assert is_well_formed(app.client_secret)
    assert app.client_id == f"{app.app_id}@{project_id}"
    again = await world.call(
        "RegenerateApiAppSecret",
        project_pb.RegenerateApiAppSecretRequest(project_id=project_id, app_id=app.app_id),
    )
    assert (again.client_id, is_well_formed(again.client_secret)) == (app.client_id, True)
    listed = await world.call("ListApps", project_pb.ListAppsRequest(project_id=project_id))
    assert [(a.id, a.client_id) for a in listed.apps] == [(app.app_id, app.client_id)]
    user_id = await world.machine_user()
    grant = await world.call(
        "AddUserGrant",
        project_pb.AddUserGrantRequest(user_id=user_id, project_id=project_id, role_keys=["r.1"]),
    )
    grants = (await world.call("ListUserGrants", project_pb.ListUserGrantsRequest())).grants
    assert [(g.user_id, list(g.role_keys)) for g in grants if g.id == grant.grant_id] == [(user_id, ["r.1"])]
    await world.call(
        "RemoveUserGrant", project_pb.RemoveUserGrantRequest(user_id=user_id, grant_id=grant.grant_id)
    )
    await world.call("RemoveApp", project_pb.RemoveAppRequest(project_id=project_id, app_id=app.app_id))
    await world.call(
        "RemoveProjectRole", project_pb.RemoveProjectRoleRequest(project_id=project_id, role_key="r.1")
    )
    await world.call("RemoveProject", project_pb.RemoveProjectRequest(project_id=project_id))
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "PROJECT_NOT_FOUND",
        world.call("GetProject", project_pb.GetProjectRequest(project_id=project_id)),
    )
    refused = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call("AddProject", project_pb.AddProjectRequest(name="")),
    )
    assert "name" in refused.violations
