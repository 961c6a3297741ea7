"""Every event that takes power from a caller takes it at once, on the process that wrote it,
whatever that process's cache of callers holds (server/domain/caller_cache.py): each scenario
warms the cache with the caller's call, writes the event, and the very next call is refused.

This is the behaviour behind each event class's changes_power (server/events/base.py; the events
that say False keep the cache): an event that takes power and wrongly says False fails its
scenario here. The endings of a secret
(set, rotated, deleted, revoked, removed) are test_credential_liveness.py's scenarios.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
import pytest
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.events.base import event_class
from server.events.instance import IamOwnerLeft
from server.events.org import OrgMemberRemoved
from server.events.user import PatRemoved, UserDeactivated, UserRemoved
from tests.api import expect_error
from tests.world import World, unique_name


@dataclass
class Caller:
    user_id: str
    token: str
    token_id: str


async def caller(world: World, roles: list[str]) -> Caller:
    user_id = await world.machine_user()
    await world.grant(user_id, roles)
    issued = await world.call(
        "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id)
    )
    return Caller(user_id, issued.token, issued.token_id)


def read(world: World, who: Caller) -> Awaitable[object]:
    """A call a user manager may make: reading itself."""
    return world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=who.user_id), token=who.token)


def create_org(world: World, who: Caller) -> Awaitable[object]:
    """A call only an IAM_OWNER may make."""
    request = org_pb.AddOrganizationRequest(name=unique_name("power"))
    return world.call("AddOrganization", request, token=who.token)


@dataclass
class Scenario:
    roles: list[str]
    call: Callable[[World, Caller], Awaitable[object]]
    take: Callable[[World, Caller], Awaitable[object]]  # as the admin
    refused: tuple[grpc.StatusCode, str]


UNAUTHENTICATED = (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")
DENIED = (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
SCENARIOS = {
    PatRemoved.TYPE: Scenario(
        ["ORG_USER_MANAGER"],
        read,
        lambda w, c: w.call(
            "RemovePersonalAccessToken",
            user_pb.RemovePersonalAccessTokenRequest(user_id=c.user_id, token_id=c.token_id),
        ),
        UNAUTHENTICATED,
    ),
    UserDeactivated.TYPE: Scenario(
        ["ORG_USER_MANAGER"],
        read,
        lambda w, c: w.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=c.user_id)),
        UNAUTHENTICATED,
    ),
    UserRemoved.TYPE: Scenario(
        ["ORG_USER_MANAGER"],
        read,
        lambda w, c: w.call("RemoveUser", user_pb.RemoveUserRequest(user_id=c.user_id)),
        UNAUTHENTICATED,
    ),
    OrgMemberRemoved.TYPE: Scenario(
        ["ORG_USER_MANAGER"],
        read,
        lambda w, c: w.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=c.user_id)),
        DENIED,
    ),
    # Written with the membership's end when the member was an IAM_OWNER.
    IamOwnerLeft.TYPE: Scenario(
        ["IAM_OWNER"],
        create_org,
        lambda w, c: w.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=c.user_id)),
        DENIED,
    ),
}


def test_no_event_that_takes_power_keeps_the_cache() -> None:
    assert all(event_class(name).CHANGES_POWER for name in SCENARIOS)


@pytest.mark.parametrize("event", SCENARIOS)
async def test_the_power_an_event_takes_is_gone_at_once(world: World, event: str) -> None:
    scenario = SCENARIOS[event]
    who = await caller(world, scenario.roles)
    await scenario.call(world, who)  # served, and now cached
    await scenario.call(world, who)
    await scenario.take(world, who)
    await expect_error(*scenario.refused, scenario.call(world, who))
