"""Scenario building over the API itself: organisations, users and callers with roles."""

import itertools
from typing import Any

from google.protobuf import message
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import Api

_names = itertools.count(1)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


class World:
    def __init__(self, api: Api, admin_token: str, home_org: str) -> None:
        self.api = api
        self.admin_token = admin_token
        self.home_org = home_org

    @classmethod
    async def create(cls, api: Api, admin_token: str) -> "World":
        probe = cls(api, admin_token, "")
        created: Any = await probe.call(
            "AddMachineUser", user_pb.AddMachineUserRequest(user_name=unique_name("probe"), name="p")
        )
        return cls(api, admin_token, created.details.resource_owner)

    async def call(
        self, method: str, request: message.Message, *, token: str | None = None, org: str | None = None
    ) -> Any:
        """Calls as the admin unless another token is given; org sets x-zitadel-orgid."""
        metadata = [("authorization", f"Bearer {token or self.admin_token}")]
        if org is not None:
            metadata.append(("x-zitadel-orgid", org))
        return await self.api.call(method, request, metadata)

    async def org(self) -> str:
        created = await self.call("AddOrganization", org_pb.AddOrganizationRequest(name=unique_name("org")))
        return str(created.org_id)

    async def machine_user(self, org: str | None = None, user_name: str | None = None) -> str:
        request = user_pb.AddMachineUserRequest(user_name=user_name or unique_name("svc"), name="Service")
        created = await self.call("AddMachineUser", request, org=org)
        return str(created.user_id)

    async def human_user(self, org: str | None = None) -> str:
        name = unique_name("human")
        request = user_pb.AddHumanUserRequest(user_name=name, display_name="Jo", email=f"{name}@example.com")
        created = await self.call("AddHumanUser", request, org=org)
        return str(created.user_id)

    async def grant(self, user_id: str, roles: list[str], org: str | None = None) -> None:
        await self.call("AddOrgMember", org_pb.AddOrgMemberRequest(user_id=user_id, roles=roles), org=org)

    async def token_for(self, user_id: str, org: str | None = None) -> str:
        issued = await self.call(
            "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id), org=org
        )
        return str(issued.token)

    async def caller(
        self, roles: list[str], org: str | None = None, home: str | None = None
    ) -> tuple[str, str]:
        """A machine user of `home` holding `roles` in `org` (none: no membership), and its token."""
        user_id = await self.machine_user(org=home)
        if roles:
            await self.grant(user_id, roles, org=org)
        return user_id, await self.token_for(user_id, org=home)
