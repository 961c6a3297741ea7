"""The authorisation rules, as properties over sequences of calls, against a server in its own
process, over native gRPC and over JSON through Envoy.

Each example builds a fresh scene through the API (two organisations, holders with random roles
in them, a human and a machine user), then lets hypothesis pick calls one at a time: any holder,
with any token it holds, calling any method of the API, in any organisation (its own, another,
one that does not exist), on any user. Two properties hold at every step:

- The answer, code and reason, is the one `tests/authz_model.py` gives. That model is written from
  the README's tables, not from `server/`.
- No escalation, checked on what the server actually did, independent of the model: whenever a
  call hands a holder a credential (a PAT, or a secret it then exchanges for an access token) or
  grants a role, the power handed out is within the power the holder already reached through the
  credentials it held. Credentials obtained this way join the holder's tokens, so chains (take
  a token, use it to take another) are searched too.
"""

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.user.v2 import user_service_pb2 as user_v2

from tests.api import Api, ApiError, GrpcApi, JsonApi
from tests.authz_model import (
    CREDENTIAL_METHODS,
    NEEDS,
    NEW_SECRET_METHODS,
    ROLES,
    USER_METHODS,
    Model,
    Token,
    User,
    covers,
    native,
)
from tests.processes import ServerProcess, start_with_envoy

UNKNOWN_ORG = "123456789012345"
UNKNOWN_USER = "987654321098765"
EXAMPLES = 150
MAX_STEPS = 10
_names = itertools.count()


@dataclass
class Holder:
    """Someone calling the API: it starts with the token of its own machine user."""

    tokens: list[Token]
    reach: frozenset[tuple[str, str]] = field(default_factory=frozenset)


@dataclass
class Served:
    process: ServerProcess
    admin: str


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    process, admin = await start_with_envoy(tmp_path_factory.mktemp("authz"))
    yield Served(process, admin)
    await process.stop()


class Scene:
    """One example's world: the model, the holders, and the clients that reach the server."""

    def __init__(self, api: Api, http: httpx.AsyncClient, admin: str) -> None:
        self.api, self.http, self.admin = api, http, admin
        self.model = Model(set(), {})
        self.holders: list[Holder] = []
        self.names: dict[str, str] = {}  # user id: user name (the client id)

    async def call(self, token: str, method: str, request: Message, org: str | None = None) -> Message:
        metadata = [("authorization", f"Bearer {token}")] + ([("x-zitadel-orgid", org)] if org else [])
        return await self.api.call(method, request, metadata)

    async def set_up(self, grants: list[tuple[int, dict[int, list[str]]]]) -> None:
        """Two organisations; per holder, a machine user of organisation `home` with `roles` by
        organisation index, granted by the admin; a human and a machine user in each."""
        for _ in range(2):
            created: org_pb.AddOrganizationResponse = await self.call(  # type: ignore[assignment]
                self.admin, "AddOrganization", org_pb.AddOrganizationRequest(name=f"authz-{next(_names)}")
            )
            self.model.orgs.add(created.org_id)
        orgs = sorted(self.model.orgs)
        for org in orgs:
            await self.add_user(self.admin, "AddHumanUser", org)
            await self.add_user(self.admin, "AddMachineUser", org)
        for home, roles in grants:
            user = await self.add_user(self.admin, "AddMachineUser", orgs[home])
            for where, granted in roles.items():
                request = org_pb.AddOrgMemberRequest(user_id=user.id, roles=granted)
                await self.call(self.admin, "AddOrgMember", request, org=orgs[where])
                user.roles[orgs[where]] = frozenset(granted)
            pat: user_pb.AddPersonalAccessTokenResponse = await self.call(  # type: ignore[assignment]
                self.admin,
                "AddPersonalAccessToken",
                user_pb.AddPersonalAccessTokenRequest(user_id=user.id),
                org=orgs[home],
            )
            self.holders.append(Holder([Token(pat.token, user.id, None)], user.power()))

    async def add_user(self, token: str, method: str, org: str | None) -> User:
        name = f"authz-{next(_names)}"
        request: Message
        if method == "AddHumanUser":
            request = user_pb.AddHumanUserRequest(
                user_name=name, display_name="h", email=f"{name}@example.com"
            )
        else:
            request = user_pb.AddMachineUserRequest(user_name=name, name="m")
        created: user_pb.AddMachineUserResponse = await self.call(token, method, request, org)  # type: ignore[assignment]
        user = User(created.user_id, created.details.resource_owner, method == "AddMachineUser")
        self.model.users[user.id] = user
        self.names[user.id] = name
        return user

    async def step(
        self, holder: Holder, token: Token, method: str, header: str | None, target: str, roles: list[str]
    ) -> None:
        expected = self.model.expect(token, method, header, target, roles)
        try:
            answer = await self.act(holder, token, method, header, target, roles)
        except ApiError as error:
            answer = (error.code.name, error.reason)
        assert answer == expected, (method, header, target, roles)

    async def act(
        self, holder: Holder, token: Token, method: str, header: str | None, target: str, roles: list[str]
    ) -> tuple[str, str]:
        """Makes the call; on success, applies it to the model and checks for escalation."""
        if method in ("AddMachineUser", "AddHumanUser"):
            await self.add_user(token.value, method, header)
            return ("OK", "")
        if method == "AddOrganization":
            request = org_pb.AddOrganizationRequest(name=f"authz-{next(_names)}")
            created: org_pb.AddOrganizationResponse = await self.call(token.value, method, request, header)  # type: ignore[assignment]
            self.model.orgs.add(created.org_id)
            return ("OK", "")
        if method == "AddOrgMember":
            request_m = org_pb.AddOrgMemberRequest(user_id=target, roles=roles)
            added: org_pb.AddOrgMemberResponse = await self.call(token.value, method, request_m, header)  # type: ignore[assignment]
            org = added.details.resource_owner
            granted = User("", org, True, {org: frozenset(roles)})
            assert covers(holder.reach, granted.power()), (
                f"granted {roles} in {org} beyond the caller's reach"
            )
            self.model.users[target].roles[org] = frozenset(roles)
            self.reach_again()
            return ("OK", "")
        if method == "RemoveOrgMember":
            removed: org_pb.RemoveOrgMemberResponse = await self.call(  # type: ignore[assignment]
                token.value, method, org_pb.RemoveOrgMemberRequest(user_id=target), header
            )
            org = removed.details.resource_owner
            taken = User("", org, True, {org: self.model.users[target].roles.pop(org)})
            assert covers(holder.reach, taken.power()), f"took roles in {org} beyond the caller's reach"
            return ("OK", "")
        requests: dict[str, type[Message]] = {
            "DeactivateUser": user_pb.DeactivateUserRequest,
            "ReactivateUser": user_pb.ReactivateUserRequest,
            "RemoveUser": user_pb.RemoveUserRequest,
            "GetUserByID": user_pb.GetUserByIDRequest,
            "AddSecret": user_pb.AddSecretRequest,
            "RemoveSecret": user_pb.RemoveSecretRequest,
            "AddPersonalAccessToken": user_pb.AddPersonalAccessTokenRequest,
            "ManagementService.GenerateMachineSecret": mgmt.GenerateMachineSecretRequest,
            "ManagementService.RemoveMachineSecret": mgmt.RemoveMachineSecretRequest,
            "ManagementService.AddPersonalAccessToken": mgmt.AddPersonalAccessTokenRequest,
            "UserServiceV2.AddSecret": user_v2.AddSecretRequest,
            "UserServiceV2.RemoveSecret": user_v2.RemoveSecretRequest,
            "UserServiceV2.AddPersonalAccessToken": user_v2.AddPersonalAccessTokenRequest,
            "UserServiceV2.GetUserByID": user_v2.GetUserByIDRequest,
            "ManagementService.GetUserByID": mgmt.GetUserByIDRequest,
            "ManagementService.DeactivateUser": mgmt.DeactivateUserRequest,
            "ManagementService.ReactivateUser": mgmt.ReactivateUserRequest,
            "ManagementService.RemoveUser": mgmt.RemoveUserRequest,
            "UserServiceV2.DeactivateUser": user_v2.DeactivateUserRequest,
            "UserServiceV2.ReactivateUser": user_v2.ReactivateUserRequest,
            "UserServiceV2.DeleteUser": user_v2.DeleteUserRequest,
            "CreateSecret": user_pb.CreateSecretRequest,
            "RotateSecret": user_pb.RotateSecretRequest,
            "DeleteSecret": user_pb.DeleteSecretRequest,
            "ListSecrets": user_pb.ListSecretsRequest,
        }
        if method == "GetSecretPolicy":
            await self.call(token.value, method, org_pb.GetSecretPolicyRequest(), header)
            return ("OK", "")
        if method == "SetSecretPolicy":  # an empty policy: the defaults, for the scenes that follow
            await self.call(token.value, method, org_pb.SetSecretPolicyRequest(), header)
            return ("OK", "")
        kind = requests[method]
        # ZITADEL's v1 names the user `id` where it reads or switches one off.
        fields: dict[str, object] = {"id" if "id" in kind.DESCRIPTOR.fields_by_name else "user_id": target}
        if method == "RotateSecret":  # no grace: the other secrets are retired at once
            fields["grace_period"] = duration_pb2.Duration(seconds=0)
        if method == "DeleteSecret":
            fields["secret_id"] = UNKNOWN_USER
        call = kind(**fields)
        answer = await self.call(token.value, method, call, header)
        method = native(method)
        user = self.model.users[target]
        if method in CREDENTIAL_METHODS + USER_METHODS:
            assert covers(holder.reach, user.power()), f"{method} on a user beyond the caller's reach"
        if method in USER_METHODS:
            user.active = method == "ReactivateUser"
            user.removed = method == "RemoveUser"
            if user.removed:
                user.roles.clear()
        elif method == "RemoveSecret":
            user.secrets.clear()
        elif method in NEW_SECRET_METHODS:
            number = next(_names)
            # AddSecret replaces every other secret; RotateSecret with no grace retires them.
            user.secrets = {*user.secrets, number} if method == "CreateSecret" else {number}
            if user.active:  # a deactivated user's secret buys nothing (and that is tested elsewhere)
                # ZITADEL's v2 answers no client id: it is the user name.
                client_id = getattr(answer, "client_id", "") or self.names[user.id]
                secret = answer.client_secret  # type: ignore[attr-defined]
                holder.tokens.append(Token(await self.exchange(client_id, secret), user.id, number))
        elif method == "AddPersonalAccessToken":
            holder.tokens.append(Token(answer.token, user.id, None))  # type: ignore[attr-defined]
        self.reach_again()
        return ("OK", "")

    async def exchange(self, client_id: str, secret: str) -> str:
        """The secret AddSecret answered, traded for an access token at the token endpoint."""
        answer = await self.http.post(
            "/oauth/v2/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    def reach_again(self) -> None:
        """A holder reaches the power of every user whose working credential it holds: a role
        granted to such a user later widens it (granted by someone who held it, as checked)."""
        for holder in self.holders:
            powers = [self.model.users[t.user_id].power() for t in holder.tokens if self.model.valid(t)]
            holder.reach = frozenset().union(holder.reach, *powers)


role_sets = st.lists(st.sampled_from(ROLES), max_size=2, unique=True).map(sorted)
granted_roles = st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True).map(sorted)
holder_grants = st.tuples(st.integers(0, 1), st.dictionaries(st.integers(0, 1), granted_roles))


async def explore(api: Api, served: Served, data: st.DataObject) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{served.process.http_port}", timeout=30) as http:
        scene = Scene(api, http, served.admin)
        await scene.set_up(data.draw(st.lists(holder_grants, min_size=2, max_size=3), label="holders"))
        orgs = sorted(scene.model.orgs)
        for _ in range(data.draw(st.integers(1, MAX_STEPS), label="steps")):
            holder = data.draw(st.sampled_from(scene.holders))
            token = data.draw(st.sampled_from(holder.tokens))
            method = data.draw(st.sampled_from(sorted(NEEDS)))
            header = data.draw(st.sampled_from([None, *orgs, UNKNOWN_ORG]))
            target = data.draw(st.sampled_from([*sorted(scene.model.users), UNKNOWN_USER]))
            roles = data.draw(st.one_of(role_sets, st.just(["ROOT"]))) if method == "AddOrgMember" else []
            await scene.step(holder, token, method, header, target, roles)


@pytest.mark.parametrize("transport", ["grpc", "envoy-json"])
def test_calls_follow_the_rules_and_never_escalate(served: Served, transport: str) -> None:
    # One event loop of the test's own for the whole search: hypothesis drives a plain function.
    loop = asyncio.new_event_loop()

    async def client() -> Api:  # made inside the loop it will run on
        if transport == "grpc":
            return GrpcApi(transport, f"127.0.0.1:{served.process.grpc_port}")
        return JsonApi(transport, f"http://127.0.0.1:{served.process.envoy_port}")

    api = loop.run_until_complete(client())

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def check(data: st.DataObject) -> None:
        loop.run_until_complete(explore(api, served, data))

    try:
        check()
    finally:
        loop.run_until_complete(api.close())
        loop.close()


def test_the_model_finds_the_reported_escalation() -> None:
    """The report's path against the model: a user manager is refused the admin's credentials."""
    admin = User("1", "o", True, {"o": frozenset({"IAM_OWNER", "ORG_OWNER"})})
    mgr = User("2", "o", True, {"o": frozenset({"ORG_USER_MANAGER"})})
    model = Model({"o"}, {"1": admin, "2": mgr})
    for method in CREDENTIAL_METHODS:
        assert model.expect(Token("t", "2", None), method, None, "1", [])[0] == "PERMISSION_DENIED"
    assert model.expect(Token("t", "2", None), "AddSecret", None, "2", []) == ("OK", "")
