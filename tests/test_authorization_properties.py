"""The authorisation rules, as properties: whatever caller, organisation header, target and call
hypothesis picks, the API answers what a small reference model of the rules says. Over native
gRPC and over JSON through Envoy, against a server in its own process."""

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.permissions import ORG_OWNER, ORG_USER_MANAGER, ROLE_PERMISSIONS, USER_READ, USER_WRITE
from server.transport.status import HTTP_STATUS
from tests.api import grpc_code, method_path, response_class
from tests.processes import ServerProcess, start_with_envoy

UNKNOWN_ORG = "123456789012345"
UNKNOWN_USER = "987654321098765"
PERMISSION = {"AddSecret": USER_WRITE, "GetUserByID": USER_READ, "AddPersonalAccessToken": USER_WRITE}
REQUESTS = {
    "AddSecret": lambda user_id: user_pb.AddSecretRequest(user_id=user_id),
    "GetUserByID": lambda user_id: user_pb.GetUserByIDRequest(user_id=user_id),
    "AddPersonalAccessToken": lambda user_id: user_pb.AddPersonalAccessTokenRequest(user_id=user_id),
}
# Every combination of roles a caller can hold in its own and in another organisation.
ROLE_SETS = [frozenset(), frozenset({ORG_USER_MANAGER}), frozenset({ORG_OWNER})]


@dataclass(frozen=True)
class User:
    id: str
    org: str
    machine: bool


@dataclass(frozen=True)
class Caller:
    user: User
    roles: dict[str, frozenset[str]]
    token: str


@dataclass
class Model:
    orgs: list[str]
    callers: list[Caller]
    targets: list[User]


def expected(caller: Caller, header: str | None, target_id: str, method: str, model: Model) -> str:
    """The reference model: the outcome the rules give, as a gRPC code name."""
    org = header or caller.user.org
    allowed = any(PERMISSION[method] in ROLE_PERMISSIONS[r] for r in caller.roles.get(org, frozenset()))
    if not allowed or org not in model.orgs:
        return "PERMISSION_DENIED"
    target = next((t for t in model.targets if t.id == target_id), None)
    if target is None or target.org != org:
        return "NOT_FOUND"  # never says whether the user exists in another organisation
    if method != "GetUserByID" and not target.machine:
        return "FAILED_PRECONDITION"
    return "OK"


@dataclass
class Served:
    process: ServerProcess
    envoy_port: int
    model: Model


@pytest.fixture(scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    folder = tmp_path_factory.mktemp("authz")
    process, admin = await start_with_envoy(folder)
    envoy_port = process.envoy_port
    with grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        model = build(channel, admin)
    yield Served(process, envoy_port, model)
    await process.stop()


def build(channel: grpc.Channel, admin: str) -> Model:
    names = (f"authz-{i}" for i in itertools.count())

    def call(method: str, request: object, token: str = admin, org: str | None = None) -> Any:
        metadata = (("authorization", f"Bearer {token}"),) + ((("x-zitadel-orgid", org),) if org else ())
        rpc = channel.unary_unary(
            method_path(method), request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class(method).FromString,
        )  # fmt: skip
        return rpc(request, metadata=metadata, timeout=30)

    home: str = call(
        "AddMachineUser", user_pb.AddMachineUserRequest(user_name=next(names), name="x")
    ).details.resource_owner
    orgs = [home] + [
        call("AddOrganization", org_pb.AddOrganizationRequest(name=next(names))).org_id for _ in range(2)
    ]
    targets: list[User] = []
    for org in orgs:
        for machine in (True, True, False):
            if machine:
                request: object = user_pb.AddMachineUserRequest(user_name=next(names), name="t")
                method = "AddMachineUser"
            else:
                name = next(names)
                request = user_pb.AddHumanUserRequest(
                    user_name=name, display_name="t", email=f"{name}@example.com"
                )
                method = "AddHumanUser"
            targets.append(User(call(method, request, org=org).user_id, org, machine))
    callers: list[Caller] = []
    for home_roles, other_roles in itertools.product(ROLE_SETS, ROLE_SETS):
        org, other = orgs[1], orgs[2]
        user = User(
            call(
                "AddMachineUser", user_pb.AddMachineUserRequest(user_name=next(names), name="c"), org=org
            ).user_id,
            org,
            True,
        )
        roles = {}
        for where, granted in ((org, home_roles), (other, other_roles)):
            if granted:
                call(
                    "AddOrgMember",
                    org_pb.AddOrgMemberRequest(user_id=user.id, roles=sorted(granted)),
                    org=where,
                )
                roles[where] = granted
        token = call(
            "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user.id), org=org
        ).token
        callers.append(Caller(user, roles, token))
        targets.append(user)
    return Model(orgs, callers, targets)


def over_grpc(served: Served, caller: Caller, header: str | None, method: str, target: str) -> str:
    metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {caller.token}"),)
    if header:
        metadata += (("x-zitadel-orgid", header),)
    with grpc.insecure_channel(f"127.0.0.1:{served.process.grpc_port}") as channel:
        rpc = channel.unary_unary(method_path(method), request_serializer=lambda m: m.SerializeToString(),
                                  response_deserializer=response_class(method).FromString)  # fmt: skip
        try:
            rpc(REQUESTS[method](target), metadata=metadata, timeout=30)  # type: ignore[no-untyped-call,unused-ignore]
        except grpc.RpcError as error:
            return str(error.code().name)
    return "OK"


def over_json(served: Served, caller: Caller, header: str | None, method: str, target: str) -> str:
    headers = {"authorization": f"Bearer {caller.token}", **({"x-zitadel-orgid": header} if header else {})}
    base = f"http://127.0.0.1:{served.envoy_port}"
    with httpx.Client(base_url=base, timeout=30) as http:
        if method == "AddSecret":
            answer = http.put(f"/users/{target}/secret", content="{}", headers=headers)
        elif method == "GetUserByID":
            answer = http.get(f"/users/{target}", headers=headers)
        else:
            answer = http.post(f"/users/{target}/pats", content="{}", headers=headers)
    if answer.status_code == 200:
        json_format.ParseDict(answer.json(), response_class(method)())
        return "OK"
    code = grpc_code(answer.json()["code"])
    assert answer.status_code == HTTP_STATUS[code]
    return code.name


@pytest.mark.parametrize("transport", [over_grpc, over_json], ids=["grpc", "envoy-json"])
def test_outcomes_follow_the_rules(served: Served, transport: object) -> None:
    model = served.model
    calls = st.tuples(
        st.sampled_from(model.callers),
        st.one_of(st.none(), st.sampled_from(model.orgs), st.just(UNKNOWN_ORG)),
        st.sampled_from(sorted(PERMISSION)),
        st.one_of(st.sampled_from([t.id for t in model.targets]), st.just(UNKNOWN_USER)),
    )

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(calls)
    def check(call: tuple[Caller, str | None, str, str]) -> None:
        caller, header, method, target = call
        answered = transport(served, caller, header, method, target)  # type: ignore[operator]
        assert answered == expected(caller, header, target, method, model), call

    check()
