"""Users, organisations, members and tokens: the calls that set up who may add secrets."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.user.v2 import user_service_pb2 as user_v2

from tests.api import exchange, expect_error
from tests.service import JSON_TRANSPORTS, Running
from tests.world import World, unique_name

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_get_user_by_id(world: World) -> None:
    user_name = unique_name("reader-bot")
    user_id = await world.machine_user(user_name=user_name)
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user
    assert (user.id, user.user_name, user.type, user.state) == (
        user_id,
        user_name,
        user_pb.USER_TYPE_MACHINE,
        user_pb.USER_STATE_ACTIVE,
    )
    assert not user.has_secret
    assert user.details.sequence == 1
    assert user.details.resource_owner == world.home_org
    # What it was created with (World.machine_user names it "Service").
    assert (user.name, user.description, user.display_name, user.email) == ("Service", "", "", "")
    human_id = await world.human_user()
    human = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=human_id))).user
    assert human.type == user_pb.USER_TYPE_HUMAN
    assert (human.name, human.display_name) == ("", "Jo")
    assert human.email == f"{human.user_name}@example.com"


async def test_read_details_span_first_and_last_event(world: World) -> None:
    user_id = await world.machine_user()
    created = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user.details
    changed = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))).user
    assert user.details.creation_date == created.creation_date
    assert user.details.change_date == changed.details.change_date
    assert user.details.change_date.ToDatetime() > user.details.creation_date.ToDatetime()


async def test_user_names_are_unique_in_the_instance_without_case(world: World) -> None:
    name = unique_name("Deploy-Bot")
    await world.machine_user(user_name=name)
    other_org = await world.org()
    for method, request in [
        ("AddMachineUser", user_pb.AddMachineUserRequest(user_name=name.lower(), name="x")),
        (
            "AddHumanUser",
            user_pb.AddHumanUserRequest(user_name=name.upper(), display_name="x", email="a@b.io"),
        ),
    ]:
        await expect_error(
            grpc.StatusCode.ALREADY_EXISTS, "USER_NAME_TAKEN", world.call(method, request, org=other_org)
        )


@pytest.mark.parametrize(
    ("request_fields", "violations"),
    [
        ({"user_name": "", "name": "n"}, {"user_name": "must not be empty"}),
        (
            {"user_name": "a b", "name": "n"},
            {"user_name": "must not contain white space or control characters"},
        ),
        ({"user_name": "x" * 201, "name": "n"}, {"user_name": "must be at most 200 characters"}),
        ({"user_name": "ok", "name": ""}, {"name": "must not be empty"}),
        ({"user_name": "ok", "name": "n" * 201}, {"name": "must be at most 200 characters"}),
        (
            {"user_name": "ok", "name": "n", "description": "d" * 501},
            {"description": "must be at most 500 characters"},
        ),
        ({"user_name": "", "name": ""}, {"user_name": "must not be empty", "name": "must not be empty"}),
    ],
)
async def test_invalid_machine_users(
    world: World, request_fields: dict[str, Any], violations: dict[str, str]
) -> None:
    request = user_pb.AddMachineUserRequest(**request_fields)
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("AddMachineUser", request))
    assert error.violations == violations


@pytest.mark.parametrize(
    ("request_fields", "violations"),
    [
        (
            {"user_name": "h", "display_name": "", "email": "h@example.com"},
            {"display_name": "must not be empty"},
        ),
        (
            {"user_name": "h", "display_name": "H", "email": "not-an-address"},
            {"email": "must be an e-mail address"},
        ),
        ({"user_name": "h", "display_name": "H", "email": ""}, {"email": "must not be empty"}),
        (
            {"user_name": "h\x00", "display_name": "H", "email": "h@example.com"},
            {"user_name": "must not contain white space or control characters"},
        ),
    ],
)
async def test_invalid_human_users(
    world: World, request_fields: dict[str, str], violations: dict[str, str]
) -> None:
    request = user_pb.AddHumanUserRequest(**request_fields)
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("AddHumanUser", request))
    assert error.violations == violations


async def test_only_an_iam_owner_adds_organisations(world: World) -> None:
    _, org_owner = await world.caller(["ORG_OWNER"])
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call("AddOrganization", org_pb.AddOrganizationRequest(name="mine"), token=org_owner),
    )
    error = await expect_error(
        INVALID, "INVALID_ARGUMENT", world.call("AddOrganization", org_pb.AddOrganizationRequest(name=" "))
    )
    assert error.violations == {"name": "must not be empty"}


async def test_org_members(world: World) -> None:
    org = await world.org()
    owner_id, owner = await world.caller(["ORG_OWNER"], org=org, home=org)
    user_id = await world.machine_user(org=org)
    add = org_pb.AddOrgMemberRequest(user_id=user_id, roles=["ORG_USER_MANAGER"])
    added = await world.call("AddOrgMember", add, token=owner)  # the owner's own organisation
    assert added.details.resource_owner == org
    await expect_error(
        grpc.StatusCode.ALREADY_EXISTS, "MEMBER_ALREADY_EXISTS", world.call("AddOrgMember", add, token=owner)
    )
    # An ORG_OWNER cannot make anyone an IAM_OWNER, itself included.
    escalate = org_pb.AddOrgMemberRequest(user_id=owner_id, roles=["IAM_OWNER"])
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call("AddOrgMember", escalate, token=owner),
    )
    # A user manager may not grant roles at all.
    manager = await world.token_for(user_id, org=org)
    other = await world.machine_user(org=org)
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            "AddOrgMember", org_pb.AddOrgMemberRequest(user_id=other, roles=["ORG_OWNER"]), token=manager
        ),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call(
            "AddOrgMember", org_pb.AddOrgMemberRequest(user_id="99", roles=["ORG_OWNER"]), token=owner
        ),
    )


@pytest.mark.parametrize(
    ("roles", "violation"),
    [
        ([], "must name at least one role"),
        (["ROOT"], "unknown roles; known roles are IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER, PROJECT_OWNER"),
    ],
)
async def test_invalid_roles(world: World, roles: list[str], violation: str) -> None:
    user_id = await world.machine_user()
    request = org_pb.AddOrgMemberRequest(user_id=user_id, roles=roles)
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("AddOrgMember", request))
    assert error.violations == {"roles": violation}


async def test_an_iam_owner_grants_iam_owner(world: World) -> None:
    user_id = await world.machine_user()
    await world.grant(user_id, ["IAM_OWNER"])
    token = await world.token_for(user_id)
    org = await world.org()
    target = await world.machine_user(org=org)
    assert (
        await world.call("AddSecret", user_pb.AddSecretRequest(user_id=target), token=token, org=org)
    ).client_id


async def test_personal_access_tokens(world: World) -> None:
    human = await world.human_user()
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_MACHINE",
        world.call("AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=human)),
    )
    past = user_pb.AddPersonalAccessTokenRequest(user_id=await world.machine_user())
    past.expiration_date.FromDatetime(datetime.now(UTC) - timedelta(seconds=1))
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("AddPersonalAccessToken", past))
    assert error.violations == {"expiration_date": "must be in the future"}
    if world.api.name not in JSON_TRANSPORTS:  # JSON cannot carry it: RFC 3339 ends at year 9999
        out_of_range = user_pb.AddPersonalAccessTokenRequest(user_id=await world.machine_user())
        out_of_range.expiration_date.seconds = 2**62
        error = await expect_error(
            INVALID, "INVALID_ARGUMENT", world.call("AddPersonalAccessToken", out_of_range)
        )
        assert error.violations == {"expiration_date": "must be a valid timestamp"}
    issued = await world.call(
        "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=await world.machine_user())
    )
    assert len(issued.token) >= 43  # 256 bits, URL-safe base64
    assert issued.details.sequence == 2


async def test_a_token_without_roles_authenticates_but_may_do_nothing(world: World) -> None:
    user_id, token = await world.caller([])
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token),
    )
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            "AddMachineUser", user_pb.AddMachineUserRequest(user_name=unique_name("x"), name="x"), token=token
        ),
    )


async def test_look_alike_user_names_are_one_name(world: World) -> None:
    """RFC 8265 (PRECIS UsernameCaseMapped, case folded): width, compatibility forms, composition
    and case do not make another user."""
    stem = unique_name("bot").replace("-", "x")
    first = await world.machine_user(user_name=f"{stem}café")
    for look_alike in (
        "".join(chr(ord(ch) + 0xFEE0) for ch in stem.upper()) + "café",  # fullwidth
        f"{stem}cafe\u0301",  # é decomposed (NFD)
        f"{stem.upper()}CAFÉ",
    ):
        await expect_error(
            grpc.StatusCode.ALREADY_EXISTS,
            "USER_NAME_TAKEN",
            world.call("AddMachineUser", user_pb.AddMachineUserRequest(user_name=look_alike, name="x")),
        )
    user = (await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=first))).user
    assert user.user_name == f"{stem}café"  # stored as given


@pytest.mark.parametrize(
    ("user_name", "violation"),
    [
        (
            "b\u043etB",
            "must not mix scripts (e.g. Latin with Cyrillic letters that look alike)",
        ),  # a Cyrillic o
        (
            "p\u0430ypal",
            "must not mix scripts (e.g. Latin with Cyrillic letters that look alike)",
        ),  # a Cyrillic a
        ("bot\u2603", "must not contain '☃' (DISALLOWED/symbols)"),
    ],
)
async def test_user_names_that_only_look_like_another_are_refused(
    world: World, user_name: str, violation: str
) -> None:
    request = user_pb.AddMachineUserRequest(user_name=user_name, name="x")
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("AddMachineUser", request))
    assert error.violations == {"user_name": violation}


async def test_names_of_one_script_or_an_allowed_mix_are_fine(world: World) -> None:
    for name in ("бот", "ボット", "bot東京", "müller"):  # Cyrillic, Katakana, Latin with Han, Latin
        await world.machine_user(user_name=unique_name(name))


# Names of one script that look like names of another: the first of each pair is made, the second
# is the same name (Unicode TS #39 skeleton). Escapes, so that a reader sees which is which.
WHOLE_SCRIPT_LOOK_ALIKES = {
    "cyrillic": ("cope{}", "\u0441\u043e\u0440\u0435{}"),  # all Cyrillic
    "greek": ("abe{}", "\u0391\u0392\u0395{}"),  # Greek capitals alpha, beta, epsilon
    "dotless-i": ("ivan{}", "\u0131van{}"),  # Latin small dotless i
    "capital-i": ("lvan{}", "Ivan{}"),  # a capital I looks like a small l
}


def look_alike_pair(kind: str, reverse: bool) -> tuple[str, str]:
    digits = str(uuid.uuid4().int)[:12]  # digits: of every script, and unlike letters
    first, second = (pattern.format(digits) for pattern in WHOLE_SCRIPT_LOOK_ALIKES[kind])
    return (second, first) if reverse else (first, second)


async def add_machine_user_every_way(world: World, user_name: str) -> list[Any]:
    """The three calls that make a machine user, each with this user name, in the world's org:
    the native AddMachineUser, ZITADEL's v1 AddMachineUser and v2 CreateUser."""
    org = await world.org()
    return [
        world.call("AddMachineUser", user_pb.AddMachineUserRequest(user_name=user_name, name="x"), org=org),
        world.call(
            "ManagementService.AddMachineUser",
            mgmt.AddMachineUserRequest(user_name=user_name, name="x"),
            org=org,
        ),
        world.call(
            "UserServiceV2.CreateUser",
            user_v2.CreateUserRequest(
                organization_id=org, username=user_name, machine=user_v2.CreateUserRequest.Machine(name="x")
            ),
        ),
    ]


@pytest.mark.parametrize("reverse", [False, True], ids=["latin-first", "latin-second"])
@pytest.mark.parametrize("kind", WHOLE_SCRIPT_LOOK_ALIKES)
async def test_whole_script_look_alikes_are_one_name(
    world: World, running: Running, kind: str, reverse: bool
) -> None:
    first, second = look_alike_pair(kind, reverse)
    user_id = await world.machine_user(user_name=first)
    for call in await add_machine_user_every_way(world, second):
        await expect_error(grpc.StatusCode.ALREADY_EXISTS, "USER_NAME_TAKEN", call)
    # The client is found by its own name, and only by it: the look-alike names no one.
    secret = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    assert secret.client_id == first
    base = f"http://127.0.0.1:{running.service.http_port}"
    assert (await exchange(base, first, secret.client_secret)).status_code == 200
    assert (await exchange(base, second, secret.client_secret)).status_code == 401
