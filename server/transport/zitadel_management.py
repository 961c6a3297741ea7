"""ZITADEL's management API (zitadel.management.v1), the subset of the machine-user secret
lifecycle: each method a thin mapping onto the same commands and queries as the native API, so
that it has the same permissions (declared in its .proto), organisation rules and errors. Only the
message shapes are ZITADEL's."""

from collections.abc import Sequence
from typing import TypeVar

from zitadel.app.v1 import app_pb2
from zitadel.authn.v1 import auth_n_key_pb2 as authn
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.member.v1 import member_pb2
from zitadel.metadata.v1 import metadata_pb2
from zitadel.project.v1 import project_pb2
from zitadel.user.v1 import user_pb2
from zitadel.v1 import object_pb2

from server.domain.commands import Commands
from server.domain.commands.projects import AUTH_METHOD_BASIC, AUTH_METHOD_PRIVATE_KEY_JWT
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.model import AppKeyView, Details, MachineKeyView, MetadataView, UserProfile, UserView
from server.domain.permissions import CallContext
from server.domain.queries import Queries
from server.store.contract import ProjectRecord
from server.transport.conversions import (
    access_token_type_of,
    details_proto,
    expiration_of,
    fill_zitadel_machine,
    text_matches,
    timestamp,
    zitadel_key_expiration,
    zitadel_login_names,
)

# ListMachineKeys' page when the query names no limit (ZITADEL's default is larger; a user has
# at most a few keys).
DEFAULT_KEY_PAGE = 100


def zitadel_key(view: MachineKeyView) -> authn.Key:
    """A machine key as ZITADEL's v1 API shows it: a JSON key file, its dates, and the user's
    organisation."""
    created = timestamp(view.creation_date)
    return authn.Key(
        id=view.key_id,
        details=object_pb2.ObjectDetails(
            creation_date=created, change_date=created, resource_owner=view.org_id
        ),
        type=authn.KEY_TYPE_JSON,
        expiration_date=zitadel_key_expiration(view.expiration_date),
    )


T = TypeVar("T")
# ZITADEL's list limit when a query sets none, and the most it answers at once.
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
AUTH_METHODS = {
    app_pb2.API_AUTH_METHOD_TYPE_BASIC: AUTH_METHOD_BASIC,
    app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT: AUTH_METHOD_PRIVATE_KEY_JWT,
}
AUTH_METHOD_VALUES = {method: value for value, method in AUTH_METHODS.items()}


def zitadel_app_key(view: AppKeyView) -> authn.Key:
    """An application's key as ZITADEL's v1 API shows it, as a machine key is."""
    created = timestamp(view.creation_date)
    return authn.Key(
        id=view.key_id,
        details=object_pb2.ObjectDetails(
            creation_date=created, change_date=created, resource_owner=view.org_id
        ),
        type=authn.KEY_TYPE_JSON,
        expiration_date=zitadel_key_expiration(view.expiration_date),
    )


def listed(items: Sequence[T], query: object_pb2.ListQuery) -> tuple[object_pb2.ListDetails, Sequence[T]]:
    """A list as ZITADEL's v1 API answers it: the page that query's offset and limit name (in the
    order of ids, oldest first), and the details with the total."""
    limit = min(query.limit or DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    page = items[query.offset : query.offset + limit]
    return object_pb2.ListDetails(total_result=len(items)), page


def v1_details(details: Details) -> object_pb2.ObjectDetails:
    return details_proto(details, object_pb2.ObjectDetails)


def zitadel_user(view: UserView, profile: UserProfile) -> user_pb2.User:
    """A user as ZITADEL's v1 API shows it. Its login name is its user name: the service has no
    organisation domains to append."""
    user = user_pb2.User(
        id=view.id,
        details=details_proto(view.details, object_pb2.ObjectDetails),
        state=user_pb2.USER_STATE_ACTIVE if view.active else user_pb2.USER_STATE_INACTIVE,
        user_name=view.user_name,
        **zitadel_login_names(view.user_name),
    )
    if view.machine:
        fill_zitadel_machine(user.machine, view, profile)
    else:
        user.human.CopyFrom(
            user_pb2.Human(
                profile=user_pb2.Profile(display_name=profile.display_name),
                email=user_pb2.Email(email=profile.email),
            )
        )
    return user


class ManagementService:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def AddMachineUser(
        self, request: mgmt.AddMachineUserRequest, ctx: CallContext
    ) -> mgmt.AddMachineUserResponse:
        violations = []
        if request.HasField("user_id"):
            violations.append(FieldViolation("user_id", "the service chooses user ids: leave it unset"))
        if violations:
            raise InvalidArgument(violations)
        created = await self._commands.add_machine_user(
            ctx,
            request.user_name,
            request.name,
            request.description,
            access_token_type_of(request.access_token_type),
        )
        return mgmt.AddMachineUserResponse(
            user_id=created.id, details=details_proto(created.details, object_pb2.ObjectDetails)
        )

    async def UpdateMachine(
        self, request: mgmt.UpdateMachineRequest, ctx: CallContext
    ) -> mgmt.UpdateMachineResponse:
        """ZITADEL's UpdateMachine sets all three fields: an unset description is empty."""
        details = await self._commands.update_machine(
            ctx,
            request.user_id,
            request.name,
            request.description,
            access_token_type_of(request.access_token_type),
        )
        return mgmt.UpdateMachineResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def GenerateMachineSecret(
        self, request: mgmt.GenerateMachineSecretRequest, ctx: CallContext
    ) -> mgmt.GenerateMachineSecretResponse:
        issued = await self._commands.add_secret(ctx, request.user_id)
        return mgmt.GenerateMachineSecretResponse(
            client_id=issued.client_id,
            client_secret=issued.client_secret,
            details=details_proto(issued.details, object_pb2.ObjectDetails),
        )

    async def RemoveMachineSecret(
        self, request: mgmt.RemoveMachineSecretRequest, ctx: CallContext
    ) -> mgmt.RemoveMachineSecretResponse:
        details = await self._commands.remove_secret(ctx, request.user_id)
        return mgmt.RemoveMachineSecretResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def GetUserByID(
        self, request: mgmt.GetUserByIDRequest, ctx: CallContext
    ) -> mgmt.GetUserByIDResponse:
        view, profile = await self._queries.user_with_profile(ctx, request.id)
        return mgmt.GetUserByIDResponse(user=zitadel_user(view, profile))

    async def AddOrgMember(
        self, request: mgmt.AddOrgMemberRequest, ctx: CallContext
    ) -> mgmt.AddOrgMemberResponse:
        details = await self._commands.add_org_member(ctx, request.user_id, list(request.roles))
        return mgmt.AddOrgMemberResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def DeactivateUser(
        self, request: mgmt.DeactivateUserRequest, ctx: CallContext
    ) -> mgmt.DeactivateUserResponse:
        details = await self._commands.deactivate_user(ctx, request.id)
        return mgmt.DeactivateUserResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def ReactivateUser(
        self, request: mgmt.ReactivateUserRequest, ctx: CallContext
    ) -> mgmt.ReactivateUserResponse:
        details = await self._commands.reactivate_user(ctx, request.id)
        return mgmt.ReactivateUserResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def RemoveUser(self, request: mgmt.RemoveUserRequest, ctx: CallContext) -> mgmt.RemoveUserResponse:
        details = await self._commands.remove_user(ctx, request.id)
        return mgmt.RemoveUserResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def AddPersonalAccessToken(
        self, request: mgmt.AddPersonalAccessTokenRequest, ctx: CallContext
    ) -> mgmt.AddPersonalAccessTokenResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.add_personal_access_token(ctx, request.user_id, expires_at)
        return mgmt.AddPersonalAccessTokenResponse(
            token_id=issued.token_id,
            token=issued.token,
            details=details_proto(issued.details, object_pb2.ObjectDetails),
        )

    async def ListOrgMembers(
        self, request: mgmt.ListOrgMembersRequest, ctx: CallContext
    ) -> mgmt.ListOrgMembersResponse:
        user_ids = []
        for i, query in enumerate(request.queries):
            if query.WhichOneof("query") != "user_id_query":
                field = f"queries[{i}]"
                raise InvalidArgument([FieldViolation(field, "only user_id_query is supported")])
            user_ids.append(query.user_id_query.user_id)
        if len(set(user_ids)) > 1:  # ZITADEL ands its queries: two users match nobody
            return mgmt.ListOrgMembersResponse(details=object_pb2.ListDetails(total_result=0))
        members, total = await self._queries.members_at(
            ctx, user_ids[0] if user_ids else "", request.query.offset, request.query.limit
        )
        return mgmt.ListOrgMembersResponse(
            details=object_pb2.ListDetails(total_result=total),
            result=[
                member_pb2.Member(
                    user_id=m.user.id,
                    # The membership has no dates of its own here: only its organisation.
                    details=object_pb2.ObjectDetails(resource_owner=ctx.org_id),
                    roles=sorted(m.roles),
                    preferred_login_name=m.user.user_name,
                    email=m.profile.email,
                    display_name=m.profile.display_name or m.profile.name,
                )
                for m in members
            ],
        )

    async def AddMachineKey(
        self, request: mgmt.AddMachineKeyRequest, ctx: CallContext
    ) -> mgmt.AddMachineKeyResponse:
        if request.type not in (authn.KEY_TYPE_UNSPECIFIED, authn.KEY_TYPE_JSON):
            raise InvalidArgument([FieldViolation("type", "only KEY_TYPE_JSON is served")])
        expires_at = expiration_of(request)
        issued = await self._commands.add_machine_key(ctx, request.user_id, expires_at, request.public_key)
        return mgmt.AddMachineKeyResponse(
            key_id=issued.key_id,
            key_details=issued.key_file or b"",
            details=details_proto(issued.details, object_pb2.ObjectDetails),
        )

    async def ListMachineKeys(
        self, request: mgmt.ListMachineKeysRequest, ctx: CallContext
    ) -> mgmt.ListMachineKeysResponse:
        keys = await self._queries.machine_keys(ctx, request.user_id)
        if not request.query.asc:  # ZITADEL's default order: newest first
            keys.reverse()
        limit = request.query.limit or DEFAULT_KEY_PAGE
        page = keys[request.query.offset : request.query.offset + limit]
        return mgmt.ListMachineKeysResponse(
            details=object_pb2.ListDetails(total_result=len(keys)),
            result=[zitadel_key(k) for k in page],
        )

    async def GetMachineKeyByIDs(
        self, request: mgmt.GetMachineKeyByIDsRequest, ctx: CallContext
    ) -> mgmt.GetMachineKeyByIDsResponse:
        key = await self._queries.machine_key(ctx, request.user_id, request.key_id)
        return mgmt.GetMachineKeyByIDsResponse(key=zitadel_key(key))

    async def RemoveMachineKey(
        self, request: mgmt.RemoveMachineKeyRequest, ctx: CallContext
    ) -> mgmt.RemoveMachineKeyResponse:
        details = await self._commands.remove_machine_key(ctx, request.user_id, request.key_id)
        return mgmt.RemoveMachineKeyResponse(details=details_proto(details, object_pb2.ObjectDetails))

    async def SetUserMetadata(
        self, request: mgmt.SetUserMetadataRequest, ctx: CallContext
    ) -> mgmt.SetUserMetadataResponse:
        details = await self._commands.set_user_metadata(ctx, request.id, [(request.key, request.value)])
        return mgmt.SetUserMetadataResponse(id=request.id, details=v1_details(details))

    async def BulkSetUserMetadata(
        self, request: mgmt.BulkSetUserMetadataRequest, ctx: CallContext
    ) -> mgmt.BulkSetUserMetadataResponse:
        entries = [(m.key, m.value) for m in request.metadata]
        details = await self._commands.set_user_metadata(ctx, request.id, entries)
        return mgmt.BulkSetUserMetadataResponse(details=v1_details(details))

    async def ListUserMetadata(
        self, request: mgmt.ListUserMetadataRequest, ctx: CallContext
    ) -> mgmt.ListUserMetadataResponse:
        wanted = [q.key_query for q in request.queries if q.WhichOneof("query") == "key_query"]
        if len(request.queries) > 1 or len(wanted) != len(request.queries):
            raise InvalidArgument([FieldViolation("queries", "at most one keyQuery is served")])
        listed_metadata = await self._queries.user_metadata(ctx, request.id)
        found = [m for m in listed_metadata if all(text_matches(q.method, m.key, q.key) for q in wanted)]
        details, page = listed(found, request.query)
        return mgmt.ListUserMetadataResponse(details=details, result=[_metadata(m) for m in page])

    async def GetUserMetadata(
        self, request: mgmt.GetUserMetadataRequest, ctx: CallContext
    ) -> mgmt.GetUserMetadataResponse:
        found = await self._queries.user_metadata_of_key(ctx, request.id, request.key)
        return mgmt.GetUserMetadataResponse(metadata=_metadata(found))

    async def RemoveUserMetadata(
        self, request: mgmt.RemoveUserMetadataRequest, ctx: CallContext
    ) -> mgmt.RemoveUserMetadataResponse:
        details = await self._commands.remove_user_metadata(ctx, request.id, [request.key], field="key")
        return mgmt.RemoveUserMetadataResponse(details=v1_details(details))

    async def BulkRemoveUserMetadata(
        self, request: mgmt.BulkRemoveUserMetadataRequest, ctx: CallContext
    ) -> mgmt.BulkRemoveUserMetadataResponse:
        details = await self._commands.remove_user_metadata(ctx, request.id, list(request.keys))
        return mgmt.BulkRemoveUserMetadataResponse(details=v1_details(details))

    async def GetProjectByID(
        self, request: mgmt.GetProjectByIDRequest, ctx: CallContext
    ) -> mgmt.GetProjectByIDResponse:
        project = await self._queries.project(ctx, request.id)
        return mgmt.GetProjectByIDResponse(project=_project(project))

    async def ListProjects(
        self, request: mgmt.ListProjectsRequest, ctx: CallContext
    ) -> mgmt.ListProjectsResponse:
        details, page = listed(await self._queries.projects(ctx), request.query)
        return mgmt.ListProjectsResponse(details=details, result=[_project(p) for p in page])

    async def AddProject(self, request: mgmt.AddProjectRequest, ctx: CallContext) -> mgmt.AddProjectResponse:
        created = await self._commands.add_project(ctx, request.name)
        return mgmt.AddProjectResponse(id=created.id, details=v1_details(created.details))

    async def RemoveProject(
        self, request: mgmt.RemoveProjectRequest, ctx: CallContext
    ) -> mgmt.RemoveProjectResponse:
        details = await self._commands.remove_project(ctx, request.id)
        return mgmt.RemoveProjectResponse(details=v1_details(details))

    async def ListProjectRoles(
        self, request: mgmt.ListProjectRolesRequest, ctx: CallContext
    ) -> mgmt.ListProjectRolesResponse:
        roles = await self._queries.project_roles(ctx, request.project_id)
        details, page = listed(roles, request.query)
        return mgmt.ListProjectRolesResponse(
            details=details,
            result=[
                project_pb2.Role(
                    key=role.key,
                    details=v1_details(Details(role.sequence, role.created_at, role.created_at, ctx.org_id)),
                    display_name=role.display_name,
                    group=role.group,
                )
                for role in page
            ],
        )

    async def AddProjectRole(
        self, request: mgmt.AddProjectRoleRequest, ctx: CallContext
    ) -> mgmt.AddProjectRoleResponse:
        details = await self._commands.add_project_role(
            ctx, request.project_id, request.role_key, request.display_name, request.group
        )
        return mgmt.AddProjectRoleResponse(details=v1_details(details))

    async def RemoveProjectRole(
        self, request: mgmt.RemoveProjectRoleRequest, ctx: CallContext
    ) -> mgmt.RemoveProjectRoleResponse:
        details = await self._commands.remove_project_role(ctx, request.project_id, request.role_key)
        return mgmt.RemoveProjectRoleResponse(details=v1_details(details))

    async def ListApps(self, request: mgmt.ListAppsRequest, ctx: CallContext) -> mgmt.ListAppsResponse:
        details, page = listed(await self._queries.apps(ctx, request.project_id), request.query)
        return mgmt.ListAppsResponse(
            details=details,
            result=[
                app_pb2.App(
                    id=app.app_id,
                    details=v1_details(Details(app.sequence, app.created_at, app.changed_at, app.org_id)),
                    state=app_pb2.APP_STATE_ACTIVE,
                    name=app.name,
                    api_config=app_pb2.APIConfig(
                        client_id=app.client_id,
                        auth_method_type=AUTH_METHOD_VALUES[app.auth_method],
                    ),
                )
                for app in page
            ],
        )

    async def AddAPIApp(self, request: mgmt.AddAPIAppRequest, ctx: CallContext) -> mgmt.AddAPIAppResponse:
        method = AUTH_METHODS.get(request.auth_method_type, str(request.auth_method_type))
        issued = await self._commands.add_api_app(ctx, request.project_id, request.name, method)
        return mgmt.AddAPIAppResponse(
            app_id=issued.app_id,
            details=v1_details(issued.details),
            client_id=issued.client_id,
            client_secret=issued.client_secret,
        )

    async def RemoveApp(self, request: mgmt.RemoveAppRequest, ctx: CallContext) -> mgmt.RemoveAppResponse:
        details = await self._commands.remove_app(ctx, request.project_id, request.app_id)
        return mgmt.RemoveAppResponse(details=v1_details(details))

    async def UpdateAPIAppConfig(
        self, request: mgmt.UpdateAPIAppConfigRequest, ctx: CallContext
    ) -> mgmt.UpdateAPIAppConfigResponse:
        method = AUTH_METHODS.get(request.auth_method_type, str(request.auth_method_type))
        details = await self._commands.change_api_auth_method(ctx, request.project_id, request.app_id, method)
        return mgmt.UpdateAPIAppConfigResponse(details=v1_details(details))

    async def AddAppKey(self, request: mgmt.AddAppKeyRequest, ctx: CallContext) -> mgmt.AddAppKeyResponse:
        if request.type not in (authn.KEY_TYPE_UNSPECIFIED, authn.KEY_TYPE_JSON):
            raise InvalidArgument([FieldViolation("type", "only KEY_TYPE_JSON is served")])
        issued = await self._commands.add_app_key(
            ctx, request.project_id, request.app_id, expiration_of(request), b""
        )
        return mgmt.AddAppKeyResponse(
            id=issued.key_id, details=v1_details(issued.details), key_details=issued.key_file or b""
        )

    async def ListAppKeys(
        self, request: mgmt.ListAppKeysRequest, ctx: CallContext
    ) -> mgmt.ListAppKeysResponse:
        keys = await self._queries.app_keys(ctx, request.project_id, request.app_id)
        if not request.query.asc:  # ZITADEL's default order: newest first
            keys.reverse()
        details, page = listed(keys, request.query)
        return mgmt.ListAppKeysResponse(details=details, result=[zitadel_app_key(k) for k in page])

    async def GetAppKey(self, request: mgmt.GetAppKeyRequest, ctx: CallContext) -> mgmt.GetAppKeyResponse:
        key = await self._queries.app_key(ctx, request.project_id, request.app_id, request.key_id)
        return mgmt.GetAppKeyResponse(key=zitadel_app_key(key))

    async def RemoveAppKey(
        self, request: mgmt.RemoveAppKeyRequest, ctx: CallContext
    ) -> mgmt.RemoveAppKeyResponse:
        details = await self._commands.remove_app_key(ctx, request.project_id, request.app_id, request.key_id)
        return mgmt.RemoveAppKeyResponse(details=v1_details(details))

    async def RegenerateAPIClientSecret(
        self, request: mgmt.RegenerateAPIClientSecretRequest, ctx: CallContext
    ) -> mgmt.RegenerateAPIClientSecretResponse:
        issued = await self._commands.regenerate_api_client_secret(ctx, request.project_id, request.app_id)
        return mgmt.RegenerateAPIClientSecretResponse(
            client_secret=issued.client_secret, details=v1_details(issued.details)
        )

    async def ListUserGrants(
        self, request: mgmt.ListUserGrantRequest, ctx: CallContext
    ) -> mgmt.ListUserGrantResponse:
        details, page = listed(await self._queries.user_grants(ctx), request.query)
        return mgmt.ListUserGrantResponse(
            details=details,
            result=[
                user_pb2.UserGrant(
                    id=grant.grant_id,
                    details=v1_details(grant.details),
                    role_keys=grant.role_keys,
                    state=user_pb2.USER_GRANT_STATE_ACTIVE,
                    user_id=grant.user_id,
                    user_name=grant.user_name,
                    org_id=grant.org_id,
                    org_name=grant.org_name,
                    org_domain=grant.org_name,
                    project_id=grant.project_id,
                    project_name=grant.project_name,
                )
                for grant in page
            ],
        )

    async def AddUserGrant(
        self, request: mgmt.AddUserGrantRequest, ctx: CallContext
    ) -> mgmt.AddUserGrantResponse:
        if request.project_grant_id:
            raise InvalidArgument(
                [FieldViolation("project_grant_id", "project grants are not supported: leave it unset")]
            )
        created = await self._commands.add_user_grant(
            ctx, request.user_id, request.project_id, list(request.role_keys)
        )
        return mgmt.AddUserGrantResponse(user_grant_id=created.id, details=v1_details(created.details))

    async def RemoveUserGrant(
        self, request: mgmt.RemoveUserGrantRequest, ctx: CallContext
    ) -> mgmt.RemoveUserGrantResponse:
        details = await self._commands.remove_user_grant(ctx, request.user_id, request.grant_id)
        return mgmt.RemoveUserGrantResponse(details=v1_details(details))


def _project(project: ProjectRecord) -> project_pb2.Project:
    return project_pb2.Project(
        id=project.id,
        details=v1_details(Details(project.sequence, project.created_at, project.changed_at, project.org_id)),
        name=project.name,
        state=project_pb2.PROJECT_STATE_ACTIVE,
    )


def _metadata(view: MetadataView) -> metadata_pb2.Metadata:
    return metadata_pb2.Metadata(details=v1_details(view.details), key=view.key, value=view.value)
