"""Machine keys over every transport and store, under their native names and ZITADEL's (management
v1, user v2): a key made or uploaded, listed without key material, removed; the key file it
answers earns a token by the JWT profile grant, which ends with the key and with its user."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.filter.v2 import filter_pb2
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.user.v2 import key_pb2
from zitadel.user.v2 import user_service_pb2 as user_v2

from server.domain.key_generation import KEY_GENERATIONS_AT_ONCE, KEY_GENERATIONS_WAITING
from tests.api import ApiError, expect_error
from tests.service import Running, client
from tests.world import World

TOKEN_PATH = "/oauth/v2/token"
NO_EXPIRY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)  # ZITADEL's, for a key without expiry
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def assertion(
    key: RSAKey | ECKey, key_id: str, user_id: str, audience: str, alg: str = "RS256", **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": user_id, "sub": user_id, "aud": audience, "iat": now, "exp": now + 600}
    body.update(claims)
    return jwt.encode({"alg": alg, "kid": key_id}, body, key)


async def grant(base: str, signed: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(base + TOKEN_PATH, data={"grant_type": JWT_BEARER, "assertion": signed})


def base_of(running: Running) -> str:
    return f"http://127.0.0.1:{running.service.http_port}"


async def test_a_generated_key_earns_tokens_until_it_is_removed(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    await world.grant(user_id, ["ORG_USER_MANAGER"])
    added = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id))
    assert added.details.sequence == 2  # the membership is an event of the organisation
    assert added.details.resource_owner == world.home_org
    assert not added.HasField("expiration_date")
    content = json.loads(added.key_content)
    assert content["type"] == "serviceaccount"
    assert (content["keyId"], content["userId"]) == (added.key_id, user_id)
    private = RSAKey.import_key(content["key"])
    base = base_of(running)
    answer = await grant(base, assertion(private, added.key_id, user_id, base))
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert (token["token_type"], token["scope"]) == ("Bearer", "api")
    assert 0 < token["expires_in"] <= 43200
    read = user_pb.GetUserByIDRequest(user_id=user_id)
    assert (await world.call("GetUserByID", read, token=token["access_token"])).user.id == user_id
    # Listed with its dates, its last use, never key material.
    [listed] = (await world.call("ListKeys", user_pb.ListKeysRequest(user_id=user_id))).keys
    assert (listed.key_id, listed.key_type, listed.state) == (added.key_id, "RSA", user_pb.KEY_STATE_ACTIVE)
    assert listed.HasField("last_used")
    assert "BEGIN" not in str(listed)
    removed = await world.call("RemoveKey", user_pb.RemoveKeyRequest(user_id=user_id, key_id=added.key_id))
    assert removed.details.sequence == 3
    # The key and the token it earned end at once.
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("GetUserByID", read, token=token["access_token"]),
    )
    refused = await grant(base, assertion(private, added.key_id, user_id, base))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")
    assert not (await world.call("ListKeys", user_pb.ListKeysRequest(user_id=user_id))).keys
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        world.call("RemoveKey", user_pb.RemoveKeyRequest(user_id=user_id, key_id=added.key_id)),
    )


async def test_an_uploaded_public_key_and_what_is_refused(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    added = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id, public_key=public))
    assert added.key_content == b""  # the service never saw a private key
    signing = ECKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    base = base_of(running)
    answer = await grant(base, assertion(signing, added.key_id, user_id, base, alg="ES256"))
    assert answer.status_code == 200, answer.text
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # A public key whose every verification is dear: a huge exponent (OpenSSL takes one almost as
    # large as the modulus), or a modulus past the bound.
    modulus = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    dear = [
        rsa.RSAPublicNumbers((1 << 2040) + 1, modulus).public_key(),
        rsa.generate_private_key(public_exponent=65537, key_size=4096 + 1024).public_key(),
    ]
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    dear_pems = [k.public_bytes(serialization.Encoding.PEM, spki) for k in dear]
    garbage = b"-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----\n"
    for refused in (rsa_private, b"not a key", garbage, *dear_pems):
        error = await expect_error(
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_ARGUMENT",
            world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id, public_key=refused)),
        )
        assert "PRIVATE" not in str(error)
        assert "not a key" not in str(error)
    human = await world.human_user()
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "USER_NOT_MACHINE",
        world.call("AddKey", user_pb.AddKeyRequest(user_id=human)),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "USER_NOT_FOUND",
        world.call("ListKeys", user_pb.ListKeysRequest(user_id="123")),
    )


async def test_keys_under_zitadels_management_names(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    added = await world.call("ManagementService.AddMachineKey", mgmt.AddMachineKeyRequest(user_id=user_id))
    assert added.details.resource_owner == world.home_org
    content = json.loads(added.key_details)
    # ZITADEL's key file, a key without expiry showing ZITADEL's stand-in date, as Go writes it.
    assert list(content) == ["type", "keyId", "key", "expirationDate", "userId"]
    assert (content["keyId"], content["expirationDate"]) == (added.key_id, "9999-12-31T23:59:59Z")
    base = base_of(running)
    signed = assertion(RSAKey.import_key(content["key"]), added.key_id, user_id, base, jti=str(uuid.uuid4()))
    assert (await grant(base, signed)).status_code == 200
    listed = await world.call(
        "ManagementService.ListMachineKeys", mgmt.ListMachineKeysRequest(user_id=user_id)
    )
    assert listed.details.total_result == 1
    [key] = listed.result
    assert (key.id, key.type, key.details.resource_owner) == (added.key_id, 1, world.home_org)
    # No expiry reads as ZITADEL answers it (the Terraform provider sets expiration_date from it).
    assert key.expiration_date.ToDatetime(UTC) == NO_EXPIRY
    got = await world.call(
        "ManagementService.GetMachineKeyByIDs", mgmt.GetMachineKeyByIDsRequest(user_id=user_id, key_id=key.id)
    )
    assert got.key == key
    await world.call(
        "ManagementService.RemoveMachineKey", mgmt.RemoveMachineKeyRequest(user_id=user_id, key_id=key.id)
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        world.call(
            "ManagementService.GetMachineKeyByIDs",
            mgmt.GetMachineKeyByIDsRequest(user_id=user_id, key_id=key.id),
        ),
    )
    assert (await grant(base, signed)).status_code == 400


async def test_keys_under_zitadels_v2_names(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    added = await world.call("UserServiceV2.AddKey", user_v2.AddKeyRequest(user_id=user_id))
    content = json.loads(added.key_content)
    assert (content["keyId"], content["userId"]) == (added.key_id, user_id)
    by_user = key_pb2.KeysSearchFilter(user_id_filter=filter_pb2.IDFilter(id=user_id))
    listed = await world.call("UserServiceV2.ListKeys", user_v2.ListKeysRequest(filters=[by_user]))
    [key] = listed.result
    assert (key.id, key.user_id, key.organization_id) == (added.key_id, user_id, world.home_org)
    assert key.expiration_date.ToDatetime(UTC) == NO_EXPIRY
    assert listed.pagination.total_result == 1
    await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call("UserServiceV2.ListKeys", user_v2.ListKeysRequest()),
    )
    removed = await world.call(
        "UserServiceV2.RemoveKey", user_v2.RemoveKeyRequest(user_id=user_id, key_id=added.key_id)
    )
    assert removed.HasField("deletion_date")
    listed = await world.call("UserServiceV2.ListKeys", user_v2.ListKeysRequest(filters=[by_user]))
    assert not listed.result


async def test_keys_end_with_their_user(world: World, running: Running) -> None:
    user_id = await world.machine_user()
    await world.grant(user_id, ["ORG_USER_MANAGER"])
    added = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id))
    private = RSAKey.import_key(json.loads(added.key_content)["key"])
    base = base_of(running)
    token = (await grant(base, assertion(private, added.key_id, user_id, base))).json()["access_token"]
    read = user_pb.GetUserByIDRequest(user_id=user_id)
    await world.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=user_id))
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID", world.call("GetUserByID", read, token=token)
    )
    assert (await grant(base, assertion(private, added.key_id, user_id, base))).status_code == 400
    await world.call("ReactivateUser", user_pb.ReactivateUserRequest(user_id=user_id))
    assert (await world.call("GetUserByID", read, token=token)).user.id == user_id
    await world.call("RemoveUser", user_pb.RemoveUserRequest(user_id=user_id))
    assert (await grant(base, assertion(private, added.key_id, user_id, base))).status_code == 400


async def test_key_pairs_are_made_a_bounded_few_at_a_time(world: World) -> None:
    """More generated keys asked for at once than the service makes and queues: the rest are
    refused at once, RESOURCE_EXHAUSTED with a retry hint (429 over HTTP), and nothing else goes
    wrong; every key answered is whole. Three users, so that no one reaches maxKeysPerUser."""
    users = [await world.machine_user() for _ in range(3)]
    asked = 3 * (KEY_GENERATIONS_AT_ONCE + KEY_GENERATIONS_WAITING)

    async def add(user_id: str) -> user_pb.AddKeyResponse | ApiError:
        try:
            request = user_pb.AddKeyRequest(user_id=user_id)
            answer: user_pb.AddKeyResponse = await world.call("AddKey", request)
        except ApiError as error:
            return error
        return answer

    answers = await asyncio.gather(*(add(users[n % 3]) for n in range(asked)))
    added = [answer for answer in answers if isinstance(answer, user_pb.AddKeyResponse)]
    refused = [answer for answer in answers if isinstance(answer, ApiError)]
    assert added, len(refused)
    assert refused, len(added)
    for error in refused:
        assert (error.code, error.reason, error.metadata) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "KEY_GENERATION_BUSY",
            {"retry_after": "1"},
        ), error
    for answer in added:
        assert json.loads(answer.key_content)["keyId"] == answer.key_id
    listed = [await world.call("ListKeys", user_pb.ListKeysRequest(user_id=user_id)) for user_id in users]
    assert sum(len(keys.keys) for keys in listed) == len(added)  # a refused call wrote nothing


async def test_an_expiration_date_under_zitadels_names(world: World) -> None:
    """A key with an expiration date shows it everywhere, the key file as Go writes it; only the
    native API shows a key without one as having none."""
    user_id = await world.machine_user()
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=250_000)
    request = mgmt.AddMachineKeyRequest(user_id=user_id)
    request.expiration_date.FromDatetime(expires)
    added = await world.call("ManagementService.AddMachineKey", request)
    content = json.loads(added.key_details)
    assert content["expirationDate"] == expires.strftime("%Y-%m-%dT%H:%M:%S") + ".25Z"
    got = await world.call(
        "ManagementService.GetMachineKeyByIDs",
        mgmt.GetMachineKeyByIDsRequest(user_id=user_id, key_id=added.key_id),
    )
    assert got.key.expiration_date.ToDatetime(UTC) == expires
    other = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id))
    assert not other.HasField("expiration_date")
    native = (await world.call("ListKeys", user_pb.ListKeysRequest(user_id=user_id))).keys
    assert {key.key_id: key.HasField("expiration_date") for key in native} == {
        added.key_id: True,
        other.key_id: False,
    }


async def test_a_key_generation_refused_over_http_says_when_to_retry(running: Running) -> None:
    """The refusal over JSON through Envoy: HTTP 429, a Retry-After header, google.rpc.Status."""
    api = client("grpc", running.service)
    try:
        world = await World.create(api, running.admin_token)
        users = [await world.machine_user() for _ in range(3)]
    finally:
        await api.close()
    envoy = f"http://127.0.0.1:{running.service.envoy_port}"
    headers = {"authorization": f"Bearer {running.admin_token}"}
    async with httpx.AsyncClient(timeout=60) as http:
        answers = await asyncio.gather(
            *(
                http.post(f"{envoy}/users/{users[n % 3]}/keys", json={}, headers=headers)
                for n in range(3 * (KEY_GENERATIONS_AT_ONCE + KEY_GENERATIONS_WAITING))
            )
        )
    refused = [answer for answer in answers if answer.status_code == 429]
    assert refused, [answer.status_code for answer in answers]
    assert {answer.status_code for answer in answers} <= {200, 429}
    for answer in refused:
        assert answer.headers["retry-after"] == "1"
        body = answer.json()
        assert (body["code"], body["details"][0]["reason"]) == (8, "KEY_GENERATION_BUSY")
