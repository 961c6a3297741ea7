"""ZITADEL's v2 APIs, the subset of the machine-user secret lifecycle: zitadel.user.v2.UserService,
zitadel.org.v2.OrganizationService and zitadel.internal_permission.v2.InternalPermissionService.

As in ZITADEL, each method acts in the organisation of the object it addresses, which the
pipeline finds from the request field its .proto names (the user's organisation, or the request's
organisation id). Otherwise each is a thin mapping onto the same commands and queries as the
native API, with the same permissions and errors.
"""

from zitadel.filter.v2 import filter_pb2
from zitadel.internal_permission.v2 import internal_permission_service_pb2 as perm_v2
from zitadel.metadata.v2 import metadata_pb2 as metadata_v2
from zitadel.object.v2 import object_pb2
from zitadel.org.v2 import org_service_pb2 as org_v2
from zitadel.user.v2 import key_pb2, user_pb2
from zitadel.user.v2 import user_service_pb2 as user_v2

from server.domain.commands import Commands
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.model import Details, UserProfile, UserView
from server.domain.permissions import ORG_OWNER, CallContext
from server.domain.queries import Queries
from server.transport.conversions import (
    access_token_type_of,
    expiration_of,
    fill_zitadel_machine,
    text_matches,
    timestamp,
    zitadel_key_expiration,
    zitadel_login_names,
)


def details_v2(details: Details) -> object_pb2.Details:
    return object_pb2.Details(
        sequence=details.sequence,
        change_date=timestamp(details.change_date),
        resource_owner=details.resource_owner,
        creation_date=timestamp(details.creation_date),
    )


def user_v2_of(view: UserView, profile: UserProfile) -> user_pb2.User:
    state = user_pb2.USER_STATE_ACTIVE if view.active else user_pb2.USER_STATE_INACTIVE
    user = user_pb2.User(
        user_id=view.id,
        details=details_v2(view.details),
        state=state,
        username=view.user_name,
        **zitadel_login_names(view.user_name),
    )
    if view.machine:
        fill_zitadel_machine(user.machine, view, profile)
    else:
        user.human.CopyFrom(
            user_pb2.HumanUser(
                user_id=view.id,
                state=state,
                username=view.user_name,
                **zitadel_login_names(view.user_name),
                profile=user_pb2.HumanProfile(display_name=profile.display_name),
                email=user_pb2.HumanEmail(email=profile.email),
            )
        )
    return user


def not_chosen_by_clients(field: str) -> FieldViolation:
    return FieldViolation(field, "the service chooses ids: leave it unset")


class UserServiceV2:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def CreateUser(
        self, request: user_v2.CreateUserRequest, ctx: CallContext
    ) -> user_v2.CreateUserResponse:
        violations = []
        if request.HasField("user_id"):
            violations.append(not_chosen_by_clients("user_id"))
        if request.WhichOneof("user_type") != "machine":
            violations.append(
                FieldViolation("machine", "only machine users are served; humans: AddHumanUser")
            )
        if violations:
            raise InvalidArgument(violations)
        machine = request.machine
        created = await self._commands.add_machine_user(
            ctx,
            request.username if request.HasField("username") else None,
            machine.name,
            machine.description,
            access_token_type_of(machine.access_token_type),
        )
        return user_v2.CreateUserResponse(
            id=created.id, creation_date=timestamp(created.details.creation_date)
        )

    async def GetUserByID(
        self, request: user_v2.GetUserByIDRequest, ctx: CallContext
    ) -> user_v2.GetUserByIDResponse:
        view, profile = await self._queries.user_with_profile(ctx, request.user_id)
        return user_v2.GetUserByIDResponse(details=details_v2(view.details), user=user_v2_of(view, profile))

    async def AddSecret(
        self, request: user_v2.AddSecretRequest, ctx: CallContext
    ) -> user_v2.AddSecretResponse:
        issued = await self._commands.add_secret(ctx, request.user_id)
        return user_v2.AddSecretResponse(
            creation_date=timestamp(issued.details.change_date), client_secret=issued.client_secret
        )

    async def RemoveSecret(
        self, request: user_v2.RemoveSecretRequest, ctx: CallContext
    ) -> user_v2.RemoveSecretResponse:
        details = await self._commands.remove_secret(ctx, request.user_id)
        return user_v2.RemoveSecretResponse(deletion_date=timestamp(details.change_date))

    async def DeactivateUser(
        self, request: user_v2.DeactivateUserRequest, ctx: CallContext
    ) -> user_v2.DeactivateUserResponse:
        details = await self._commands.deactivate_user(ctx, request.user_id)
        return user_v2.DeactivateUserResponse(details=details_v2(details))

    async def ReactivateUser(
        self, request: user_v2.ReactivateUserRequest, ctx: CallContext
    ) -> user_v2.ReactivateUserResponse:
        details = await self._commands.reactivate_user(ctx, request.user_id)
        return user_v2.ReactivateUserResponse(details=details_v2(details))

    async def DeleteUser(
        self, request: user_v2.DeleteUserRequest, ctx: CallContext
    ) -> user_v2.DeleteUserResponse:
        details = await self._commands.remove_user(ctx, request.user_id)
        return user_v2.DeleteUserResponse(details=details_v2(details))

    async def AddPersonalAccessToken(
        self, request: user_v2.AddPersonalAccessTokenRequest, ctx: CallContext
    ) -> user_v2.AddPersonalAccessTokenResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.add_personal_access_token(ctx, request.user_id, expires_at)
        return user_v2.AddPersonalAccessTokenResponse(
            creation_date=timestamp(issued.details.change_date), token_id=issued.token_id, token=issued.token
        )

    async def AddKey(self, request: user_v2.AddKeyRequest, ctx: CallContext) -> user_v2.AddKeyResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.add_machine_key(ctx, request.user_id, expires_at, request.public_key)
        return user_v2.AddKeyResponse(
            creation_date=timestamp(issued.details.change_date),
            key_id=issued.key_id,
            key_content=issued.key_file or b"",
        )

    async def ListKeys(self, request: user_v2.ListKeysRequest, ctx: CallContext) -> user_v2.ListKeysResponse:
        """The keys of the one user its user_id_filter names, in any organisation where the caller
        may read users (as ZITADEL searches the instance); a key_id_filter narrows them to one.
        Other filters are not served."""
        user_ids, key_ids, violations = [], [], []
        for i, found in enumerate(request.filters):
            kind = found.WhichOneof("filter")
            if kind == "user_id_filter":
                user_ids.append(found.user_id_filter.id)
            elif kind == "key_id_filter":
                key_ids.append(found.key_id_filter.id)
            else:
                violations.append(
                    FieldViolation(f"filters[{i}]", "only userIdFilter and keyIdFilter are served")
                )
        if len(user_ids) != 1:
            violations.append(FieldViolation("filters", "exactly one userIdFilter is required"))
        if violations:
            raise InvalidArgument(violations)
        keys = await self._queries.readable_machine_keys(ctx, user_ids[0])
        keys = [k for k in keys if all(k.key_id == key_id for key_id in key_ids)]
        if request.HasField("pagination") and not request.pagination.asc:
            keys.reverse()
        offset = request.pagination.offset
        limit = request.pagination.limit or len(keys)
        page = keys[offset : offset + limit]
        return user_v2.ListKeysResponse(
            pagination=filter_pb2.PaginationResponse(total_result=len(keys), applied_limit=limit),
            result=[
                key_pb2.Key(
                    creation_date=timestamp(k.creation_date),
                    change_date=timestamp(k.creation_date),
                    id=k.key_id,
                    user_id=k.user_id,
                    organization_id=k.org_id,
                    expiration_date=zitadel_key_expiration(k.expiration_date),
                )
                for k in page
            ],
        )

    async def RemoveKey(
        self, request: user_v2.RemoveKeyRequest, ctx: CallContext
    ) -> user_v2.RemoveKeyResponse:
        details = await self._commands.remove_machine_key(ctx, request.user_id, request.key_id)
        return user_v2.RemoveKeyResponse(deletion_date=timestamp(details.change_date))

    async def SetUserMetadata(
        self, request: user_v2.SetUserMetadataRequest, ctx: CallContext
    ) -> user_v2.SetUserMetadataResponse:
        entries = [(m.key, m.value) for m in request.metadata]
        details = await self._commands.set_user_metadata(ctx, request.user_id, entries)
        return user_v2.SetUserMetadataResponse(set_date=timestamp(details.change_date))

    async def ListUserMetadata(
        self, request: user_v2.ListUserMetadataRequest, ctx: CallContext
    ) -> user_v2.ListUserMetadataResponse:
        wanted = [f.key_filter for f in request.filters if f.WhichOneof("filter") == "key_filter"]
        if len(request.filters) > 1 or len(wanted) != len(request.filters):
            raise InvalidArgument([FieldViolation("filters", "at most one keyFilter is served")])
        found = [
            m
            for m in await self._queries.user_metadata(ctx, request.user_id)
            if all(text_matches(f.method, m.key, f.key) for f in wanted)
        ]
        if request.HasField("pagination") and not request.pagination.asc:
            found.reverse()
        offset = request.pagination.offset
        limit = request.pagination.limit or len(found)
        page = found[offset : offset + limit]
        return user_v2.ListUserMetadataResponse(
            pagination=filter_pb2.PaginationResponse(total_result=len(found), applied_limit=limit),
            metadata=[
                metadata_v2.Metadata(
                    creation_date=timestamp(m.details.creation_date),
                    change_date=timestamp(m.details.change_date),
                    key=m.key,
                    value=m.value,
                )
                for m in page
            ],
        )

    async def DeleteUserMetadata(
        self, request: user_v2.DeleteUserMetadataRequest, ctx: CallContext
    ) -> user_v2.DeleteUserMetadataResponse:
        details = await self._commands.remove_user_metadata(ctx, request.user_id, list(request.keys))
        return user_v2.DeleteUserMetadataResponse(deletion_date=timestamp(details.change_date))


class OrganizationServiceV2:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    async def AddOrganization(
        self, request: org_v2.AddOrganizationRequest, ctx: CallContext
    ) -> org_v2.AddOrganizationResponse:
        violations = [not_chosen_by_clients("org_id")] if request.HasField("org_id") else []
        violations += [
            FieldViolation(f"admins[{i}].human", "not served: name an existing user by user_id")
            for i, admin in enumerate(request.admins)
            if admin.HasField("human")
        ]
        if violations:
            raise InvalidArgument(violations)
        # ZITADEL's default for an admin named without roles.
        admins = [(admin.user_id, list(admin.roles) or [ORG_OWNER]) for admin in request.admins]
        created = await self._commands.add_organization(ctx, request.name, admins)
        return org_v2.AddOrganizationResponse(
            details=details_v2(created.details),
            organization_id=created.id,
            created_admins=[
                org_v2.AddOrganizationResponse.CreatedAdmin(user_id=user_id) for user_id, _ in admins
            ],
        )


class InternalPermissionService:
    def __init__(self, commands: Commands) -> None:
        self._commands = commands

    async def CreateAdministrator(
        self, request: perm_v2.CreateAdministratorRequest, ctx: CallContext
    ) -> perm_v2.CreateAdministratorResponse:
        if request.resource.WhichOneof("resource") != "organization_id":
            raise InvalidArgument([FieldViolation("resource", "only organization_id is served")])
        details = await self._commands.add_org_member(ctx, request.user_id, list(request.roles))
        return perm_v2.CreateAdministratorResponse(creation_date=timestamp(details.change_date))
