"""ListOrganizations: the organisations a caller may act in, over every transport and store."""

import grpc
from machinesecrets.v1 import org_service_pb2 as org_pb

from tests.api import expect_error
from tests.world import World


async def listed(
    world: World, token: str | None = None, page_size: int = 0, org: str | None = None
) -> dict[str, list[str]]:
    """Every organisation the caller is shown, following next_page_token: id to its roles there."""
    found: dict[str, list[str]] = {}
    page_token = ""
    for _ in range(100):
        request = org_pb.ListOrganizationsRequest(page_size=page_size, page_token=page_token)
        answer = await world.call("ListOrganizations", request, token=token, org=org)
        for organization in answer.organizations:
            assert organization.org_id not in found, "an organisation came twice"
            assert organization.details.resource_owner == organization.org_id
            found[organization.org_id] = list(organization.roles)
        page_token = answer.next_page_token
        if not page_token:
            return found
    raise AssertionError("the list does not end")


async def test_a_member_sees_its_own_organisation_and_those_it_is_a_member_of(world: World) -> None:
    home, member_of, elsewhere = await world.org(), await world.org(), await world.org()
    _, token = await world.caller(["ORG_USER_MANAGER"], org=member_of, home=home)
    assert await listed(world, token) == {home: [], member_of: ["ORG_USER_MANAGER"]}
    # Page by page, the same.
    assert await listed(world, token, page_size=1) == {home: [], member_of: ["ORG_USER_MANAGER"]}
    # The header names no context here: the answer is the caller's reach, not a refusal.
    assert await listed(world, token, org=elsewhere) == {home: [], member_of: ["ORG_USER_MANAGER"]}


async def test_a_caller_without_roles_sees_only_its_own(world: World) -> None:
    home = await world.org()
    _, token = await world.caller([], home=home)
    answer = await world.call("ListOrganizations", org_pb.ListOrganizationsRequest(), token=token)
    [organization] = answer.organizations
    assert (organization.org_id, list(organization.roles)) == (home, [])
    assert organization.name.startswith("org-")


async def test_an_iam_owner_sees_every_organisation(world: World) -> None:
    made = {await world.org() for _ in range(3)}
    everything = await listed(world, page_size=2)
    assert made <= set(everything)
    assert world.home_org in everything
    assert list(everything) == sorted(everything)  # in the order of their ids


async def test_bad_pages_are_refused(world: World) -> None:
    for request, field in [
        (org_pb.ListOrganizationsRequest(page_size=101), "page_size"),
        (org_pb.ListOrganizationsRequest(page_token="bm9wZQ"), "page_token"),
    ]:
        error = await expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", world.call("ListOrganizations", request)
        )
        assert set(error.violations) == {field}
    # Another caller's page token is not this caller's.
    home = await world.org()
    _, token = await world.caller([], home=home)
    first = await world.call("ListOrganizations", org_pb.ListOrganizationsRequest(page_size=1))
    assert first.next_page_token
    stolen = org_pb.ListOrganizationsRequest(page_size=1, page_token=first.next_page_token)
    await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call("ListOrganizations", stolen, token=token),
    )


async def test_needs_a_caller(world: World) -> None:
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("ListOrganizations", org_pb.ListOrganizationsRequest(), token="not-a-token"),
    )
