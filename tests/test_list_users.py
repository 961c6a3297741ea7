"""ListUsers: an organisation's users, a page at a time, over every transport and store."""

import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import expect_error
from tests.codes import code_name
from tests.service import Running
from tests.world import World, unique_name

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


async def list_all(world: World, org: str, page_size: int, **filters: object) -> list[list[str]]:
    """Every page of the list, as user names, following next_page_token to the end."""
    pages: list[list[str]] = []
    token = ""
    while True:
        request = user_pb.ListUsersRequest(page_size=page_size, page_token=token, **filters)  # type: ignore[arg-type]
        answer = await world.call("ListUsers", request, org=org)
        pages.append([user.user_name for user in answer.users])
        token = answer.next_page_token
        if not token:
            return pages
        assert len(pages) < 20, "the list does not end"


async def test_pages_go_through_every_user_once_in_name_order(world: World) -> None:
    org = await world.org()
    names = [unique_name(f"bot-{letter}") for letter in "dbeca"]
    for name in names:
        await world.machine_user(org=org, user_name=name)
    humans = [await world.human_user(org=org) for _ in range(2)]
    pages = await list_all(world, org, page_size=2)
    assert [len(page) for page in pages] == [2, 2, 2, 1]
    listed = [name for page in pages for name in page]
    assert sorted(listed, key=str.casefold) == listed  # in the order of their user names
    assert set(names) <= set(listed)
    assert len(listed) == 7
    # The users are whole, as GetUserByID gives them.
    answer = await world.call("ListUsers", user_pb.ListUsersRequest(), org=org)
    by_id = {user.id: user for user in answer.users}
    assert not answer.next_page_token  # 7 fit the default page (50)
    for human_id in humans:
        assert by_id[human_id].type == user_pb.USER_TYPE_HUMAN
        assert by_id[human_id].details.resource_owner == org
        single = await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=human_id), org=org)
        assert single.user == by_id[human_id]


async def test_filters_by_prefix_without_case_and_by_type(world: World) -> None:
    org = await world.org()
    prefix = unique_name("Deploy")
    machines = [f"{prefix}-{n}" for n in range(3)]
    for name in machines:
        await world.machine_user(org=org, user_name=name)
    await world.machine_user(org=org, user_name=unique_name("other"))
    await world.human_user(org=org)
    pages = await list_all(world, org, page_size=2, user_name_prefix=prefix.upper())
    assert [name for page in pages for name in page] == machines
    # Fullwidth letters are the same user name, so the same prefix.
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in prefix)
    assert (await list_all(world, org, page_size=10, user_name_prefix=fullwidth)) == [machines]
    machine_pages = await list_all(world, org, page_size=100, type=user_pb.USER_TYPE_MACHINE)
    human_pages = await list_all(world, org, page_size=100, type=user_pb.USER_TYPE_HUMAN)
    assert len(machine_pages[0]) == 4
    assert len(human_pages[0]) == 1
    assert await list_all(world, org, page_size=5, user_name_prefix="no-such-prefix") == [[]]


async def test_contains_finds_a_part_anywhere_in_the_user_name(world: World) -> None:
    """Issue 35's search: a part from the middle of the name, in other letter case."""
    org = await world.org()
    tag = unique_name("batch")
    names = [f"nightly-{tag}", f"{tag}-export"]
    for name in names:
        await world.machine_user(org=org, user_name=name)
    await world.machine_user(org=org, user_name=unique_name("other"))
    pages = await list_all(world, org, page_size=10, contains=tag.upper())
    assert sorted(name for page in pages for name in page) == sorted(names)


async def test_lists_only_the_context_organisation(world: World) -> None:
    mine, theirs = await world.org(), await world.org()
    mine_name = unique_name("mine")
    await world.machine_user(org=mine, user_name=mine_name)
    await world.machine_user(org=theirs)
    assert await list_all(world, mine, page_size=10) == [[mine_name]]
    # A page token of one organisation is no page token of another.
    await world.machine_user(org=mine)
    first = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1), org=mine)
    assert first.next_page_token
    stolen = user_pb.ListUsersRequest(page_size=1, page_token=first.next_page_token)
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListUsers", stolen, org=theirs))
    assert error.violations == {"page_token": "is not a page token of this list; start again without one"}


async def test_needs_user_read_in_the_organisation(world: World) -> None:
    org = await world.org()
    _, no_roles = await world.caller([], home=org)
    error = await expect_error(
        DENIED, "PERMISSION_DENIED", world.call("ListUsers", user_pb.ListUsersRequest(), token=no_roles)
    )
    assert error.metadata == {"permission": "user.read"}
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    answer = await world.call("ListUsers", user_pb.ListUsersRequest(), token=manager)
    assert len(answer.users) == 2  # the two callers, both made in org
    # Elsewhere it holds nothing.
    other = await world.org()
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("ListUsers", user_pb.ListUsersRequest(), token=manager, org=other),
    )


@pytest.mark.parametrize(
    ("fields", "violations"),
    [
        ({"page_size": 101}, {"page_size": "must be from 1 to 100 (0: 50)"}),
        ({"page_size": -1}, {"page_size": "must be from 1 to 100 (0: 50)"}),
        (
            {"page_token": "bm90IGEgdG9rZW4"},
            {"page_token": "is not a page token of this list; start again without one"},
        ),
        ({"page_token": "!!"}, {"page_token": "is not a page token of this list; start again without one"}),
        ({"user_name_prefix": "x" * 201}, {"user_name_prefix": "must be at most 200 characters"}),
    ],
)
async def test_bad_requests_name_the_field(
    world: World, fields: dict[str, object], violations: dict[str, str]
) -> None:
    request = user_pb.ListUsersRequest(**fields)  # type: ignore[arg-type]
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListUsers", request))
    assert error.violations == violations


async def test_a_token_of_other_filters_is_refused(world: World) -> None:
    org = await world.org()
    for _ in range(2):
        await world.machine_user(org=org)
    first = await world.call("ListUsers", user_pb.ListUsersRequest(page_size=1), org=org)
    changed = user_pb.ListUsersRequest(
        page_size=1, page_token=first.next_page_token, type=user_pb.USER_TYPE_HUMAN
    )
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListUsers", changed, org=org))
    assert set(error.violations) == {"page_token"}
    # The same filters with another page size go on from where the token says.
    resumed = user_pb.ListUsersRequest(page_size=5, page_token=first.next_page_token)
    rest = await world.call("ListUsers", resumed, org=org)
    assert [u.user_name for u in rest.users] not in ([], [first.users[0].user_name])
    assert first.users[0].user_name not in [u.user_name for u in rest.users]


@pytest.mark.parametrize("door", ["envoy", "http"])
async def test_json_filters_are_query_parameters_each_once(running: Running, door: str) -> None:
    """GET /users takes its fields as query parameters, by JSON or proto name, through Envoy and
    on the HTTP port alike; a parameter given twice, one of the wrong form, or one the call does not
    have is INVALID_ARGUMENT naming it, and a query string that does not parse is refused whole."""
    port = running.service.envoy_port if door == "envoy" else running.service.http_port
    headers = {"authorization": f"Bearer {running.admin_token}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        listed = await http.get("/users?type=USER_TYPE_MACHINE&pageSize=1", headers=headers)
        assert listed.status_code == 200, listed.text
        assert len(listed.json()["users"]) == 1
        assert listed.json()["nextPageToken"]
        by_proto_name = await http.get("/users?page_size=2&user_name_prefix=", headers=headers)
        assert by_proto_name.status_code == 200, by_proto_name.text
        assert len(by_proto_name.json()["users"]) == 2
        searched = await http.get("/users?contains=DMI", headers=headers)  # a part of "admin"
        assert searched.status_code == 200, searched.text
        assert "admin" in [user["userName"] for user in searched.json()["users"]]
        refused = {
            "pageSize=1&pageSize=2": {"pageSize": "may be given once"},
            "pageSize=ten": {"pageSize": "has the wrong type or form for proto3 JSON"},
            "type=ROBOT": {"type": "has the wrong type or form for proto3 JSON"},
            "userId=1": None,  # not a field of ListUsers: named, with the call's fields
            "pageSize=%FF": None,
            "pageSize": None,
        }
        for query, violations in refused.items():
            answer = await http.get(f"/users?{query}", headers=headers)
            assert answer.status_code == 400, (query, answer.text)
            body = answer.json()
            assert code_name(body["code"]) == "INVALID_ARGUMENT"
            found = {
                v["field"]: v["description"]
                for detail in body["details"]
                if detail["@type"].endswith("BadRequest")
                for v in detail["fieldViolations"]
            }
            if violations is not None:
                assert found == violations, (query, found)
            else:
                assert len(found) == 1, (query, body)
