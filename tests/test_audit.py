"""Reading the audit back: ListEvents and ListUserEvents on every transport and both stores, what
they show and to whom, the NDJSON stream for a SIEM, and (once the commands record their actors)
who did each step of SECURITY.md's incident runbook."""

import asyncio
import ipaddress
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format
from machinesecrets.v1 import audit_service_pb2 as audit_pb
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.audit import HIDDEN, PAYLOAD_FIELDS, shown_payload
from server.events.base import event_classes
from server.events.org import OrgAdded, OrgMemberAdded, SecretPolicySet
from server.events.secret import SecretRevoked, SecretRotated, SecretSet, SecretsRemoved
from server.events.token import AccessTokenAdded
from server.events.user import (
    HumanUserAdded,
    MachineUserAdded,
    PatAdded,
    PatRemoved,
    UserDeactivated,
    UserReactivated,
    UserRemoved,
)
from server.store.contract import EventFilter
from server.transport.event_stream import EVENTS_STREAM_PATH
from server.transport.revocation_endpoint import REVOKE_PATH
from tests.api import GrpcApi, exchange, expect_error
from tests.service import Running, client, own_service
from tests.test_incident_response import a_leak, run_runbook
from tests.world import World

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DOORS = ["http", "envoy"]
# One documented field set: every line of the stream, every Event of ListEvents.
EVENT_FIELDS = {
    "position", "aggregateType", "aggregateId", "sequence", "eventType", "resourceOwner",
    "creationDate", "payload", "actor",
}  # fmt: skip
ACTOR_FIELDS = {"userId", "orgId", "credentialKind", "credentialId", "requestId", "peer", "transport"}


async def all_events(
    world: World, token: str | None = None, org: str | None = None, **filters: Any
) -> list[Any]:
    pages: list[Any] = []
    page_token = ""
    while True:
        request = audit_pb.ListEventsRequest(page_size=3, page_token=page_token, **filters)
        answer = await world.call("ListEvents", request, token=token, org=org)
        pages += answer.events
        page_token = answer.next_page_token
        if not page_token:
            return pages
        assert len(pages) < 300, "the list does not end"


async def test_an_organisations_events_come_in_position_order_a_page_at_a_time(world: World) -> None:
    org = await world.org()
    owner_id, owner = await world.caller(["ORG_OWNER"], org=org, home=org)
    bot = await world.machine_user(org=org)
    human = await world.human_user(org=org)
    await world.call("AddSecret", user_pb.AddSecretRequest(user_id=bot), org=org)
    events = await all_events(world, token=owner)
    positions = [e.position for e in events]
    assert positions == sorted(set(positions)), "in position order, each once"
    assert {e.resource_owner for e in events} == {org}
    assert [e.event_type for e in events] == [
        OrgAdded.TYPE,
        MachineUserAdded.TYPE,  # the owner
        OrgMemberAdded.TYPE,
        PatAdded.TYPE,
        MachineUserAdded.TYPE,  # bot
        HumanUserAdded.TYPE,
        SecretSet.TYPE,
    ]
    assert [e.aggregate_id for e in events[1:]] == [owner_id, org, owner_id, bot, human, bot]
    assert json_format.MessageToDict(events[2].payload) == {"user_id": owner_id, "roles": ["ORG_OWNER"]}
    # Filters: one aggregate, one type, a time range, after a position.
    mine = await all_events(world, token=owner, aggregate_type="user", aggregate_id=bot)
    assert [e.event_type for e in mine] == [MachineUserAdded.TYPE, SecretSet.TYPE]
    assert [e.sequence for e in mine] == [1, 2]
    typed = await all_events(world, token=owner, event_type=MachineUserAdded.TYPE)
    assert [e.aggregate_id for e in typed] == [owner_id, bot]
    since = events[4].creation_date
    later = await all_events(world, token=owner, since=since)
    assert [e.position for e in later] == [
        e.position for e in events if e.creation_date.ToDatetime() >= since.ToDatetime()
    ]
    before = await all_events(world, token=owner, until=since)
    assert [e.position for e in before + later] == positions
    after = await all_events(world, token=owner, after_position=events[3].position)
    assert [e.position for e in after] == positions[4:]
    assert await all_events(world, token=owner, actor_user_id=unknown_id()) == []


def unknown_id() -> str:
    return "987654321098765"


async def test_page_tokens_and_filters_are_checked(world: World) -> None:
    org = await world.org()
    _, owner = await world.caller(["ORG_OWNER"], org=org, home=org)
    first = await world.call("ListEvents", audit_pb.ListEventsRequest(page_size=1), token=owner)
    assert first.next_page_token
    # A token is for its own filters.
    other = audit_pb.ListEventsRequest(
        page_size=1, page_token=first.next_page_token, event_type=OrgAdded.TYPE
    )
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListEvents", other, token=owner))
    assert set(error.violations) == {"page_token"}
    bad = audit_pb.ListEventsRequest(aggregate_id="1", actor_user_id="not-an-id", page_size=101)
    bad.since.FromDatetime(datetime(2030, 1, 1, tzinfo=UTC))
    bad.until.FromDatetime(datetime(2020, 1, 1, tzinfo=UTC))
    error = await expect_error(INVALID, "INVALID_ARGUMENT", world.call("ListEvents", bad, token=owner))
    assert set(error.violations) == {"aggregate_id", "actor_user_id", "page_size", "until"}


async def test_an_org_owner_reads_no_other_organisations_events_by_any_filter(world: World) -> None:
    mine, theirs = await world.org(), await world.org()
    _, owner = await world.caller(["ORG_OWNER"], org=mine, home=mine)
    their_user, _ = await world.caller(["ORG_OWNER"], org=theirs, home=theirs)
    await world.call("AddSecret", user_pb.AddSecretRequest(user_id=their_user), org=theirs)
    filters: list[dict[str, Any]] = [
        {},
        {"aggregate_type": "user", "aggregate_id": their_user},
        {"aggregate_type": "org", "aggregate_id": theirs},
        {"aggregate_type": "org"},
        {"actor_user_id": their_user},
        {"event_type": SecretSet.TYPE},
        {"after_position": 1},
    ]
    for given in filters:
        for org in (None, mine):
            answered = await all_events(world, token=owner, org=org, **given)
            assert {e.resource_owner for e in answered} <= {mine}, given
    for given in filters[1:3]:
        assert await all_events(world, token=owner, **given) == [], given
    # Their organisation itself is closed to it, and audit.read is an owner's.
    await expect_error(
        DENIED,
        "PERMISSION_DENIED",
        world.call("ListEvents", audit_pb.ListEventsRequest(), token=owner, org=theirs),
    )
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=mine, home=mine)
    error = await expect_error(
        DENIED, "PERMISSION_DENIED", world.call("ListEvents", audit_pb.ListEventsRequest(), token=manager)
    )
    assert error.metadata == {"permission": "audit.read"}
    # An IAM_OWNER reads the instance's events, whichever organisation it names.
    theirs_seen = await all_events(world, aggregate_type="user", aggregate_id=their_user, org=mine)
    assert [e.event_type for e in theirs_seen] == [
        MachineUserAdded.TYPE,
        PatAdded.TYPE,
        SecretSet.TYPE,
    ]


async def test_a_users_history_is_newest_first_with_its_access_tokens(world: World, running: Running) -> None:
    org = await world.org()
    user_id = await world.machine_user(org=org)
    pat = await world.call(
        "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id), org=org
    )
    issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id), org=org)
    answer = await exchange(
        f"http://127.0.0.1:{running.service.http_port}", issued.client_id, issued.client_secret
    )
    assert answer.status_code == 200, answer.text
    await world.call(
        "RemovePersonalAccessToken",
        user_pb.RemovePersonalAccessTokenRequest(user_id=user_id, token_id=pat.token_id),
        org=org,
    )
    expected = [
        PatRemoved.TYPE,
        AccessTokenAdded.TYPE,
        SecretSet.TYPE,
        PatAdded.TYPE,
        MachineUserAdded.TYPE,
    ]
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    history = await world.call(
        "ListUserEvents", audit_pb.ListUserEventsRequest(user_id=user_id), token=manager
    )
    assert [e.event_type for e in history.events] == expected
    assert not history.next_page_token
    token_event = history.events[1]
    assert token_event.aggregate_type == "token"
    assert dict(token_event.payload)["user_id"] == user_id
    # A page at a time, newest first.
    pages, page_token = [], ""
    while True:
        request = audit_pb.ListUserEventsRequest(user_id=user_id, page_size=2, page_token=page_token)
        answer_page = await world.call("ListUserEvents", request, org=org)
        pages.append([e.event_type for e in answer_page.events])
        page_token = answer_page.next_page_token
        if not page_token:
            break
    assert pages == [expected[:2], expected[2:4], expected[4:]]
    # A removed user's history stays; a user of another organisation, or none, is not found.
    await world.call("RemoveUser", user_pb.RemoveUserRequest(user_id=user_id), org=org)
    after = await world.call("ListUserEvents", audit_pb.ListUserEventsRequest(user_id=user_id), org=org)
    assert [e.event_type for e in after.events] == [UserRemoved.TYPE, *expected]
    stranger = await world.machine_user()
    for unseen in (stranger, unknown_id()):
        await expect_error(
            NOT_FOUND,
            "USER_NOT_FOUND",
            world.call("ListUserEvents", audit_pb.ListUserEventsRequest(user_id=unseen), token=manager),
        )


def test_the_payload_table_names_every_event_type_and_hides_every_hash_and_lookup_key() -> None:
    written = {event_class.TYPE for event_class in event_classes()}
    assert written == set(PAYLOAD_FIELDS)
    for event_type, fields in PAYLOAD_FIELDS.items():
        for field, shown in fields.items():
            if "hash" in field or "lookup" in field:
                assert shown is HIDDEN, (event_type, field)
    secret = {"secret_id": "1", "hash": "$2b$04$x", "lookup": "abcd", "description": "", "expires_at": 0}
    assert shown_payload(SecretSet.TYPE, secret) == {
        "secret_id": "1",
        "description": "",
        "expires_at": "1970-01-01T00:00:00Z",
    }
    # A field or an event type the table does not name is not shown.
    assert shown_payload(PatRemoved.TYPE, {"token_id": "1", "new_field": "x"}) == {"token_id": "1"}
    assert shown_payload("user.something.new", {"hash": "x", "text": "y"}) == {}
    policy = {"max_lifetime": 86_400_000_000, "default_lifetime": 1_500_000, "max_grace_period": None,
              "max_secrets_per_user": 3}  # fmt: skip
    assert shown_payload(SecretPolicySet.TYPE, policy) == {
        "max_lifetime": "86400s",
        "default_lifetime": "1.5s",
        "max_grace_period": None,
        "max_secrets_per_user": "3",
    }


async def test_no_answer_shows_a_hash_or_a_lookup_key(world: World, running: Running) -> None:
    """Every kind of event the service writes, then every way to read them: no hidden field, and
    none of the hashes and lookup keys the store holds, in any answer."""
    org = await world.org()
    user_id = await world.machine_user(org=org)
    base = f"http://127.0.0.1:{running.service.http_port}"
    await world.call(
        "AddPersonalAccessToken", user_pb.AddPersonalAccessTokenRequest(user_id=user_id), org=org
    )
    issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id), org=org)
    assert (await exchange(base, issued.client_id, issued.client_secret)).status_code == 200
    created = await world.call("CreateSecret", user_pb.CreateSecretRequest(user_id=user_id), org=org)
    rotation = user_pb.RotateSecretRequest(user_id=user_id)
    rotation.grace_period.FromSeconds(60)
    rotated = await world.call("RotateSecret", rotation, org=org)
    await world.call(
        "DeleteSecret", user_pb.DeleteSecretRequest(user_id=user_id, secret_id=created.secret_id), org=org
    )
    async with httpx.AsyncClient() as http:
        assert (
            await http.post(base + REVOKE_PATH, json={"secrets": [rotated.client_secret]})
        ).status_code == 200
    await world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user_id), org=org)
    await world.call("SetSecretPolicy", org_pb.SetSecretPolicyRequest(), org=org)
    answers = [
        *(await all_events(world, org=org, aggregate_type="user", aggregate_id=user_id)),
        *(await all_events(world, org=org, aggregate_type="org", aggregate_id=org)),
        *(
            await world.call("ListUserEvents", audit_pb.ListUserEventsRequest(user_id=user_id), org=org)
        ).events,
    ]
    shown = {e.event_type for e in answers}
    assert {PatAdded.TYPE, AccessTokenAdded.TYPE, SecretRotated.TYPE,
            SecretRevoked.TYPE, SecretsRemoved.TYPE} <= shown  # fmt: skip
    text = " ".join(json_format.MessageToJson(e) for e in answers)
    for name in ("hash", "tokenHash", "token_hash", "lookup"):
        assert f'"{name}"' not in text
    held = await running.service.store.audit_events(EventFilter(org), 0, 1000)
    secrets = [
        str(value)
        for e in held
        for field, value in e.event.event.payload().items()
        if PAYLOAD_FIELDS[e.event.type].get(field, HIDDEN) is HIDDEN and value
    ]
    assert len(secrets) >= 6  # the PAT's and the token's hashes; the secrets' hashes and lookups
    for value in secrets:
        assert value not in text


# -- the stream ---------------------------------------------------------------------------------


@pytest.fixture
async def grpc_world(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


def base_url(running: Running, door: str) -> str:
    port = running.service.http_port if door == "http" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


async def read_stream(
    http: httpx.AsyncClient, url: str, token: str, after: int, limit: int
) -> list[dict[str, Any]]:
    answer = await http.get(
        url + EVENTS_STREAM_PATH,
        params={"after": str(after), "limit": str(limit)},
        headers={"authorization": f"Bearer {token}"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-ndjson"
    assert answer.text == "" or answer.text.endswith("\n")
    return [json.loads(line) for line in answer.text.splitlines()]


@pytest.mark.parametrize("door", DOORS)
async def test_a_consumer_that_stops_and_resumes_loses_and_repeats_no_event(
    grpc_world: World, running: Running, door: str
) -> None:
    world = grpc_world
    org = await world.org()
    _, owner = await world.caller(["ORG_OWNER"], org=org, home=org)
    elsewhere = await world.org()

    async def write() -> None:  # while the consumer reads, in this organisation and another
        for _ in range(12):
            await asyncio.gather(world.machine_user(org=org), world.machine_user(org=elsewhere))

    writer = asyncio.create_task(write())
    read: list[dict[str, Any]] = []
    after = 0
    async with httpx.AsyncClient(timeout=30) as http:
        while True:
            done = writer.done()
            lines = await read_stream(http, base_url(running, door), owner, after, 5)
            assert len(lines) <= 5
            read += lines
            if lines:
                after = int(lines[-1]["position"])  # where it stopped: it resumes there
            elif done:
                break
    await writer
    positions = [int(line["position"]) for line in read]
    assert positions == sorted(set(positions)), "no event repeated, none out of order"
    listed = await all_events(world, token=owner)
    assert positions == [e.position for e in listed], "no event lost"
    assert len(positions) == 4 + 12  # the org, its owner (user, membership, PAT) and 12 users
    for line in read:
        assert set(line) == EVENT_FIELDS
        assert set(line["actor"]) == ACTOR_FIELDS
        assert line["resourceOwner"] == org
    assert read[0]["eventType"] == OrgAdded.TYPE


@pytest.mark.parametrize("door", DOORS)
async def test_the_stream_is_authenticated_authorised_and_bounded(
    grpc_world: World, running: Running, door: str
) -> None:
    world = grpc_world
    org = await world.org()
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    url = base_url(running, door) + EVENTS_STREAM_PATH
    admin = {"authorization": f"Bearer {running.admin_token}"}
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(url)
        assert (answer.status_code, answer.json()["code"]) == (401, 16)
        answer = await http.get(url, headers={"authorization": f"Bearer {manager}"})
        assert answer.status_code == 403
        for query, field in (("after=x", "after"), ("limit=101", "limit"), ("limit=0", "limit"),
                             ("other=1", "other"), ("after=1&after=2", "after")):  # fmt: skip
            answer = await http.get(f"{url}?{query}", headers=admin)
            assert answer.status_code == 400, query
            violations = answer.json()["details"][-1]["fieldViolations"]
            assert field in {v["field"] for v in violations}, (query, violations)
        answer = await http.post(url, headers=admin)
        assert answer.status_code in (404, 405)
        # The instance's events for an IAM_OWNER, 100 a request at most.
        lines = await read_stream(http, base_url(running, door), running.admin_token, 0, 100)
        assert 0 < len(lines) <= 100
        answer = await http.get(url, headers=admin)
        assert len(answer.text.splitlines()) == min(100, len(await running.service.store.chain_rows(0, 101)))


# -- who did each step of the runbook ------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_every_step_of_the_runbook_shows_who_did_it(backend: str, tmp_path: Any) -> None:
    async with own_service(backend, tmp_path, envoy=True) as running:
        api = client("envoy-json", running.service)
        try:
            world = await World.create(api, running.admin_token)
            admin = await running.service.store.user_by_name("admin")
            assert admin is not None
            [admin_pat] = (
                await world.call(
                    "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=admin.id)
                )
            ).tokens
            deployer, *_ = await a_leak(world, running)
            await run_runbook(running, deployer)
            history = (
                await world.call(
                    "ListUserEvents", audit_pb.ListUserEventsRequest(user_id=deployer, page_size=100)
                )
            ).events[::-1]
            steps = [(e.event_type, e.actor) for e in history]
            # The address Envoy saw (for a call from this machine's loopback, Envoy names the
            # machine's own address): the one the test's own calls through it came from.
            set_secret = next(e for e in history if e.event_type == SecretSet.TYPE)
            ipaddress.ip_address(set_secret.actor.peer)
            by_admin = audit_pb.Actor(
                user_id=admin.id,
                org_id=admin.org_id,
                credential_kind="pat",
                credential_id=admin_pat.token_id,
                peer=set_secret.actor.peer,
                transport="json",
            )
            kinds = [kind for kind, _ in steps]
            assert kinds[-5:] == [
                UserDeactivated.TYPE, PatRemoved.TYPE, PatRemoved.TYPE,
                SecretsRemoved.TYPE, UserReactivated.TYPE,
            ]  # fmt: skip
            for _, actor in steps[-5:]:  # the runbook, by the admin's PAT, from its address, through Envoy
                assert re.fullmatch(r"[0-9a-f-]{36}", actor.request_id)
                actor.request_id = ""
                assert actor == by_admin
            # The leak: the access token by the client's secret at the token endpoint, and the
            # attacker's PAT by that access token.
            token_event = next(e for e in history if e.event_type == AccessTokenAdded.TYPE)
            assert (token_event.actor.user_id, token_event.actor.credential_kind) == (deployer, "secret")
            assert token_event.actor.transport == "oauth"
            attacker_pat = [actor for kind, actor in steps if kind == PatAdded.TYPE][-1]
            assert (attacker_pat.user_id, attacker_pat.credential_kind) == (deployer, "access_token")
            assert attacker_pat.credential_id == token_event.actor.credential_id
        finally:
            await api.close()
