"""A user's metadata over every transport and store, under its native names and ZITADEL's
(management v1, user v2): keys set to byte values, listed, read, removed, within their bounds;
audited with their actor; and told to an API that introspects a token whose scope asks for
`urn:zitadel:iam:user:metadata`."""

import base64

import grpc
import httpx
import pytest
from machinesecrets.v1 import audit_service_pb2 as audit_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.filter.v2 import filter_pb2
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.metadata.v1 import metadata_pb2 as metadata_v1
from zitadel.metadata.v2 import metadata_pb2 as metadata_v2
from zitadel.user.v2 import user_service_pb2 as user_v2
from zitadel.v1 import object_pb2 as object_v1

from server.limits import MAX_METADATA_KEYS, MAX_METADATA_VALUE_BYTES
from tests.api import GrpcApi, expect_error
from tests.service import Running
from tests.test_introspection import api_project, audience, introspect, machine, token
from tests.world import World

BINARY = bytes(range(256))  # every byte, so that base64 in JSON is proved both ways


def entry(key: str, value: bytes) -> user_pb.UserMetadata:
    return user_pb.UserMetadata(key=key, value=value)


async def listed(world: World, user_id: str) -> dict[str, bytes]:
    answer = await world.call("ListUserMetadata", user_pb.ListUserMetadataRequest(user_id=user_id))
    return {m.key: m.value for m in answer.metadata}


async def test_keys_are_set_listed_and_removed(world: World) -> None:
    user_id = await world.machine_user()
    set_request = user_pb.SetUserMetadataRequest(
        user_id=user_id, metadata=[entry("tenant", b"acme"), entry("blob", BINARY), entry("ünï €", b"x")]
    )
    answer = await world.call("SetUserMetadata", set_request)
    assert answer.details.sequence == 4  # the user's event 1, then one event per key
    assert answer.details.resource_owner == world.home_org
    assert await listed(world, user_id) == {"blob": BINARY, "tenant": b"acme", "ünï €": b"x"}
    full = await world.call("ListUserMetadata", user_pb.ListUserMetadataRequest(user_id=user_id))
    assert [m.key for m in full.metadata] == ["blob", "tenant", "ünï €"]  # code-point order
    assert all(m.HasField("creation_date") and m.HasField("change_date") for m in full.metadata)
    # A value replaced; a value set again as it is changes nothing.
    again = user_pb.SetUserMetadataRequest(user_id=user_id, metadata=[entry("tenant", b"globex")])
    assert (await world.call("SetUserMetadata", again)).details.sequence == 5
    assert (await world.call("SetUserMetadata", again)).details.sequence == 5
    assert (await listed(world, user_id))["tenant"] == b"globex"
    removed = await world.call(
        "RemoveUserMetadata", user_pb.RemoveUserMetadataRequest(user_id=user_id, keys=["blob", "ünï €"])
    )
    assert removed.details.sequence == 7
    assert await listed(world, user_id) == {"tenant": b"globex"}
    # All or none: one key the user lacks removes nothing.
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "METADATA_NOT_FOUND",
        world.call(
            "RemoveUserMetadata", user_pb.RemoveUserMetadataRequest(user_id=user_id, keys=["tenant", "no"])
        ),
    )
    assert await listed(world, user_id) == {"tenant": b"globex"}
    # A human user has metadata too.
    human = await world.human_user()
    await world.call(
        "SetUserMetadata", user_pb.SetUserMetadataRequest(user_id=human, metadata=[entry("k", b"v")])
    )
    assert await listed(world, human) == {"k": b"v"}


async def test_the_bounds(world: World) -> None:
    user_id = await world.machine_user()

    def setting(*entries: user_pb.UserMetadata) -> user_pb.SetUserMetadataRequest:
        return user_pb.SetUserMetadataRequest(user_id=user_id, metadata=list(entries))

    for refused in (
        setting(),
        setting(entry("", b"v")),
        setting(entry("k" * 201, b"v")),
        setting(entry("a\x00b", b"v")),
        setting(entry("k", b"")),
        setting(entry("k", b"v" * (MAX_METADATA_VALUE_BYTES + 1))),
        setting(entry("k", b"1"), entry("k", b"2")),
        setting(*(entry(f"k{i}", b"v") for i in range(MAX_METADATA_KEYS + 1))),
    ):
        await expect_error(
            grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT", world.call("SetUserMetadata", refused)
        )
    await world.call("SetUserMetadata", setting(entry("k", b"v" * MAX_METADATA_VALUE_BYTES)))
    await world.call(
        "SetUserMetadata", setting(*(entry(f"k{i}", b"v") for i in range(MAX_METADATA_KEYS - 1)))
    )
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "METADATA_LIMIT",
        world.call("SetUserMetadata", setting(entry("more", b"v"))),
    )
    assert len(await listed(world, user_id)) == MAX_METADATA_KEYS
    for missing in ("", "123"):
        await expect_error(
            grpc.StatusCode.NOT_FOUND if missing else grpc.StatusCode.INVALID_ARGUMENT,
            "USER_NOT_FOUND" if missing else "INVALID_ARGUMENT",
            world.call("ListUserMetadata", user_pb.ListUserMetadataRequest(user_id=missing)),
        )


async def test_zitadels_management_v1_names(world: World) -> None:
    user_id = await world.machine_user()
    one = await world.call(
        "ManagementService.SetUserMetadata",
        mgmt.SetUserMetadataRequest(id=user_id, key="tenant", value=b"acme"),
    )
    assert one.id == user_id
    assert one.details.sequence == 2
    bulk = mgmt.BulkSetUserMetadataRequest(
        id=user_id,
        metadata=[
            mgmt.BulkSetUserMetadataRequest.Metadata(key="team", value=b"payments"),
            mgmt.BulkSetUserMetadataRequest.Metadata(key="blob", value=BINARY),
        ],
    )
    assert (await world.call("ManagementService.BulkSetUserMetadata", bulk)).details.sequence == 4
    everything = await world.call(
        "ManagementService.ListUserMetadata", mgmt.ListUserMetadataRequest(id=user_id)
    )
    assert everything.details.total_result == 3
    assert {m.key: m.value for m in everything.result} == {
        "tenant": b"acme",
        "team": b"payments",
        "blob": BINARY,
    }
    assert all(m.details.resource_owner == world.home_org for m in everything.result)
    starting = metadata_v1.MetadataQuery(
        key_query=metadata_v1.MetadataKeyQuery(
            key="TE", method=object_v1.TEXT_QUERY_METHOD_STARTS_WITH_IGNORE_CASE
        )
    )
    filtered = await world.call(
        "ManagementService.ListUserMetadata", mgmt.ListUserMetadataRequest(id=user_id, queries=[starting])
    )
    assert [m.key for m in filtered.result] == ["team", "tenant"]
    paged = await world.call(
        "ManagementService.ListUserMetadata",
        mgmt.ListUserMetadataRequest(id=user_id, query=object_v1.ListQuery(offset=1, limit=1)),
    )
    assert ([m.key for m in paged.result], paged.details.total_result) == (["team"], 3)
    got = await world.call(
        "ManagementService.GetUserMetadata", mgmt.GetUserMetadataRequest(id=user_id, key="blob")
    )
    assert (got.metadata.key, got.metadata.value) == ("blob", BINARY)
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "METADATA_NOT_FOUND",
        world.call("ManagementService.GetUserMetadata", mgmt.GetUserMetadataRequest(id=user_id, key="none")),
    )
    await world.call(
        "ManagementService.RemoveUserMetadata", mgmt.RemoveUserMetadataRequest(id=user_id, key="blob")
    )
    await world.call(
        "ManagementService.BulkRemoveUserMetadata",
        mgmt.BulkRemoveUserMetadataRequest(id=user_id, keys=["team"]),
    )
    assert await listed(world, user_id) == {"tenant": b"acme"}


async def test_zitadels_user_v2_names(world: World) -> None:
    user_id = await world.machine_user()
    set_request = user_v2.SetUserMetadataRequest(
        user_id=user_id,
        metadata=[user_v2.Metadata(key="tenant", value=b"acme"), user_v2.Metadata(key="blob", value=BINARY)],
    )
    assert (await world.call("UserServiceV2.SetUserMetadata", set_request)).HasField("set_date")
    search = user_v2.ListUserMetadataRequest(
        user_id=user_id,
        filters=[
            metadata_v2.MetadataSearchFilter(
                key_filter=metadata_v2.MetadataKeyFilter(
                    key="ten", method=filter_pb2.TEXT_FILTER_METHOD_CONTAINS
                )
            )
        ],
    )
    found = await world.call("UserServiceV2.ListUserMetadata", search)
    assert [(m.key, m.value) for m in found.metadata] == [("tenant", b"acme")]
    assert found.pagination.total_result == 1
    everything = await world.call(
        "UserServiceV2.ListUserMetadata", user_v2.ListUserMetadataRequest(user_id=user_id)
    )
    assert {m.key: m.value for m in everything.metadata} == {"tenant": b"acme", "blob": BINARY}
    deleted = await world.call(
        "UserServiceV2.DeleteUserMetadata",
        user_v2.DeleteUserMetadataRequest(user_id=user_id, keys=["tenant", "blob"]),
    )
    assert deleted.HasField("deletion_date")
    assert await listed(world, user_id) == {}
    # v2 finds the organisation from the user: one the caller cannot read is not found.
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call("UserServiceV2.ListUserMetadata", user_v2.ListUserMetadataRequest(user_id="123")),
    )


async def test_who_may_write_it(world: World) -> None:
    """user.write, and the escalation rule: an API may trust a user's metadata, so a caller may
    write it only for users whose every permission it holds itself."""
    owner = await world.machine_user()
    await world.grant(owner, ["ORG_OWNER"])
    _, manager_token = await world.caller(["ORG_USER_MANAGER"])
    _, nobody_token = await world.caller([])
    plain = await world.machine_user()
    setting = user_pb.SetUserMetadataRequest(user_id=owner, metadata=[entry("k", b"v")])
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call("SetUserMetadata", setting, token=manager_token),
    )
    setting_plain = user_pb.SetUserMetadataRequest(user_id=plain, metadata=[entry("k", b"v")])
    await world.call("SetUserMetadata", setting_plain, token=manager_token)
    for method, request in (
        ("SetUserMetadata", setting_plain),
        ("ListUserMetadata", user_pb.ListUserMetadataRequest(user_id=plain)),
    ):
        await expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
            world.call(method, request, token=nobody_token),
        )
    # Another organisation's user is as absent as a missing one.
    other_org = await world.org()
    theirs = await world.machine_user(org=other_org)
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call(
            "SetUserMetadata", user_pb.SetUserMetadataRequest(user_id=theirs, metadata=[entry("k", b"v")])
        ),
    )
    # The audit names who set it.
    events = (
        await world.call("ListUserEvents", audit_pb.ListUserEventsRequest(user_id=plain, page_size=100))
    ).events
    [set_event] = [e for e in events if e.event_type == "user.metadata.set"]
    assert set_event.actor.credential_kind == "pat"
    assert set_event.payload.fields["key"].string_value == "k"


@pytest.fixture
async def admin(running: Running) -> World:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    return await World.create(api, running.admin_token)


@pytest.mark.parametrize("door", ["direct", "envoy"])
async def test_introspection_tells_the_metadata_the_scope_asks_for(
    admin: World, running: Running, door: str
) -> None:
    port = running.service.http_port if door == "direct" else running.service.envoy_port
    base = f"http://127.0.0.1:{port}"
    app = await api_project(admin)
    m = await machine(admin)
    asked = await token(
        base, m, audience(app), "urn:zitadel:iam:user:metadata", "urn:zitadel:iam:user:resourceowner"
    )
    not_asked = await token(base, m, audience(app))
    assert "urn:zitadel:iam:user:metadata" not in await introspect(base, app, asked)  # none yet
    await admin.call(
        "SetUserMetadata",
        user_pb.SetUserMetadataRequest(
            user_id=m.user_id, metadata=[entry("tenant", b"acme"), entry("blob", BINARY)]
        ),
    )
    claims = await introspect(base, app, asked)
    assert claims["urn:zitadel:iam:user:metadata"] == {
        "blob": base64.b64encode(BINARY).decode(),
        "tenant": base64.b64encode(b"acme").decode(),
    }
    assert claims["urn:zitadel:iam:user:resourceowner:id"] == admin.home_org
    assert "urn:zitadel:iam:user:metadata" not in await introspect(base, app, not_asked)
    # As it is when introspected: a key removed is told no more.
    await admin.call(
        "RemoveUserMetadata", user_pb.RemoveUserMetadataRequest(user_id=m.user_id, keys=["blob"])
    )
    assert (await introspect(base, app, asked))["urn:zitadel:iam:user:metadata"] == {
        "tenant": base64.b64encode(b"acme").decode()
    }
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(base + "/.well-known/openid-configuration")).json()
    assert "urn:zitadel:iam:user:metadata" in discovery["scopes_supported"]
    await admin.api.close()
