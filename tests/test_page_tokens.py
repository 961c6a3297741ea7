"""Page tokens are the service's own: a token it did not make for this very list is INVALID_ARGUMENT
on page_token, over every transport and store, whatever position it claims; never a 500.

Until tokens were signed, a token was base64 of JSON [fingerprint, position], the fingerprint the
first 16 hex digits of SHA-256 of the query, all of it known to the caller: a forged position
reached the store, and a lone surrogate (which SQLite cannot encode) or a NUL (which PostgreSQL
refuses in text) failed the call with INTERNAL.
"""

import base64
import hashlib
import json
from pathlib import Path

import grpc
from google.protobuf import message
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.limits import MAX_PAGE_TOKEN_LENGTH
from tests import postgres
from tests.api import GrpcApi, expect_error
from tests.service import Running, config_for, start_service
from tests.world import World

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_OURS = "is not a page token of this list; start again without one"
# Positions a store cannot take, and one no key is near.
HOSTILE_POSITIONS = ["\ud800", "a\x00b", "x" * 2000, "\udfff\x00"]


def unsigned_token(query: tuple[str, ...], after: str) -> str:
    """A token as the service made them before they were signed: anyone can make one."""
    fingerprint = hashlib.sha256("\0".join(query).encode()).hexdigest()[:16]
    text = json.dumps([fingerprint, after], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def forged_token(after: str) -> str:
    """A token in the signed layout (a 16-byte MAC, then the position), with a MAC made up."""
    raw = bytes(16) + after.encode("utf-8", "surrogatepass")
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forgeries(query: tuple[str, ...]) -> list[str]:
    return [
        *(unsigned_token(query, after) for after in HOSTILE_POSITIONS),
        *(forged_token(after) for after in HOSTILE_POSITIONS),
        "é",  # not base64
        "AAAA",  # too short for a MAC
    ]


async def refused(
    world: World, method: str, request: message.Message, token: str | None = None, **kw: str
) -> str:
    """The page_token violation the call is refused with (nothing else is wrong with it)."""
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call(method, request, token=token, **kw))
    assert set(error.violations) == {"page_token"}, error
    return error.violations["page_token"]


async def test_forged_tokens_of_list_users_are_refused(world: World) -> None:
    org, other = await world.org(), await world.org()
    for _ in range(2):
        await world.machine_user(org=org)
        await world.machine_user(org=other)
    for token in forgeries((org, "", "")):
        request = user_pb.ListUsersRequest(page_size=1, page_token=token)
        assert await refused(world, "ListUsers", request, org=org) == NOT_OURS, token
    first = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1), org=org)
    valid = first.next_page_token
    assert valid
    # A good token, cut short: refused, never read as a shorter position.
    for cut in (valid[:-1], valid[:-3], valid[:22], valid[:2]):
        request = user_pb.ListUsersRequest(page_size=1, page_token=cut)
        assert await refused(world, "ListUsers", request, org=org) == NOT_OURS, cut
    # A good token of another organisation, or of other filters.
    theirs = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1), org=other)
    request = user_pb.ListUsersRequest(page_size=1, page_token=theirs.next_page_token)
    assert await refused(world, "ListUsers", request, org=org) == NOT_OURS
    for filters in ({"type": user_pb.USER_TYPE_MACHINE}, {"user_name_prefix": "s"}):
        request = user_pb.ListUsersRequest(page_size=1, page_token=valid, **filters)
        assert await refused(world, "ListUsers", request, org=org) == NOT_OURS
    # Longer than any token the service gives: refused before it is decoded.
    request = user_pb.ListUsersRequest(page_token="A" * (MAX_PAGE_TOKEN_LENGTH + 1))
    too_long = await refused(world, "ListUsers", request, org=org)
    assert too_long == f"must be at most {MAX_PAGE_TOKEN_LENGTH} characters"
    # And the good token still goes on.
    second = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1, page_token=valid), org=org)
    assert [u.user_name for u in second.users] != [u.user_name for u in first.users]


async def test_forged_tokens_of_list_organizations_are_refused(world: World) -> None:
    home, member_of = await world.org(), await world.org()
    user_id, token = await world.caller(["ORG_USER_MANAGER"], org=member_of, home=home)
    for forged in forgeries(("organizations", user_id)):
        request = org_pb.ListOrganizationsRequest(page_size=1, page_token=forged)
        assert await refused(world, "ListOrganizations", request, token=token) == NOT_OURS, forged
    first = await world.call("ListOrganizations", org_pb.ListOrganizationsRequest(page_size=1), token=token)
    valid = first.next_page_token
    assert valid
    request = org_pb.ListOrganizationsRequest(page_size=1, page_token=valid[:-2])
    assert await refused(world, "ListOrganizations", request, token=token) == NOT_OURS
    # Another caller's token (the admin's list is another list), and a token of ListUsers.
    admins = await world.call("ListOrganizations", org_pb.ListOrganizationsRequest(page_size=1))
    request = org_pb.ListOrganizationsRequest(page_size=1, page_token=admins.next_page_token)
    assert await refused(world, "ListOrganizations", request, token=token) == NOT_OURS
    await world.machine_user(org=home)
    users = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1), org=home)
    request = org_pb.ListOrganizationsRequest(page_size=1, page_token=users.next_page_token)
    assert await refused(world, "ListOrganizations", request, token=token) == NOT_OURS
    request = org_pb.ListOrganizationsRequest(page_token="A" * (MAX_PAGE_TOKEN_LENGTH + 1))
    assert await refused(world, "ListOrganizations", request, token=token) != NOT_OURS
    second = await world.call(
        "ListOrganizations", org_pb.ListOrganizationsRequest(page_size=1, page_token=valid), token=token
    )
    assert [o.org_id for o in second.organizations] != [o.org_id for o in first.organizations]


async def test_every_process_on_one_store_reads_the_tokens_of_the_others(tmp_path: Path) -> None:
    """The key is the store's: a token one process gave goes on in another on the same PostgreSQL
    (workers, replicas), and in a new process on the same SQLite file (a restart)."""
    with postgres.throwaway_database() as url:
        first = await start_service(config_for(tmp_path / "a", database_url=url))
        try:
            # One master key for every process on a store, as for replicas (docs/production.md).
            shared = tmp_path / "a" / "masterkey"
            second = await start_service(config_for(tmp_path / "b", database_url=url, masterkey_file=shared))
            try:
                await pages_across(first, second)
            finally:
                await second.service.stop(0)
        finally:
            await first.service.stop(0)
    config = config_for(tmp_path / "c")
    before = await start_service(config)
    try:
        # The store and the admin's token stay; the service is started anew on them.
        token, users = await first_page(before, before.admin_token)
    finally:
        await before.service.stop(0)
    after = await start_service(config)
    try:
        assert await next_page(after, before.admin_token, token) not in ([], users)
    finally:
        await after.service.stop(0)


async def first_page(running: Running, admin_token: str) -> tuple[str, list[str]]:
    """A page of one user of the admin's organisation (made with two), and its next page's token."""
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        world = await World.create(api, admin_token)
        await world.machine_user()
        page = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1))
        return page.next_page_token, [u.user_name for u in page.users]
    finally:
        await api.close()


async def next_page(running: Running, admin_token: str, token: str) -> list[str]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        request = user_pb.ListUsersRequest(page_size=1, page_token=token)
        page = await api.call("ListUsers", request, [("authorization", f"Bearer {admin_token}")])
        return [u.user_name for u in page.users]  # type: ignore[attr-defined]
    finally:
        await api.close()


async def pages_across(one: Running, other: Running) -> None:
    token, users = await first_page(one, one.admin_token)
    assert await next_page(other, one.admin_token, token) not in ([], users)
