"""JWT access tokens (RFC 9068) and the keys that sign them, on each store, on the HTTP port and
through Envoy: a machine user whose access_token_type is JWT gets a signed token from every
grant; a resource server verifies it, unmodified, with PyJWT's PyJWKClient on the jwks_uri that
discovery names, checking aud = its project id; this service accepts it on its own API and at
introspection, and ends it as it ends an opaque token."""

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from joserfc.jwk import ECKey, RSAKey
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.management.v1 import management_pb2 as mgmt
from zitadel.user.v1 import user_pb2 as zitadel_user
from zitadel.user.v2 import user_pb2 as user_v2_user
from zitadel.user.v2 import user_service_pb2 as user_v2
from zitadel.webkey.v2 import key_pb2
from zitadel.webkey.v2 import webkey_service_pb2 as webkey

from server.app import open_store
from server.config import ConfigError
from server.domain.signing_keys import KeyCipher
from server.transport.oauth import DISCOVERY_PATH, KEYS_PATH
from tests import postgres
from tests.api import ApiError, GrpcApi, exchange
from tests.service import Running, config_for, start_service
from tests.test_introspection import api_project, audience, introspect
from tests.test_jwt_profile import grant as jwt_profile_grant
from tests.test_jwt_profile import key_holder, signed
from tests.world import World, unique_name

M = "ManagementService."
W = "WebKeyService."


@pytest.fixture
async def admin(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


@pytest.fixture(params=["direct", "envoy"])
def base(request: pytest.FixtureRequest, running: Running) -> str:
    port = running.service.http_port if request.param == "direct" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


async def jwt_machine(world: World) -> tuple[str, str, str]:
    """A machine user made with JWT access tokens (ZITADEL's AddMachineUser), and its secret:
    (user id, client id, client secret)."""
    added = await world.call(
        M + "AddMachineUser",
        mgmt.AddMachineUserRequest(
            user_name=unique_name("jwt"),
            name="Resource client",
            access_token_type=zitadel_user.ACCESS_TOKEN_TYPE_JWT,
        ),
    )
    issued = await world.call(
        M + "GenerateMachineSecret", mgmt.GenerateMachineSecretRequest(user_id=added.user_id)
    )
    return added.user_id, issued.client_id, issued.client_secret


async def jwt_token(base: str, client_id: str, secret: str, *scopes: str) -> str:
    answer = await exchange(base, client_id, secret, scope=" ".join(scopes))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def discovered_jwks_uri(base: str) -> tuple[str, str]:
    async with httpx.AsyncClient() as http:
        document = (await http.get(base + DISCOVERY_PATH)).json()
    assert document["jwks_uri"] == document["issuer"] + KEYS_PATH
    return document["issuer"], document["jwks_uri"]


def verified(token: str, jwks_uri: str, issuer: str, audience: str) -> dict[str, Any]:
    """What a resource server does with PyJWT, unmodified: the key by the token's kid from the
    JWKS, the signature, exp, iss and aud."""
    key = jwt.PyJWKClient(jwks_uri).get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256", "ES256"], audience=audience, issuer=issuer
    )
    return claims


async def test_a_resource_server_verifies_the_jwt_with_the_discovered_jwks(admin: World, base: str) -> None:
    shop = await api_project(admin, roles=("reader", "writer"))
    user_id, client_id, secret = await jwt_machine(admin)
    await admin.call(
        M + "AddUserGrant",
        mgmt.AddUserGrantRequest(user_id=user_id, project_id=shop.project_id, role_keys=["reader"]),
    )
    scopes = (
        "openid",
        audience(shop),
        "urn:zitadel:iam:org:projects:roles",
        "urn:zitadel:iam:user:resourceowner",
    )
    token = await jwt_token(base, client_id, secret, *scopes)
    issuer, jwks_uri = await discovered_jwks_uri(base)
    claims = await asyncio.to_thread(verified, token, jwks_uri, issuer, shop.project_id)
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"  # RFC 9068 §2.1
    assert claims["sub"] == user_id
    assert claims["client_id"] == client_id
    assert claims["aud"] == [shop.project_id]
    assert claims["scope"] == " ".join(scopes)
    assert claims["exp"] - claims["iat"] == 12 * 3600
    assert claims["nbf"] == claims["iat"]
    owner = {admin.home_org: "default"}
    assert claims["urn:zitadel:iam:org:project:roles"] == {"reader": owner}
    assert claims[f"urn:zitadel:iam:org:project:{shop.project_id}:roles"] == {"reader": owner}
    assert claims["urn:zitadel:iam:user:resourceowner:id"] == admin.home_org
    # Another API's audience is refused by the resource server itself.
    with pytest.raises(jwt.InvalidAudienceError):
        await asyncio.to_thread(verified, token, jwks_uri, issuer, "123456789")
    # The introspection endpoint says what the token says, with the same jti.
    introspected = await introspect(base, shop, token)
    assert introspected["active"] is True
    assert introspected["jti"] == claims["jti"]
    assert introspected["sub"] == user_id


async def test_the_jwt_is_accepted_on_the_api_and_dies_with_its_secret(admin: World, base: str) -> None:
    shop = await api_project(admin)
    user_id, client_id, secret = await jwt_machine(admin)
    token = await jwt_token(base, client_id, secret, audience(shop))
    me = await admin.call("GetMe", user_pb.GetMeRequest(), token=token)
    assert me.user.id == user_id
    await admin.call(M + "RemoveMachineSecret", mgmt.RemoveMachineSecretRequest(user_id=user_id))
    with pytest.raises(ApiError) as refused:
        await admin.call("GetMe", user_pb.GetMeRequest(), token=token)
    assert refused.value.reason == "TOKEN_INVALID"
    assert await introspect(base, shop, token) == {"active": False}


async def test_a_deactivated_users_jwt_is_refused(admin: World, base: str) -> None:
    shop = await api_project(admin)
    user_id, client_id, secret = await jwt_machine(admin)
    token = await jwt_token(base, client_id, secret, audience(shop))
    await admin.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=user_id))
    with pytest.raises(ApiError):
        await admin.call("GetMe", user_pb.GetMeRequest(), token=token)
    assert await introspect(base, shop, token) == {"active": False}


async def test_update_machine_switches_the_form_of_later_tokens(admin: World, base: str) -> None:
    user_id, client_id, secret = await jwt_machine(admin)
    signed = await jwt_token(base, client_id, secret)
    assert signed.count(".") == 2
    assert jwt.decode(signed, options={"verify_signature": False})["aud"] == ["zitadel"]
    got = await admin.call(M + "GetUserByID", mgmt.GetUserByIDRequest(id=user_id))
    assert got.user.machine.access_token_type == zitadel_user.ACCESS_TOKEN_TYPE_JWT
    await admin.call(
        M + "UpdateMachine",
        mgmt.UpdateMachineRequest(
            user_id=user_id, name="Resource client", access_token_type=zitadel_user.ACCESS_TOKEN_TYPE_BEARER
        ),
    )
    opaque = await jwt_token(base, client_id, secret)
    assert "." not in opaque
    # Both are accepted: a token keeps the form it was issued in.
    for token in (signed, opaque):
        assert (await admin.call("GetMe", user_pb.GetMeRequest(), token=token)).user.id == user_id
    # The native API says the same.
    await admin.call(
        "UpdateMachineUser",
        user_pb.UpdateMachineUserRequest(user_id=user_id, access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT),
    )
    native = await admin.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id))
    assert native.user.access_token_type == user_pb.ACCESS_TOKEN_TYPE_JWT
    assert (await jwt_token(base, client_id, secret)).count(".") == 2


async def test_the_jwks_is_public_keys_only_with_cache_headers(running: Running, base: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(base + KEYS_PATH)
        refused = await http.post(base + KEYS_PATH)
    assert answer.status_code == 200
    assert (
        answer.headers["cache-control"]
        == f"public, max-age={int(running.config.jwks_cache_ttl.total_seconds())}"
    )
    keys = answer.json()["keys"]
    assert keys
    assert all(k["use"] == "sig" and k["kid"] and k["alg"] in ("RS256", "ES256") for k in keys)
    assert not any(private in k for k in keys for private in ("d", "p", "q", "dp", "dq", "qi"))
    assert refused.status_code == 405


async def test_web_keys_are_listed_created_and_guarded(world: World) -> None:
    """ZITADEL's web key API on every transport: the active key, a new one published but not
    signing until the JWKS cache TTL has passed, the active one not deletable, IAM_OWNER only."""
    listed = await world.call(W + "ListWebKeys", webkey.ListWebKeysRequest())
    active = [k for k in listed.web_keys if k.state == key_pb2.STATE_ACTIVE]
    assert len(active) == 1
    made = await world.call(W + "CreateWebKey", webkey.CreateWebKeyRequest(ecdsa=key_pb2.ECDSA()))
    listed = await world.call(W + "ListWebKeys", webkey.ListWebKeysRequest())
    new = next(k for k in listed.web_keys if k.id == made.id)
    assert new.state == key_pb2.STATE_INITIAL
    assert new.HasField("ecdsa")
    with pytest.raises(ApiError) as refused:
        await world.call(W + "DeleteWebKey", webkey.DeleteWebKeyRequest(id=active[0].id))
    assert refused.value.reason == "WEB_KEY_ACTIVE"
    with pytest.raises(ApiError) as refused:
        await world.call(
            W + "CreateWebKey", webkey.CreateWebKeyRequest(rsa=key_pb2.RSA(bits=key_pb2.RSA_BITS_4096))
        )
    assert refused.value.code.name == "INVALID_ARGUMENT"
    deleted = await world.call(W + "DeleteWebKey", webkey.DeleteWebKeyRequest(id=made.id))
    assert deleted.HasField("deletion_date")
    again = await world.call(W + "DeleteWebKey", webkey.DeleteWebKeyRequest(id=made.id))
    assert not again.HasField("deletion_date")  # ZITADEL's answer for a key gone already
    _, owner_token = await world.caller(["ORG_OWNER"])
    with pytest.raises(ApiError) as refused:
        await world.call(W + "ListWebKeys", webkey.ListWebKeysRequest(), token=owner_token)
    assert refused.value.code.name == "PERMISSION_DENIED"


# The master key and the keys at rest: services of their own.


@contextlib.asynccontextmanager
async def service_on(backend: str, folder: Path, **settings: Any) -> AsyncIterator[Running]:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if backend == "postgres" else None
        running = await start_service(config_for(folder, database_url=url, **settings))
        try:
            yield running
        finally:
            await running.service.stop(0)


async def private_material(running: Running) -> list[bytes]:
    """Each stored key's private key as it could appear in readable form: its DER, its base64 (a
    PEM's body) and its JWK "d", found by decrypting the store's rows with the master key."""
    store = await open_store(running.config)
    try:
        cipher = KeyCipher((Path(running.config.masterkey_file)).read_bytes())
        found = []
        for key in await store.webkeys():
            der = cipher.decrypt(key.key_id, key.private_key)
            imported = ECKey.import_key(der) if key.algorithm == "ES256" else RSAKey.import_key(der)
            d = str(imported.as_dict(private=True)["d"])
            found += [der[-64:], base64.b64encode(der)[-64:], d.encode()]
        return found
    finally:
        await store.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_no_private_key_is_readable_in_the_store(backend: str, tmp_path: Path) -> None:
    async with service_on(backend, tmp_path) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        world = await World.create(api, running.admin_token)
        await world.call(W + "CreateWebKey", webkey.CreateWebKeyRequest(ecdsa=key_pb2.ECDSA()))
        await world.call(W + "CreateWebKey", webkey.CreateWebKeyRequest())
        await api.close()
        private = await private_material(running)
        raw = running.raw_store()
    assert (tmp_path / "masterkey").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in raw
    assert b'"d"' not in raw
    assert b'\\"d\\"' not in raw
    assert len(private) == 3 * 3
    for material in private:
        assert material not in raw  # neither the DER, nor its base64, nor a JWK's "d"


async def test_a_wrong_or_missing_master_key_stops_the_start(tmp_path: Path) -> None:
    async with service_on("sqlite", tmp_path):
        pass
    (tmp_path / "masterkey").write_bytes(b"x" * 32)
    with pytest.raises(ConfigError, match=r"MS_MASTERKEY_FILE .* does not decrypt"):
        await start_service(config_for(tmp_path))
    (tmp_path / "masterkey").unlink()
    with pytest.raises(ConfigError, match=r"MS_MASTERKEY_FILE .* does not exist"):
        await start_service(config_for(tmp_path))
    (tmp_path / "masterkey").write_bytes(b"short")
    with pytest.raises(ConfigError, match="exactly 32 bytes"):
        await start_service(config_for(tmp_path))


async def test_two_processes_on_postgres_agree_on_keys(tmp_path: Path) -> None:
    """Two services on one PostgreSQL, started at once: one key, the same JWKS; a key made through
    one is published by the other within its refresh interval; a token one signed verifies with
    the other's JWKS."""
    ttl = timedelta(seconds=2)
    with postgres.throwaway_database() as url:
        shared = tmp_path / "masterkey"
        configs = [
            config_for(tmp_path / name, database_url=url, masterkey_file=shared, jwks_cache_ttl=ttl)
            for name in ("a", "b")
        ]
        for config in configs:
            Path(config.admin_pat_file).parent.mkdir(parents=True, exist_ok=True)
        started = await asyncio.gather(*(start_service(c) for c in configs))
        try:
            a, b = (f"http://127.0.0.1:{r.service.http_port}" for r in started)
            async with httpx.AsyncClient() as http:
                documents = [(await http.get(base + KEYS_PATH)).json() for base in (a, b)]
                assert documents[0] == documents[1]
                assert len(documents[0]["keys"]) == 1
                owner = next(r for r in started if Path(r.config.admin_pat_file).exists())
                api = GrpcApi("grpc", f"127.0.0.1:{owner.service.grpc_port}")
                world = await World.create(api, owner.admin_token)
                made = await world.call(W + "CreateWebKey", webkey.CreateWebKeyRequest())
                _, client_id, secret = await jwt_machine(world)
                await api.close()
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 2 * started[0].config.jwks_cache_ttl.total_seconds()
                while made.id not in [k["kid"] for k in (await http.get(b + KEYS_PATH)).json()["keys"]]:
                    assert loop.time() < deadline, "the other process did not publish the new key"
                    await asyncio.sleep(0.1)
            token = await jwt_token(b, client_id, secret)
            issuer, _ = await discovered_jwks_uri(b)
            key = await asyncio.to_thread(jwt.PyJWKClient(a + KEYS_PATH).get_signing_key_from_jwt, token)
            jwt.decode(token, key, algorithms=["RS256"], audience="zitadel", issuer=issuer)
        finally:
            for r in started:
                await r.service.stop(0)


class CachingResourceServer:
    """A resource server that verifies JWTs with PyJWT against a JWKS it caches for the TTL the
    service announces, and never fetches it again early: a kid missing from its cached copy is a
    token it refuses (a token lost to the rotation)."""

    def __init__(self, jwks_uri: str, issuer: str, ttl_s: float) -> None:
        self._client = jwt.PyJWKClient(jwks_uri, cache_jwk_set=True, lifespan=ttl_s)
        self._issuer = issuer

    def verify(self, token: str) -> str:
        kid = jwt.get_unverified_header(token)["kid"]
        key = self._client.get_jwk_set()[kid]  # KeyError: not in the cached copy
        jwt.decode(token, key, algorithms=["RS256", "ES256"], audience="zitadel", issuer=self._issuer)
        return str(kid)


async def test_a_cached_jwks_loses_no_token_while_keys_rotate_twice(tmp_path: Path) -> None:
    """Keys rotate every 5 s, the JWKS may be cached for 2 s: tokens issued and verified without a
    pause, for long enough that three keys sign in turn, all verify on arrival with the cached copy,
    and all verify again at the end (the keys before stay published)."""
    ttl = timedelta(seconds=2)
    async with service_on(
        "sqlite", tmp_path, jwks_cache_ttl=ttl, signing_key_rotation=timedelta(seconds=5)
    ) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        world = await World.create(api, running.admin_token)
        _, client_id, secret = await jwt_machine(world)
        await api.close()
        base = f"http://127.0.0.1:{running.service.http_port}"
        issuer, jwks_uri = await discovered_jwks_uri(base)
        server = CachingResourceServer(jwks_uri, issuer, ttl.total_seconds())
        loop = asyncio.get_running_loop()
        deadline, tokens, kids = loop.time() + 13, list[str](), list[str]()
        while loop.time() < deadline and len(set(kids)) < 3:
            token = await jwt_token(base, client_id, secret)
            kids.append(await asyncio.to_thread(server.verify, token))
            tokens.append(token)
            await asyncio.sleep(0.05)
        assert len(set(kids)) == 3, kids
        assert kids == sorted(kids, key=kids.index)  # each key signed in one stretch, in turn
        late = CachingResourceServer(jwks_uri, issuer, ttl.total_seconds())
        for token in tokens:
            await asyncio.to_thread(late.verify, token)


async def test_the_jwt_profile_grant_issues_the_users_form(admin: World, base: str) -> None:
    holder = await key_holder(admin)
    await admin.call(
        "UpdateMachineUser",
        user_pb.UpdateMachineUserRequest(
            user_id=holder.user_id, access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT
        ),
    )
    issuer, jwks_uri = await discovered_jwks_uri(base)
    answer = await jwt_profile_grant(base, signed(holder, issuer))
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    claims = await asyncio.to_thread(verified, token, jwks_uri, issuer, "zitadel")
    assert claims["sub"] == holder.user_id
    assert claims["client_id"] == holder.user_name
    assert (await admin.call("GetMe", user_pb.GetMeRequest(), token=token)).user.id == holder.user_id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_es256_is_selectable(backend: str, tmp_path: Path) -> None:
    async with service_on(backend, tmp_path, signing_key_algorithm="ES256", envoy=True) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        world = await World.create(api, running.admin_token)
        _, client_id, secret = await jwt_machine(world)
        await api.close()
        for port in (running.service.http_port, running.service.envoy_port):
            base = f"http://127.0.0.1:{port}"
            token = await jwt_token(base, client_id, secret)
            issuer, jwks_uri = await discovered_jwks_uri(base)
            assert jwt.get_unverified_header(token)["alg"] == "ES256"
            claims = await asyncio.to_thread(verified, token, jwks_uri, issuer, "zitadel")
            assert claims["client_id"] == client_id


async def test_a_machine_user_made_with_jwts_on_every_transport(world: World, running: Running) -> None:
    """ZITADEL's v2 CreateUser (machine.access_token_type = 3) and the native AddMachineUser, on
    every transport: the user's tokens are JWTs, and GetUserByID says so."""
    created = await world.call(
        "UserServiceV2.CreateUser",
        user_v2.CreateUserRequest(
            organization_id=world.home_org,
            username=unique_name("v2-jwt"),
            machine=user_v2.CreateUserRequest.Machine(
                name="m", access_token_type=user_v2_user.ACCESS_TOKEN_TYPE_JWT
            ),
        ),
    )
    native = await world.call(
        "AddMachineUser",
        user_pb.AddMachineUserRequest(
            user_name=unique_name("native-jwt"), name="m", access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT
        ),
    )
    base = f"http://127.0.0.1:{running.service.http_port}"
    for user_id in (created.id, native.user_id):
        got = await world.call("UserServiceV2.GetUserByID", user_v2.GetUserByIDRequest(user_id=user_id))
        assert got.user.machine.access_token_type == user_v2_user.ACCESS_TOKEN_TYPE_JWT
        issued = await world.call(
            M + "GenerateMachineSecret", mgmt.GenerateMachineSecretRequest(user_id=user_id)
        )
        assert (await jwt_token(base, issued.client_id, issued.client_secret)).count(".") == 2
    with pytest.raises(ApiError) as refused:
        await world.call(
            "AddMachineUser",
            user_pb.AddMachineUserRequest(
                user_name=unique_name("x"), name="m", access_token_type=user_pb.AccessTokenType.ValueType(7)
            ),
        )
    assert refused.value.code.name == "INVALID_ARGUMENT"
