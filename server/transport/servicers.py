"""The handlers of the native API: proto and the checked CallContext in, a command or query,
proto out. Nothing else happens here: reading, authentication, the organisation context, the
permission, error mapping and the access log are the pipeline's work (pipeline.py). Each method
is named after its RPC; the pipeline finds it by that name."""

from typing import Any

from machinesecrets.v1 import (
    org_service_pb2,
    user_service_pb2,
)

from server.domain.commands import Commands
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.model import Details, IssuedSecret, UserProfile, UserView
from server.domain.permissions import CallContext
from server.domain.queries import Queries
from server.domain.secret_policy import SecretPolicy
from server.store.contract import USER_TYPE_HUMAN, USER_TYPE_MACHINE
from server.transport.conversions import (
    access_token_type_number,
    access_token_type_of,
    details_proto,
    duration,
    expiration_of,
    field_if_set,
    optional_duration,
    optional_timestamp,
    timestamp,
)

SECRET_STATES = {True: user_service_pb2.SECRET_STATE_ACTIVE, False: user_service_pb2.SECRET_STATE_EXPIRED}
KEY_STATES = {True: user_service_pb2.KEY_STATE_ACTIVE, False: user_service_pb2.KEY_STATE_EXPIRED}

# ListUsers' filter: the store's user type, "" for every type.
USER_TYPES = {
    user_service_pb2.USER_TYPE_UNSPECIFIED: "",
    user_service_pb2.USER_TYPE_MACHINE: USER_TYPE_MACHINE,
    user_service_pb2.USER_TYPE_HUMAN: USER_TYPE_HUMAN,
}


def user_proto(user: UserView, profile: UserProfile) -> user_service_pb2.User:
    return user_service_pb2.User(
        id=user.id,
        user_name=user.user_name,
        type=user_service_pb2.USER_TYPE_MACHINE if user.machine else user_service_pb2.USER_TYPE_HUMAN,
        state=user_service_pb2.USER_STATE_ACTIVE if user.active else user_service_pb2.USER_STATE_INACTIVE,
        has_secret=user.has_secret,
        details=details_proto(user.details),
        name=profile.name,
        description=profile.description,
        display_name=profile.display_name,
        email=profile.email,
        access_token_type=access_token_type_number(profile.access_token_type),  # type: ignore[arg-type]
    )


def issued_secret(issued: IssuedSecret) -> dict[str, Any]:
    """The fields of CreateSecret's and RotateSecret's answers (their names are shared)."""
    return {
        "secret_id": issued.secret_id,
        "client_id": issued.client_id,
        "client_secret": issued.client_secret,
        "expiration_date": optional_timestamp(issued.expiration_date),
        "details": details_proto(issued.details),
    }


class UserService:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def AddSecret(
        self, request: user_service_pb2.AddSecretRequest, ctx: CallContext
    ) -> user_service_pb2.AddSecretResponse:
        issued = await self._commands.add_secret(ctx, request.user_id)
        return user_service_pb2.AddSecretResponse(
            client_id=issued.client_id,
            client_secret=issued.client_secret,
            details=details_proto(issued.details),
        )

    async def RemoveSecret(
        self, request: user_service_pb2.RemoveSecretRequest, ctx: CallContext
    ) -> user_service_pb2.RemoveSecretResponse:
        details = await self._commands.remove_secret(ctx, request.user_id)
        return user_service_pb2.RemoveSecretResponse(details=details_proto(details))

    async def CreateSecret(
        self, request: user_service_pb2.CreateSecretRequest, ctx: CallContext
    ) -> user_service_pb2.CreateSecretResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.create_secret(ctx, request.user_id, expires_at, request.description)
        return user_service_pb2.CreateSecretResponse(**issued_secret(issued))

    async def RotateSecret(
        self, request: user_service_pb2.RotateSecretRequest, ctx: CallContext
    ) -> user_service_pb2.RotateSecretResponse:
        grace = duration(field_if_set(request, "grace_period"), "grace_period")
        expires_at = expiration_of(request)
        issued = await self._commands.rotate_secret(
            ctx, request.user_id, grace, expires_at, request.description
        )
        return user_service_pb2.RotateSecretResponse(**issued_secret(issued))

    async def ListSecrets(
        self, request: user_service_pb2.ListSecretsRequest, ctx: CallContext
    ) -> user_service_pb2.ListSecretsResponse:
        secrets = await self._queries.secrets(ctx, request.user_id)
        return user_service_pb2.ListSecretsResponse(
            secrets=[
                user_service_pb2.Secret(
                    secret_id=s.secret_id,
                    hint=s.hint,
                    description=s.description,
                    creation_date=timestamp(s.creation_date),
                    expiration_date=optional_timestamp(s.expiration_date),
                    last_used=optional_timestamp(s.last_used),
                    state=SECRET_STATES[s.active],
                )
                for s in secrets
            ]
        )

    async def DeleteSecret(
        self, request: user_service_pb2.DeleteSecretRequest, ctx: CallContext
    ) -> user_service_pb2.DeleteSecretResponse:
        details = await self._commands.delete_secret(ctx, request.user_id, request.secret_id)
        return user_service_pb2.DeleteSecretResponse(details=details_proto(details))

    async def AddMachineUser(
        self, request: user_service_pb2.AddMachineUserRequest, ctx: CallContext
    ) -> user_service_pb2.AddMachineUserResponse:
        created = await self._commands.add_machine_user(
            ctx,
            request.user_name,
            request.name,
            request.description,
            access_token_type_of(request.access_token_type),
        )
        return user_service_pb2.AddMachineUserResponse(
            user_id=created.id, details=details_proto(created.details)
        )

    async def UpdateMachineUser(
        self, request: user_service_pb2.UpdateMachineUserRequest, ctx: CallContext
    ) -> user_service_pb2.UpdateMachineUserResponse:
        details = await self._commands.update_machine(
            ctx,
            request.user_id,
            request.name if request.HasField("name") else None,
            request.description if request.HasField("description") else None,
            access_token_type_of(request.access_token_type)
            if request.HasField("access_token_type")
            else None,
        )
        return user_service_pb2.UpdateMachineUserResponse(details=details_proto(details))

    async def AddHumanUser(
        self, request: user_service_pb2.AddHumanUserRequest, ctx: CallContext
    ) -> user_service_pb2.AddHumanUserResponse:
        created = await self._commands.add_human_user(
            ctx, request.user_name, request.display_name, request.email
        )
        return user_service_pb2.AddHumanUserResponse(
            user_id=created.id, details=details_proto(created.details)
        )

    async def GetUserByID(
        self, request: user_service_pb2.GetUserByIDRequest, ctx: CallContext
    ) -> user_service_pb2.GetUserByIDResponse:
        user, profile = await self._queries.user_with_profile(ctx, request.user_id)
        return user_service_pb2.GetUserByIDResponse(user=user_proto(user, profile))

    async def ListUsers(
        self, request: user_service_pb2.ListUsersRequest, ctx: CallContext
    ) -> user_service_pb2.ListUsersResponse:
        user_type = USER_TYPES.get(request.type)
        if user_type is None:
            raise InvalidArgument([FieldViolation("type", "must be a type of user, or unspecified")])
        users, next_token = await self._queries.users(
            ctx, request.user_name_prefix, user_type, request.page_size, request.page_token, request.contains
        )
        return user_service_pb2.ListUsersResponse(
            users=[user_proto(user, profile) for user, profile in users], next_page_token=next_token
        )

    async def GetMe(
        self, request: user_service_pb2.GetMeRequest, ctx: CallContext
    ) -> user_service_pb2.GetMeResponse:
        me = await self._queries.me(ctx)
        return user_service_pb2.GetMeResponse(
            user=user_proto(me.user, me.profile),
            org_id=me.user.details.resource_owner,
            memberships=[
                user_service_pb2.Membership(
                    org_id=org_id, roles=sorted(roles), permissions=sorted(permissions)
                )
                for org_id, (roles, permissions) in sorted(me.memberships.items())
            ],
            instance_permissions=sorted(me.instance_permissions),
        )

    async def AddPersonalAccessToken(
        self, request: user_service_pb2.AddPersonalAccessTokenRequest, ctx: CallContext
    ) -> user_service_pb2.AddPersonalAccessTokenResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.add_personal_access_token(ctx, request.user_id, expires_at)
        return user_service_pb2.AddPersonalAccessTokenResponse(
            token_id=issued.token_id, token=issued.token, details=details_proto(issued.details)
        )

    async def ListPersonalAccessTokens(
        self, request: user_service_pb2.ListPersonalAccessTokensRequest, ctx: CallContext
    ) -> user_service_pb2.ListPersonalAccessTokensResponse:
        tokens = await self._queries.personal_access_tokens(ctx, request.user_id)
        return user_service_pb2.ListPersonalAccessTokensResponse(
            tokens=[
                user_service_pb2.PersonalAccessToken(
                    token_id=t.token_id,
                    creation_date=optional_timestamp(t.creation_date),
                    expiration_date=optional_timestamp(t.expiration_date),
                    last_used=optional_timestamp(t.last_used),
                )
                for t in tokens
            ]
        )

    async def RemovePersonalAccessToken(
        self, request: user_service_pb2.RemovePersonalAccessTokenRequest, ctx: CallContext
    ) -> user_service_pb2.RemovePersonalAccessTokenResponse:
        details = await self._commands.remove_personal_access_token(ctx, request.user_id, request.token_id)
        return user_service_pb2.RemovePersonalAccessTokenResponse(details=details_proto(details))

    async def AddKey(
        self, request: user_service_pb2.AddKeyRequest, ctx: CallContext
    ) -> user_service_pb2.AddKeyResponse:
        expires_at = expiration_of(request)
        issued = await self._commands.add_machine_key(ctx, request.user_id, expires_at, request.public_key)
        return user_service_pb2.AddKeyResponse(
            key_id=issued.key_id,
            key_content=issued.key_file or b"",
            expiration_date=optional_timestamp(issued.expiration_date),
            details=details_proto(issued.details),
        )

    async def ListKeys(
        self, request: user_service_pb2.ListKeysRequest, ctx: CallContext
    ) -> user_service_pb2.ListKeysResponse:
        keys = await self._queries.machine_keys(ctx, request.user_id)
        return user_service_pb2.ListKeysResponse(
            keys=[
                user_service_pb2.MachineKey(
                    key_id=k.key_id,
                    key_type=k.key_type,
                    creation_date=timestamp(k.creation_date),
                    expiration_date=optional_timestamp(k.expiration_date),
                    last_used=optional_timestamp(k.last_used),
                    state=KEY_STATES[k.active],
                )
                for k in keys
            ]
        )

    async def RemoveKey(
        self, request: user_service_pb2.RemoveKeyRequest, ctx: CallContext
    ) -> user_service_pb2.RemoveKeyResponse:
        details = await self._commands.remove_machine_key(ctx, request.user_id, request.key_id)
        return user_service_pb2.RemoveKeyResponse(details=details_proto(details))

    async def AddFederatedCredential(
        self, request: user_service_pb2.AddFederatedCredentialRequest, ctx: CallContext
    ) -> user_service_pb2.AddFederatedCredentialResponse:
        added = await self._commands.add_federated_credential(
            ctx,
            request.user_id,
            request.issuer,
            request.subject,
            request.audience,
            request.description,
            (request.claim_name, request.claim_value),
        )
        return user_service_pb2.AddFederatedCredentialResponse(
            credential_id=added.id, details=details_proto(added.details)
        )

    async def ListFederatedCredentials(
        self, request: user_service_pb2.ListFederatedCredentialsRequest, ctx: CallContext
    ) -> user_service_pb2.ListFederatedCredentialsResponse:
        credentials = await self._queries.federated_credentials(ctx, request.user_id)
        return user_service_pb2.ListFederatedCredentialsResponse(
            credentials=[
                user_service_pb2.FederatedCredential(
                    credential_id=c.credential_id,
                    issuer=c.issuer,
                    subject=c.subject,
                    audience=c.audience,
                    description=c.description,
                    claim_name=c.claim_name,
                    claim_value=c.claim_value,
                    creation_date=timestamp(c.created_at),
                    last_used=optional_timestamp(c.last_used_at),
                )
                for c in credentials
            ]
        )

    async def RemoveFederatedCredential(
        self, request: user_service_pb2.RemoveFederatedCredentialRequest, ctx: CallContext
    ) -> user_service_pb2.RemoveFederatedCredentialResponse:
        details = await self._commands.remove_federated_credential(
            ctx, request.user_id, request.credential_id
        )
        return user_service_pb2.RemoveFederatedCredentialResponse(details=details_proto(details))

    async def SetUserMetadata(
        self, request: user_service_pb2.SetUserMetadataRequest, ctx: CallContext
    ) -> user_service_pb2.SetUserMetadataResponse:
        entries = [(m.key, m.value) for m in request.metadata]
        details = await self._commands.set_user_metadata(ctx, request.user_id, entries)
        return user_service_pb2.SetUserMetadataResponse(details=details_proto(details))

    async def ListUserMetadata(
        self, request: user_service_pb2.ListUserMetadataRequest, ctx: CallContext
    ) -> user_service_pb2.ListUserMetadataResponse:
        listed = await self._queries.user_metadata(ctx, request.user_id)
        return user_service_pb2.ListUserMetadataResponse(
            metadata=[
                user_service_pb2.UserMetadata(
                    key=m.key,
                    value=m.value,
                    creation_date=timestamp(m.details.creation_date),
                    change_date=timestamp(m.details.change_date),
                )
                for m in listed
            ]
        )

    async def RemoveUserMetadata(
        self, request: user_service_pb2.RemoveUserMetadataRequest, ctx: CallContext
    ) -> user_service_pb2.RemoveUserMetadataResponse:
        details = await self._commands.remove_user_metadata(ctx, request.user_id, list(request.keys))
        return user_service_pb2.RemoveUserMetadataResponse(details=details_proto(details))

    async def DeactivateUser(
        self, request: user_service_pb2.DeactivateUserRequest, ctx: CallContext
    ) -> user_service_pb2.DeactivateUserResponse:
        details = await self._commands.deactivate_user(ctx, request.user_id)
        return user_service_pb2.DeactivateUserResponse(details=details_proto(details))

    async def ReactivateUser(
        self, request: user_service_pb2.ReactivateUserRequest, ctx: CallContext
    ) -> user_service_pb2.ReactivateUserResponse:
        details = await self._commands.reactivate_user(ctx, request.user_id)
        return user_service_pb2.ReactivateUserResponse(details=details_proto(details))

    async def RemoveUser(
        self, request: user_service_pb2.RemoveUserRequest, ctx: CallContext
    ) -> user_service_pb2.RemoveUserResponse:
        details = await self._commands.remove_user(ctx, request.user_id)
        return user_service_pb2.RemoveUserResponse(details=details_proto(details))


class OrgService:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def AddOrganization(
        self, request: org_service_pb2.AddOrganizationRequest, ctx: CallContext
    ) -> org_service_pb2.AddOrganizationResponse:
        created = await self._commands.add_organization(ctx, request.name)
        return org_service_pb2.AddOrganizationResponse(
            org_id=created.id, details=details_proto(created.details)
        )

    async def ListOrganizations(
        self, request: org_service_pb2.ListOrganizationsRequest, ctx: CallContext
    ) -> org_service_pb2.ListOrganizationsResponse:
        orgs, next_token = await self._queries.organizations(ctx, request.page_size, request.page_token)
        return org_service_pb2.ListOrganizationsResponse(
            organizations=[
                org_service_pb2.Organization(
                    org_id=org.id,
                    name=org.name,
                    roles=sorted(roles),
                    details=details_proto(Details(org.sequence, org.created_at, org.changed_at, org.id)),
                )
                for org, roles in orgs
            ],
            next_page_token=next_token,
        )

    async def AddOrgMember(
        self, request: org_service_pb2.AddOrgMemberRequest, ctx: CallContext
    ) -> org_service_pb2.AddOrgMemberResponse:
        details = await self._commands.add_org_member(ctx, request.user_id, list(request.roles))
        return org_service_pb2.AddOrgMemberResponse(details=details_proto(details))

    async def ListOrgMembers(
        self, request: org_service_pb2.ListOrgMembersRequest, ctx: CallContext
    ) -> org_service_pb2.ListOrgMembersResponse:
        members, next_token = await self._queries.members(
            ctx, request.user_id, request.page_size, request.page_token
        )
        return org_service_pb2.ListOrgMembersResponse(
            members=[
                org_service_pb2.Member(
                    user_id=m.user.id,
                    user_name=m.user.user_name,
                    user_org_id=m.user.details.resource_owner,
                    roles=sorted(m.roles),
                    display_name=m.profile.display_name or m.profile.name,
                )
                for m in members
            ],
            next_page_token=next_token,
        )

    async def RemoveOrgMember(
        self, request: org_service_pb2.RemoveOrgMemberRequest, ctx: CallContext
    ) -> org_service_pb2.RemoveOrgMemberResponse:
        details = await self._commands.remove_org_member(ctx, request.user_id)
        return org_service_pb2.RemoveOrgMemberResponse(details=details_proto(details))

    async def GetSecretPolicy(
        self, request: org_service_pb2.GetSecretPolicyRequest, ctx: CallContext
    ) -> org_service_pb2.GetSecretPolicyResponse:
        policy = await self._queries.secret_policy(ctx)
        return org_service_pb2.GetSecretPolicyResponse(
            policy=org_service_pb2.SecretPolicy(
                max_lifetime=optional_duration(policy.max_lifetime),
                default_lifetime=optional_duration(policy.default_lifetime),
                max_secrets_per_user=policy.max_secrets_per_user,
                max_grace_period=optional_duration(policy.max_grace_period),
                max_key_lifetime=optional_duration(policy.max_key_lifetime),
                max_keys_per_user=policy.max_keys_per_user,
            )
        )

    async def SetSecretPolicy(
        self, request: org_service_pb2.SetSecretPolicyRequest, ctx: CallContext
    ) -> org_service_pb2.SetSecretPolicyResponse:
        p = request.policy
        policy = SecretPolicy(
            max_lifetime=duration(field_if_set(p, "max_lifetime"), "policy.max_lifetime"),
            default_lifetime=duration(field_if_set(p, "default_lifetime"), "policy.default_lifetime"),
            max_secrets_per_user=field_if_set(p, "max_secrets_per_user"),
            max_grace_period=duration(field_if_set(p, "max_grace_period"), "policy.max_grace_period"),
            max_key_lifetime=duration(field_if_set(p, "max_key_lifetime"), "policy.max_key_lifetime"),
            max_keys_per_user=field_if_set(p, "max_keys_per_user"),
        )
        details = await self._commands.set_secret_policy(ctx, policy)
        return org_service_pb2.SetSecretPolicyResponse(details=details_proto(details))

    async def AddTrustedIssuer(
        self, request: org_service_pb2.AddTrustedIssuerRequest, ctx: CallContext
    ) -> org_service_pb2.AddTrustedIssuerResponse:
        added = await self._commands.add_trusted_issuer(
            ctx, request.issuer, request.jwks_uri, request.jwks, request.description
        )
        return org_service_pb2.AddTrustedIssuerResponse(
            issuer_id=added.id, details=details_proto(added.details)
        )

    async def ListTrustedIssuers(
        self, request: org_service_pb2.ListTrustedIssuersRequest, ctx: CallContext
    ) -> org_service_pb2.ListTrustedIssuersResponse:
        issuers = await self._queries.trusted_issuers(ctx)
        return org_service_pb2.ListTrustedIssuersResponse(
            issuers=[
                org_service_pb2.TrustedIssuer(
                    issuer_id=i.issuer_id,
                    issuer=i.issuer,
                    jwks_uri=i.jwks_uri,
                    inline_jwks=bool(i.jwks),
                    description=i.description,
                    creation_date=timestamp(i.created_at),
                )
                for i in issuers
            ]
        )

    async def RemoveTrustedIssuer(
        self, request: org_service_pb2.RemoveTrustedIssuerRequest, ctx: CallContext
    ) -> org_service_pb2.RemoveTrustedIssuerResponse:
        details = await self._commands.remove_trusted_issuer(ctx, request.issuer_id)
        return org_service_pb2.RemoveTrustedIssuerResponse(details=details_proto(details))
