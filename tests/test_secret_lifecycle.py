"""Several secrets per machine user: create, list, delete, rotate with a grace period, expiry, the
organisation's policy, and how the token endpoint treats them. On every transport and both stores.
(Time passing, and random sequences of all of it: test_secret_lifecycle_model.py. Reporting a
leaked secret: test_revocation.py.)"""

import re
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import bcrypt
import grpc
import httpx
import psycopg
import pytest
from google.protobuf import duration_pb2, json_format, timestamp_pb2
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.ids import IdGenerator
from server.domain.secret_format import random_characters
from server.events.base import AGGREGATE_USER, NewEvent
from server.events.secret import SecretAdded, SecretDeleted, SecretRotated, SecretSet
from server.events.user import MachineUserAdded, PatAdded
from tests.api import ApiError, exchange, expect_error
from tests.service import Running
from tests.world import World, unique_name

SECRET = re.compile(r"msk_[0-9A-Za-z]{61}")
INVALID = grpc.StatusCode.INVALID_ARGUMENT
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
ACTIVE, EXPIRED = user_pb.SECRET_STATE_ACTIVE, user_pb.SECRET_STATE_EXPIRED


class Machine:
    """A machine user of the world's home organisation, and its user name (the client id)."""

    def __init__(self, world: World, running: Running, user_id: str, name: str) -> None:
        self.world, self.running, self.id, self.name = world, running, user_id, name

    @classmethod
    async def create(cls, world: World, running: Running) -> "Machine":
        name = unique_name("rotating")
        return cls(world, running, await world.machine_user(org=world.home_org, user_name=name), name)

    async def call(self, method: str, request: Any) -> Any:
        return await self.world.call(method, request, org=self.world.home_org)

    async def create_secret(self, **fields: Any) -> user_pb.CreateSecretResponse:
        answer: user_pb.CreateSecretResponse = await self.call(
            "CreateSecret", user_pb.CreateSecretRequest(user_id=self.id, **fields)
        )
        return answer

    async def rotate(self, grace: timedelta, **fields: Any) -> user_pb.RotateSecretResponse:
        span = duration_pb2.Duration()
        span.FromTimedelta(grace)
        answer: user_pb.RotateSecretResponse = await self.call(
            "RotateSecret", user_pb.RotateSecretRequest(user_id=self.id, grace_period=span, **fields)
        )
        return answer

    async def listed(self) -> list[user_pb.Secret]:
        answer: user_pb.ListSecretsResponse = await self.call(
            "ListSecrets", user_pb.ListSecretsRequest(user_id=self.id)
        )
        return list(answer.secrets)

    async def token(self, secret: str) -> httpx.Response:
        return await exchange(f"http://127.0.0.1:{self.running.service.http_port}", self.name, secret)

    async def works(self, secret: str) -> bool:
        answer = await self.token(secret)
        if answer.status_code != 200:
            assert (answer.status_code, answer.json()["error"]) == (401, "invalid_client"), answer.text
        return answer.status_code == 200

    async def token_works(self, access_token: str) -> bool:
        """Whether an access token still authenticates: the machine user may not read users, so a
        live token is PERMISSION_DENIED and a dead one UNAUTHENTICATED."""
        request = user_pb.GetUserByIDRequest(user_id=self.id)
        with pytest.raises(ApiError) as refused:
            await self.world.call("GetUserByID", request, token=access_token)
        assert refused.value.code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
        return refused.value.code == grpc.StatusCode.PERMISSION_DENIED

    async def event_types(self) -> list[str]:
        return [e.type for e in await self.running.service.store.events(AGGREGATE_USER, self.id)]


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


def when(value: timestamp_pb2.Timestamp) -> datetime:
    return value.ToDatetime(UTC)


async def token_rows(running: Running, secret_id: str) -> int:
    """How many access-token rows name the secret (raw SQL: no read of the store answers it)."""
    query = "SELECT COUNT(*) FROM tokens WHERE secret_id = ?"
    if running.backend == "sqlite":
        with sqlite3.connect(running.db_path) as db:
            return int(db.execute(query, (secret_id,)).fetchone()[0])
    with psycopg.connect(running.config.database_url) as db:
        return int(db.execute(query.replace("?", "%s"), (secret_id,)).fetchone()[0])  # type: ignore[index]


async def has_secret(world: World, user_id: str) -> bool:
    user: user_pb.GetUserByIDResponse = await world.call(
        "GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id)
    )
    return user.user.has_secret


async def set_policy(world: World, **fields: Any) -> None:
    policy = org_pb.SecretPolicy(max_secrets_per_user=fields.pop("max_secrets_per_user", None))
    for name, span in fields.items():
        getattr(policy, name).FromTimedelta(span)
    await world.call("SetSecretPolicy", org_pb.SetSecretPolicyRequest(policy=policy), org=world.home_org)


async def test_secrets_live_side_by_side_and_are_listed_without_their_values(
    world: World, running: Running
) -> None:
    bot = await Machine.create(world, running)
    before = datetime.now(UTC)
    first = await bot.create_secret(description="prod cluster")
    second = await bot.create_secret()
    assert SECRET.fullmatch(first.client_secret)
    assert SECRET.fullmatch(second.client_secret)
    assert (first.client_id, second.client_id) == (bot.name, bot.name)
    assert first.secret_id != second.secret_id
    assert (first.details.sequence, second.details.sequence) == (2, 3)
    assert not first.HasField("expiration_date")  # no policy: it never expires
    assert await bot.works(first.client_secret)
    assert await bot.works(second.client_secret)

    listed = await bot.listed()
    assert [s.secret_id for s in listed] == [first.secret_id, second.secret_id]
    assert [s.hint for s in listed] == [first.client_secret[4:8], second.client_secret[4:8]]
    assert [s.description for s in listed] == ["prod cluster", ""]
    assert all(s.state == ACTIVE and not s.HasField("expiration_date") for s in listed)
    assert before - timedelta(seconds=1) <= when(listed[0].creation_date) <= datetime.now(UTC)
    shown = json_format.MessageToJson(user_pb.ListSecretsResponse(secrets=listed))
    assert first.client_secret[8:] not in shown
    assert "$2b$" not in shown
    assert await bot.event_types() == [MachineUserAdded.TYPE, *[SecretAdded.TYPE] * 2]
    user: user_pb.GetUserByIDResponse = await world.call(
        "GetUserByID", user_pb.GetUserByIDRequest(user_id=bot.id)
    )
    assert user.user.has_secret


async def test_last_use_is_noted_once_a_minute(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    issued = await bot.create_secret()
    assert not (await bot.listed())[0].HasField("last_used")
    before = datetime.now(UTC)
    assert await bot.works(issued.client_secret)
    [used] = await bot.listed()
    assert before - timedelta(seconds=1) <= when(used.last_used) <= datetime.now(UTC)
    assert await bot.works(issued.client_secret)
    assert (await bot.listed())[0].last_used == used.last_used  # coarse: no write per request


async def test_deleting_one_secret_ends_it_and_its_tokens_only(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    kept, gone = await bot.create_secret(), await bot.create_secret()
    kept_token = (await bot.token(kept.client_secret)).json()["access_token"]
    gone_token = (await bot.token(gone.client_secret)).json()["access_token"]
    deleted: user_pb.DeleteSecretResponse = await world.call(
        "DeleteSecret", user_pb.DeleteSecretRequest(user_id=bot.id, secret_id=gone.secret_id)
    )
    assert deleted.details.sequence == 4
    assert not await bot.works(gone.client_secret)
    assert not await bot.token_works(gone_token)
    assert await bot.works(kept.client_secret)
    assert await bot.token_works(kept_token)
    assert [s.secret_id for s in await bot.listed()] == [kept.secret_id]
    await expect_error(
        NOT_FOUND,
        "SECRET_NOT_FOUND",
        world.call("DeleteSecret", user_pb.DeleteSecretRequest(user_id=bot.id, secret_id=gone.secret_id)),
    )
    # A secret of another user is not found through this one.
    other = await Machine.create(world, running)
    theirs = await other.create_secret()
    request = user_pb.DeleteSecretRequest(user_id=bot.id, secret_id=theirs.secret_id)
    await expect_error(NOT_FOUND, "SECRET_NOT_FOUND", world.call("DeleteSecret", request))
    assert await other.works(theirs.client_secret)
    assert (await bot.event_types())[-1] == SecretDeleted.TYPE


async def test_rotation_with_a_grace_period_keeps_the_old_secret_until_it_ends(
    world: World, running: Running
) -> None:
    bot = await Machine.create(world, running)
    soon = datetime.now(UTC) + timedelta(minutes=30)
    old, due_sooner = await bot.create_secret(), await bot.create_secret(expiration_date=stamp(soon))
    started = datetime.now(UTC)
    rotated = await bot.rotate(timedelta(hours=1), description="next")
    assert SECRET.fullmatch(rotated.client_secret)
    for secret in (old, due_sooner, rotated):
        assert await bot.works(secret.client_secret)
    by_id = {s.secret_id: s for s in await bot.listed()}
    ends = when(by_id[old.secret_id].expiration_date)
    assert (
        started + timedelta(hours=1) - timedelta(seconds=1) <= ends <= datetime.now(UTC) + timedelta(hours=1)
    )
    assert when(by_id[due_sooner.secret_id].expiration_date) == soon
    assert not by_id[rotated.secret_id].HasField("expiration_date")
    assert by_id[rotated.secret_id].description == "next"
    assert (await bot.event_types())[-1] == SecretRotated.TYPE
    # An access token never outlives its secret: one of the secret due in 30 minutes says so.
    answer = (await bot.token(due_sooner.client_secret)).json()
    assert 0 < answer["expires_in"] <= 30 * 60


async def test_rotation_without_grace_retires_the_others_at_once(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    old = await bot.create_secret()
    old_token = (await bot.token(old.client_secret)).json()["access_token"]
    rotated = await bot.rotate(timedelta(0))
    assert not await bot.works(old.client_secret)
    assert not await bot.token_works(old_token)
    assert await bot.works(rotated.client_secret)
    states = {s.secret_id: s.state for s in await bot.listed()}
    assert states == {old.secret_id: EXPIRED, rotated.secret_id: ACTIVE}
    # The expired secret stays listed until it is deleted; the new one is live.
    user: user_pb.GetUserByIDResponse = await world.call(
        "GetUserByID", user_pb.GetUserByIDRequest(user_id=bot.id)
    )
    assert user.user.has_secret


async def test_only_the_twenty_latest_expired_secrets_stay_listed(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    rotated = []
    for _ in range(23):  # each secret earns an access token before the next rotation retires it
        rotated.append(await bot.rotate(timedelta(0)))
        assert await bot.works(rotated[-1].client_secret)
    listed = await bot.listed()
    assert [s.secret_id for s in listed] == [r.secret_id for r in rotated[-21:]]
    assert [s.state for s in listed] == [EXPIRED] * 20 + [ACTIVE]
    # The access tokens of the secrets that went, went with them; the kept ones' stay (refused).
    assert [await token_rows(running, r.secret_id) for r in rotated] == [0] * 2 + [1] * 21


async def test_rotation_needs_a_grace_period(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    error = await expect_error(
        INVALID, "INVALID_ARGUMENT", world.call("RotateSecret", user_pb.RotateSecretRequest(user_id=bot.id))
    )
    assert "grace_period" in error.violations
    error = await expect_error(INVALID, "INVALID_ARGUMENT", bot.rotate(timedelta(seconds=-1)))
    assert "grace_period" in error.violations
    assert await bot.listed() == []


async def test_at_most_five_live_secrets_by_default(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    for _ in range(5):
        await bot.create_secret()
    error = await expect_error(PRECONDITION, "SECRET_LIMIT_REACHED", bot.create_secret())
    assert error.metadata == {"limit": "5"}
    await expect_error(PRECONDITION, "SECRET_LIMIT_REACHED", bot.rotate(timedelta(hours=1)))
    assert len(await bot.listed()) == 5
    rotated = await bot.rotate(timedelta(0))  # the others retire at once: one live secret
    assert len(await bot.listed()) == 6
    await bot.create_secret()  # expired secrets do not count
    assert await bot.works(rotated.client_secret)


async def test_add_secret_replaces_all_and_remove_secret_removes_all(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    first, second = await bot.create_secret(), await bot.create_secret()
    added: user_pb.AddSecretResponse = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=bot.id))
    assert SECRET.fullmatch(added.client_secret)
    assert not await bot.works(first.client_secret)
    assert not await bot.works(second.client_secret)
    assert await bot.works(added.client_secret)
    assert len(await bot.listed()) == 1
    await bot.create_secret()
    await world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=bot.id))
    assert await bot.listed() == []
    assert not await bot.works(added.client_secret)
    user: user_pb.GetUserByIDResponse = await world.call(
        "GetUserByID", user_pb.GetUserByIDRequest(user_id=bot.id)
    )
    assert not user.user.has_secret
    await expect_error(
        PRECONDITION,
        "SECRET_NOT_FOUND",
        world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=bot.id)),
    )


async def test_bad_secret_requests_are_refused_with_the_field_named(world: World, running: Running) -> None:
    bot = await Machine.create(world, running)
    past = stamp(datetime.now(UTC) - timedelta(seconds=5))
    error = await expect_error(INVALID, "INVALID_ARGUMENT", bot.create_secret(expiration_date=past))
    assert error.violations == {"expiration_date": "must be in the future"}
    error = await expect_error(INVALID, "INVALID_ARGUMENT", bot.create_secret(description="x" * 201))
    assert error.violations == {"description": "must be at most 200 characters"}
    human = await world.human_user()
    request = user_pb.CreateSecretRequest(user_id=human)
    await expect_error(PRECONDITION, "USER_NOT_MACHINE", world.call("CreateSecret", request))
    await expect_error(
        PRECONDITION, "USER_NOT_MACHINE", world.call("ListSecrets", user_pb.ListSecretsRequest(user_id=human))
    )
    await expect_error(
        NOT_FOUND,
        "USER_NOT_FOUND",
        world.call("ListSecrets", user_pb.ListSecretsRequest(user_id="123456789")),
    )
    assert await bot.event_types() == [MachineUserAdded.TYPE]  # nothing half-written


async def test_the_policy_governs_new_secrets_only(world: World, running: Running) -> None:
    org = await world.org()
    local = World(world.api, world.admin_token, org)
    bot = await Machine.create(local, running)
    await bot.create_secret()
    await set_policy(
        local,
        max_lifetime=timedelta(days=30),
        default_lifetime=timedelta(days=7),
        max_grace_period=timedelta(hours=2),
        max_secrets_per_user=2,
    )
    read: org_pb.GetSecretPolicyResponse = await local.call(
        "GetSecretPolicy", org_pb.GetSecretPolicyRequest(), org=org
    )
    assert read.policy.max_lifetime.ToTimedelta() == timedelta(days=30)
    assert read.policy.default_lifetime.ToTimedelta() == timedelta(days=7)
    assert read.policy.max_grace_period.ToTimedelta() == timedelta(hours=2)
    assert read.policy.max_secrets_per_user == 2
    assert not (await bot.listed())[0].HasField("expiration_date")  # made before: unchanged

    started = datetime.now(UTC)
    defaulted = await bot.create_secret()  # 2 of 2
    lifetime = when(defaulted.expiration_date) - started
    assert timedelta(days=7) - timedelta(seconds=1) <= lifetime <= timedelta(days=7, seconds=5)
    await expect_error(PRECONDITION, "SECRET_LIMIT_REACHED", bot.create_secret())
    too_far = stamp(datetime.now(UTC) + timedelta(days=31))
    error = await expect_error(INVALID, "INVALID_ARGUMENT", bot.rotate(timedelta(0), expiration_date=too_far))
    assert "maxLifetime" in error.violations["expiration_date"]
    assert "30 days" in error.violations["expiration_date"]
    error = await expect_error(INVALID, "INVALID_ARGUMENT", bot.rotate(timedelta(hours=3)))
    assert "maxGracePeriod" in error.violations["grace_period"]
    await expect_error(PRECONDITION, "SECRET_LIMIT_REACHED", bot.rotate(timedelta(hours=2)))  # 3 of 2
    await bot.call("DeleteSecret", user_pb.DeleteSecretRequest(user_id=bot.id, secret_id=defaulted.secret_id))
    rotated = await bot.rotate(timedelta(hours=2))
    assert when(rotated.expiration_date) - started <= timedelta(days=7, seconds=5)
    # ZITADEL's meaning obeys the policy too: AddSecret's secret gets the default lifetime.
    added: user_pb.AddSecretResponse = await local.call(
        "AddSecret", user_pb.AddSecretRequest(user_id=bot.id), org=org
    )
    [listed] = await bot.listed()
    assert timedelta(days=6) < when(listed.expiration_date) - started <= timedelta(days=7, seconds=5)
    assert await bot.works(added.client_secret)

    # The default organisation's policy is untouched: the default limit, no lifetimes.
    home: org_pb.GetSecretPolicyResponse = await world.call(
        "GetSecretPolicy", org_pb.GetSecretPolicyRequest()
    )
    assert home.policy == org_pb.SecretPolicy(max_secrets_per_user=5, max_keys_per_user=10)
    # An empty policy puts the defaults back.
    await local.call("SetSecretPolicy", org_pb.SetSecretPolicyRequest(), org=org)
    read = await local.call("GetSecretPolicy", org_pb.GetSecretPolicyRequest(), org=org)
    assert read.policy == org_pb.SecretPolicy(max_secrets_per_user=5, max_keys_per_user=10)


async def test_a_bad_policy_is_refused_with_the_field_named(world: World) -> None:
    org = await world.org()
    local = World(world.api, world.admin_token, org)
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"max_lifetime": timedelta(days=1), "default_lifetime": timedelta(days=2)},
            "policy.default_lifetime",
        ),
        ({"max_lifetime": timedelta(0)}, "policy.max_lifetime"),
        ({"max_grace_period": timedelta(seconds=-1)}, "policy.max_grace_period"),
        ({"max_secrets_per_user": 0}, "policy.max_secrets_per_user"),
        ({"max_secrets_per_user": 101}, "policy.max_secrets_per_user"),
    ]
    for fields, field in cases:
        error = await expect_error(INVALID, "INVALID_ARGUMENT", set_policy(local, **fields))
        assert list(error.violations) == [field], (fields, error)


async def test_only_owners_set_the_policy(world: World) -> None:
    org = await world.org()
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    _, owner = await world.caller(["ORG_OWNER"], org=org, home=org)
    request = org_pb.SetSecretPolicyRequest(policy=org_pb.SecretPolicy(max_secrets_per_user=3))
    error = await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call("SetSecretPolicy", request, token=manager, org=org),
    )
    assert error.metadata == {"permission": "policy.write"}
    await world.call("GetSecretPolicy", org_pb.GetSecretPolicyRequest(), token=manager, org=org)
    await world.call("SetSecretPolicy", request, token=owner, org=org)
    read: org_pb.GetSecretPolicyResponse = await world.call(
        "GetSecretPolicy", org_pb.GetSecretPolicyRequest(), token=manager, org=org
    )
    assert read.policy.max_secrets_per_user == 3


async def test_a_user_manager_cannot_mint_secrets_of_an_owner(world: World, running: Running) -> None:
    """CreateSecret and RotateSecret hand out a user's power, as AddSecret does: the same gate."""
    org = await world.org()
    owner_id, _ = await world.caller(["ORG_OWNER"], org=org, home=org)
    _, manager = await world.caller(["ORG_USER_MANAGER"], org=org, home=org)
    span = duration_pb2.Duration(seconds=0)
    for method, request in [
        ("CreateSecret", user_pb.CreateSecretRequest(user_id=owner_id)),
        ("RotateSecret", user_pb.RotateSecretRequest(user_id=owner_id, grace_period=span)),
        ("DeleteSecret", user_pb.DeleteSecretRequest(user_id=owner_id, secret_id="123456789")),
    ]:
        await expect_error(
            grpc.StatusCode.PERMISSION_DENIED,
            "PERMISSION_DENIED",
            world.call(method, request, token=manager, org=org),
        )
    events = await running.service.store.events(AGGREGATE_USER, owner_id)
    assert [e.type for e in events] == [MachineUserAdded.TYPE, PatAdded.TYPE]


async def test_secrets_from_before_the_format_keep_working(world: World, running: Running) -> None:
    """A secret of 64 characters, as issued before msk_: written as the old version's event."""
    bot = await Machine.create(world, running)
    old = random_characters(64)
    store = running.service.store
    user = await store.user(bot.id)
    assert user is not None
    hashed = bcrypt.hashpw(old.encode(), bcrypt.gensalt(4)).decode()
    await store.append(
        [NewEvent(bot.id, 2, user.org_id, SecretSet(IdGenerator().new_id(), hashed, None, "", None))]
    )
    new = await bot.create_secret()
    assert await bot.works(old)
    assert await bot.works(new.client_secret)
    assert not await bot.works(old[:-1] + ("a" if old[-1] != "a" else "b"))
    assert [s.hint for s in await bot.listed()] == ["", new.client_secret[4:8]]
