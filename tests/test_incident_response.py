"""Ending what leaked: personal access tokens listed and revoked, members removed, users
deactivated, reactivated and removed; every credential of theirs refused at once. On every
transport and both stores, with the escalation rule and the last IAM_OWNER kept."""

import asyncio
import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import ApiError, exchange, expect_error
from tests.service import TRANSPORTS, Running, client, config_for, start_service
from tests.world import World, unique_name

DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED


async def works(world: World, token: str, user_id: str) -> bool:
    """Whether the token still authenticates (GetUserByID of its own user)."""
    try:
        await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
    except ApiError as error:
        refused = error
    else:
        return True
    assert (refused.code, refused.reason) == (UNAUTHENTICATED, "TOKEN_INVALID"), refused
    return False


async def credentials(world: World, running: Running, user_id: str) -> tuple[str, str, str, str]:
    """A PAT, a client id and secret, and an access token of that user."""
    pat = await world.token_for(user_id)
    issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    answer = await exchange(
        f"http://127.0.0.1:{running.service.http_port}", issued.client_id, issued.client_secret
    )
    assert answer.status_code == 200, answer.text
    return pat, issued.client_id, issued.client_secret, answer.json()["access_token"]


async def state_of(world: World, user_id: str) -> int:
    return int((await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user.state)


async def test_personal_access_tokens_are_listed_and_revoked(world: World) -> None:
    user_id, _ = await world.caller(["ORG_USER_MANAGER"])
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    request = user_pb.AddPersonalAccessTokenRequest(user_id=user_id)
    request.expiration_date.FromDatetime(expires)
    expiring = await world.call("AddPersonalAccessToken", request)
    before = datetime.now(UTC) - timedelta(seconds=1)
    assert await works(world, expiring.token, user_id)
    listed = (
        await world.call("ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=user_id))
    ).tokens
    assert [t.token_id for t in listed][-1] == expiring.token_id
    mine = listed[-1]
    assert mine.expiration_date.ToDatetime(tzinfo=UTC) == expires
    assert mine.creation_date.ToDatetime(tzinfo=UTC) >= before
    assert mine.last_used.ToDatetime(tzinfo=UTC) >= before  # noted by the call above
    assert not listed[0].HasField("expiration_date")  # the caller's own PAT never expires
    removed = await world.call(
        "RemovePersonalAccessToken",
        user_pb.RemovePersonalAccessTokenRequest(user_id=user_id, token_id=expiring.token_id),
    )
    assert removed.details.resource_owner == world.home_org
    assert not await works(world, expiring.token, user_id)
    left = await world.call(
        "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=user_id)
    )
    assert expiring.token_id not in [t.token_id for t in left.tokens]
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "TOKEN_NOT_FOUND",
        world.call(
            "RemovePersonalAccessToken",
            user_pb.RemovePersonalAccessTokenRequest(user_id=user_id, token_id=expiring.token_id),
        ),
    )
    human = await world.human_user()
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_MACHINE",
        world.call("ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=human)),
    )


async def test_a_deactivated_user_has_no_working_credential(world: World, running: Running) -> None:
    user_id, _ = await world.caller(["ORG_USER_MANAGER"])
    pat, client_id, secret, access = await credentials(world, running, user_id)
    await world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=user_id))
    assert await state_of(world, user_id) == user_pb.USER_STATE_INACTIVE
    assert not await works(world, pat, user_id)
    assert not await works(world, access, user_id)
    refused = await exchange(f"http://127.0.0.1:{running.service.http_port}", client_id, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_ACTIVE",
        world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=user_id)),
    )
    await world.call("ReactivateUser", user_pb.ReactivateUserRequest(user_id=user_id))
    assert await state_of(world, user_id) == user_pb.USER_STATE_ACTIVE
    assert await works(world, pat, user_id)
    assert (
        await exchange(f"http://127.0.0.1:{running.service.http_port}", client_id, secret)
    ).status_code == 200
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_INACTIVE",
        world.call("ReactivateUser", user_pb.ReactivateUserRequest(user_id=user_id)),
    )


async def test_a_removed_user_leaves_nothing_that_works(world: World, running: Running) -> None:
    name = unique_name("leaky-bot")
    user_id = await world.machine_user(user_name=name)
    await world.grant(user_id, ["ORG_USER_MANAGER"])
    pat, client_id, secret, access = await credentials(world, running, user_id)
    await world.call("RemoveUser", user_pb.RemoveUserRequest(user_id=user_id))
    for token in (pat, access):
        await expect_error(
            UNAUTHENTICATED,
            "TOKEN_INVALID",
            world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token),
        )
    assert (
        await exchange(f"http://127.0.0.1:{running.service.http_port}", client_id, secret)
    ).status_code == 401
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id)),
    )
    # The name is free again, for a new user with nothing of the old one's.
    again = await world.machine_user(user_name=name)
    assert again != user_id
    fresh = await world.token_for(again)
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=again), token=fresh),
    )
    assert (await exchange(f"http://127.0.0.1:{running.service.http_port}", name, secret)).status_code == 401


async def test_a_removed_member_loses_its_roles_at_once(world: World) -> None:
    user_id, token = await world.caller(["ORG_USER_MANAGER"])
    assert await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
    removed = await world.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=user_id))
    assert removed.details.resource_owner == world.home_org
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "MEMBER_NOT_FOUND",
        world.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=user_id)),
    )


async def test_no_one_switches_off_a_more_powerful_user(world: World) -> None:
    _, mgr = await world.caller(["ORG_USER_MANAGER"])
    _, owner = await world.caller(["ORG_OWNER"])
    org_owner, _ = await world.caller(["ORG_OWNER"])
    iam_owner, iam_token = await world.caller(["IAM_OWNER"])
    pats = (
        await world.call(
            "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=iam_owner)
        )
    ).tokens
    for caller, target in ((mgr, org_owner), (mgr, iam_owner), (owner, iam_owner)):
        for method, request in [
            ("DeactivateUser", user_pb.DeactivateUserRequest(user_id=target)),
            ("ReactivateUser", user_pb.ReactivateUserRequest(user_id=target)),
            ("RemoveUser", user_pb.RemoveUserRequest(user_id=target)),
        ]:
            await expect_error(DENIED, "PERMISSION_DENIED", world.call(method, request, token=caller))
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call(
            "RemovePersonalAccessToken",
            user_pb.RemovePersonalAccessTokenRequest(user_id=iam_owner, token_id=pats[0].token_id),
            token=owner,
        ),
    )
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=iam_owner), token=owner),
    )
    assert await works(world, iam_token, iam_owner)
    # A peer or a weaker user is fine.
    peer, _ = await world.caller(["ORG_OWNER"])
    await world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=peer), token=owner)
    await world.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=peer), token=owner)


@pytest.fixture(params=TRANSPORTS)
async def lone_admin(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple[World, str]]:
    """A new instance whose admin is its only IAM_OWNER, and the admin's user id."""
    running = await start_service(config_for(tmp_path, envoy=True))
    api = client(request.param, running.service)
    try:
        admin = await running.service.store.user_by_name("admin")
        assert admin is not None
        yield await World.create(api, running.admin_token), admin.id
    finally:
        await api.close()
        await running.service.stop(0)


async def test_the_last_iam_owner_stays(lone_admin: tuple[World, str]) -> None:
    world, admin = lone_admin
    for method, request in [
        ("DeactivateUser", user_pb.DeactivateUserRequest(user_id=admin)),
        ("RemoveUser", user_pb.RemoveUserRequest(user_id=admin)),
        ("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=admin)),
    ]:
        await expect_error(grpc.StatusCode.FAILED_PRECONDITION, "LAST_IAM_OWNER", world.call(method, request))
    # With a second one, the first may go.
    second, token = await world.caller(["IAM_OWNER"])
    await world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=admin), token=token)
    # And now the second is the last.
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "LAST_IAM_OWNER",
        world.call("RemoveOrgMember", org_pb.RemoveOrgMemberRequest(user_id=second), token=token),
    )


SECURITY = Path(__file__).resolve().parent.parent / "SECURITY.md"


def runbook() -> str:
    """The shell block of SECURITY.md's "When a secret leaks", as it is written there."""
    text = SECURITY.read_text()
    found = re.search(r"<!-- runbook:[^>]*-->\n```sh\n(.*?)```", text, re.S)
    assert found, "SECURITY.md has no runbook block"
    return found[1]


async def a_leak(world: World, running: Running) -> tuple[str, Any, str, str]:
    """A user manager whose secret leaked (its id, and the secret as AddSecret answered it), and
    the attacker's access token from that secret, and the PAT it made with that token."""
    deployer, _ = await world.caller(["ORG_USER_MANAGER"])
    issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=deployer))
    access = (
        await exchange(
            f"http://127.0.0.1:{running.service.http_port}", issued.client_id, issued.client_secret
        )
    ).json()["access_token"]
    pat = (
        await world.call(
            "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=deployer), token=access
        )
    ).token
    return deployer, issued, str(access), str(pat)


async def run_runbook(running: Running, user_id: str) -> None:
    """The runbook, run as it is written, through the service's Envoy, with the admin's token."""
    env = {
        **os.environ,
        "API": f"http://127.0.0.1:{running.service.envoy_port}",
        "TOKEN": running.admin_token,
        "USER_ID": user_id,
    }
    done = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", runbook(), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(done.communicate(), 60))[0].decode()
    assert done.returncode == 0, output


async def test_the_leaked_secret_runbook_leaves_the_attacker_nothing(tmp_path: Path) -> None:
    running = await start_service(config_for(tmp_path, envoy=True))
    api = client("envoy-json", running.service)
    try:
        world = await World.create(api, running.admin_token)
        deployer, issued, access, pat = await a_leak(world, running)
        assert await works(world, pat, deployer)

        await run_runbook(running, deployer)

        assert not await works(world, pat, deployer)
        assert not await works(world, access, deployer)
        assert (
            await exchange(
                f"http://127.0.0.1:{running.service.http_port}", issued.client_id, issued.client_secret
            )
        ).status_code == 401
        listed = await world.call(
            "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=deployer)
        )
        assert list(listed.tokens) == []
        assert await state_of(world, deployer) == user_pb.USER_STATE_ACTIVE  # back, without the leak
    finally:
        await api.close()
        await running.service.stop(0)
