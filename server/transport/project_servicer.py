"""The native API's ProjectService: projects, their roles, API applications and user grants,
each method a thin mapping onto the commands and queries that ZITADEL's management v1 names use
too (zitadel_management.py), with the same permissions (declared in the .proto) and errors."""

from machinesecrets.v1 import project_service_pb2 as pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.commands import Commands
from server.domain.commands.projects import AUTH_METHOD_BASIC, AUTH_METHOD_PRIVATE_KEY_JWT
from server.domain.model import AppKeyView, Details
from server.domain.permissions import CallContext
from server.domain.queries import Queries
from server.store.contract import AppRecord, ProjectRecord, ProjectRoleRecord
from server.transport.conversions import details_proto, expiration_of, timestamp

# The native enum's values are ZITADEL's APIAuthMethodType's; an unknown number is passed on as
# its text, which the command refuses as INVALID_ARGUMENT.
AUTH_METHODS = {
    pb.API_AUTH_METHOD_BASIC: AUTH_METHOD_BASIC,
    pb.API_AUTH_METHOD_PRIVATE_KEY_JWT: AUTH_METHOD_PRIVATE_KEY_JWT,
}
AUTH_METHOD_VALUES = {method: value for value, method in AUTH_METHODS.items()}


def project_proto(project: ProjectRecord) -> pb.Project:
    details = Details(project.sequence, project.created_at, project.changed_at, project.org_id)
    return pb.Project(id=project.id, name=project.name, details=details_proto(details))


def role_proto(role: ProjectRoleRecord, org_id: str) -> pb.ProjectRole:
    details = Details(role.sequence, role.created_at, role.created_at, org_id)
    return pb.ProjectRole(
        key=role.key, display_name=role.display_name, group=role.group, details=details_proto(details)
    )


def app_proto(app: AppRecord) -> pb.ApiApp:
    details = Details(app.sequence, app.created_at, app.changed_at, app.org_id)
    return pb.ApiApp(
        id=app.app_id,
        name=app.name,
        client_id=app.client_id,
        details=details_proto(details),
        auth_method=AUTH_METHOD_VALUES[app.auth_method],
    )


def app_key_proto(key: AppKeyView) -> pb.AppKey:
    found = pb.AppKey(
        key_id=key.key_id,
        key_type=key.key_type,
        creation_date=timestamp(key.creation_date),
        state=user_pb.KEY_STATE_ACTIVE if key.active else user_pb.KEY_STATE_EXPIRED,
    )
    if key.expiration_date is not None:
        found.expiration_date.CopyFrom(timestamp(key.expiration_date))
    return found


class ProjectService:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def AddProject(self, request: pb.AddProjectRequest, ctx: CallContext) -> pb.AddProjectResponse:
        created = await self._commands.add_project(ctx, request.name)
        return pb.AddProjectResponse(project_id=created.id, details=details_proto(created.details))

    async def GetProject(self, request: pb.GetProjectRequest, ctx: CallContext) -> pb.GetProjectResponse:
        project = await self._queries.project(ctx, request.project_id, "project_id")
        return pb.GetProjectResponse(project=project_proto(project))

    async def ListProjects(
        self, request: pb.ListProjectsRequest, ctx: CallContext
    ) -> pb.ListProjectsResponse:
        return pb.ListProjectsResponse(projects=[project_proto(p) for p in await self._queries.projects(ctx)])

    async def RemoveProject(
        self, request: pb.RemoveProjectRequest, ctx: CallContext
    ) -> pb.RemoveProjectResponse:
        details = await self._commands.remove_project(ctx, request.project_id)
        return pb.RemoveProjectResponse(details=details_proto(details))

    async def AddProjectRole(
        self, request: pb.AddProjectRoleRequest, ctx: CallContext
    ) -> pb.AddProjectRoleResponse:
        details = await self._commands.add_project_role(
            ctx, request.project_id, request.role_key, request.display_name, request.group
        )
        return pb.AddProjectRoleResponse(details=details_proto(details))

    async def ListProjectRoles(
        self, request: pb.ListProjectRolesRequest, ctx: CallContext
    ) -> pb.ListProjectRolesResponse:
        roles = await self._queries.project_roles(ctx, request.project_id)
        return pb.ListProjectRolesResponse(roles=[role_proto(role, ctx.org_id) for role in roles])

    async def RemoveProjectRole(
        self, request: pb.RemoveProjectRoleRequest, ctx: CallContext
    ) -> pb.RemoveProjectRoleResponse:
        details = await self._commands.remove_project_role(ctx, request.project_id, request.role_key)
        return pb.RemoveProjectRoleResponse(details=details_proto(details))

    async def AddApiApp(self, request: pb.AddApiAppRequest, ctx: CallContext) -> pb.AddApiAppResponse:
        method = AUTH_METHODS.get(request.auth_method, str(request.auth_method))
        issued = await self._commands.add_api_app(ctx, request.project_id, request.name, method)
        return pb.AddApiAppResponse(
            app_id=issued.app_id,
            client_id=issued.client_id,
            client_secret=issued.client_secret,
            details=details_proto(issued.details),
        )

    async def UpdateApiAppAuthMethod(
        self, request: pb.UpdateApiAppAuthMethodRequest, ctx: CallContext
    ) -> pb.UpdateApiAppAuthMethodResponse:
        method = AUTH_METHODS.get(request.auth_method, str(request.auth_method))
        details = await self._commands.change_api_auth_method(ctx, request.project_id, request.app_id, method)
        return pb.UpdateApiAppAuthMethodResponse(details=details_proto(details))

    async def AddAppKey(self, request: pb.AddAppKeyRequest, ctx: CallContext) -> pb.AddAppKeyResponse:
        issued = await self._commands.add_app_key(
            ctx, request.project_id, request.app_id, expiration_of(request), request.public_key
        )
        answer = pb.AddAppKeyResponse(
            key_id=issued.key_id, key_content=issued.key_file or b"", details=details_proto(issued.details)
        )
        if issued.expiration_date is not None:
            answer.expiration_date.CopyFrom(timestamp(issued.expiration_date))
        return answer

    async def ListAppKeys(self, request: pb.ListAppKeysRequest, ctx: CallContext) -> pb.ListAppKeysResponse:
        keys = await self._queries.app_keys(ctx, request.project_id, request.app_id)
        return pb.ListAppKeysResponse(keys=[app_key_proto(k) for k in keys])

    async def RemoveAppKey(
        self, request: pb.RemoveAppKeyRequest, ctx: CallContext
    ) -> pb.RemoveAppKeyResponse:
        details = await self._commands.remove_app_key(ctx, request.project_id, request.app_id, request.key_id)
        return pb.RemoveAppKeyResponse(details=details_proto(details))

    async def RegenerateApiAppSecret(
        self, request: pb.RegenerateApiAppSecretRequest, ctx: CallContext
    ) -> pb.RegenerateApiAppSecretResponse:
        issued = await self._commands.regenerate_api_client_secret(ctx, request.project_id, request.app_id)
        return pb.RegenerateApiAppSecretResponse(
            client_id=issued.client_id,
            client_secret=issued.client_secret,
            details=details_proto(issued.details),
        )

    async def ListApps(self, request: pb.ListAppsRequest, ctx: CallContext) -> pb.ListAppsResponse:
        return pb.ListAppsResponse(
            apps=[app_proto(app) for app in await self._queries.apps(ctx, request.project_id)]
        )

    async def RemoveApp(self, request: pb.RemoveAppRequest, ctx: CallContext) -> pb.RemoveAppResponse:
        details = await self._commands.remove_app(ctx, request.project_id, request.app_id)
        return pb.RemoveAppResponse(details=details_proto(details))

    async def AddUserGrant(
        self, request: pb.AddUserGrantRequest, ctx: CallContext
    ) -> pb.AddUserGrantResponse:
        created = await self._commands.add_user_grant(
            ctx, request.user_id, request.project_id, list(request.role_keys)
        )
        return pb.AddUserGrantResponse(grant_id=created.id, details=details_proto(created.details))

    async def ListUserGrants(
        self, request: pb.ListUserGrantsRequest, ctx: CallContext
    ) -> pb.ListUserGrantsResponse:
        return pb.ListUserGrantsResponse(
            grants=[
                pb.UserGrant(
                    id=g.grant_id,
                    user_id=g.user_id,
                    user_name=g.user_name,
                    project_id=g.project_id,
                    project_name=g.project_name,
                    role_keys=g.role_keys,
                    details=details_proto(g.details),
                )
                for g in await self._queries.user_grants(ctx)
            ]
        )

    async def RemoveUserGrant(
        self, request: pb.RemoveUserGrantRequest, ctx: CallContext
    ) -> pb.RemoveUserGrantResponse:
        details = await self._commands.remove_user_grant(ctx, request.user_id, request.grant_id)
        return pb.RemoveUserGrantResponse(details=details_proto(details))
