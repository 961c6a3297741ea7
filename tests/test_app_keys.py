"""API applications with private_key_jwt (issue 33): their keys under ZITADEL's management v1
names (AddAppKey, ListAppKeys, GetAppKey, RemoveAppKey, UpdateAPIAppConfig) and the native
ProjectService's, on every transport and store; and the introspection endpoint, on the HTTP port
and through Envoy, authenticating an application by a client assertion its key signed, with every
refusal the same invalid_client."""

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from machinesecrets.v1 import project_service_pb2 as project_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.app.v1 import app_pb2
from zitadel.authn.v1 import auth_n_key_pb2 as authn
from zitadel.management.v1 import management_pb2 as mgmt

from server.domain.assertions import CLOCK_SKEW, MAX_ASSERTION_LIFETIME, MAX_KEYS_WITHOUT_KID
from server.domain.failure_limits import FailureLimits
from server.domain.secret_format import is_well_formed
from server.limits import MAX_ASSERTION_LENGTH
from server.transport.oauth import INTROSPECT_PATH, TOKEN_PATH
from tests.api import GrpcApi, expect_error
from tests.service import Running, config_for, start_service
from tests.test_introspection import INACTIVE, audience, machine, token
from tests.test_introspection import App as SecretApp
from tests.test_jwt_profile import KeyHolder, hostile_assertions, hs256_with, key_holder, signed
from tests.world import World, unique_name

M = "ManagementService."
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFUSED = {"error": "invalid_client", "error_description": "client authentication failed"}


@dataclass
class KeyedApp:
    project_id: str
    app_id: str
    client_id: str
    key_id: str
    key: RSAKey | ECKey


async def keyed_app(world: World, org: str | None = None) -> KeyedApp:
    """A project with an API application that authenticates with keys, and one generated key."""
    project = await world.call(M + "AddProject", mgmt.AddProjectRequest(name=unique_name("api")), org=org)
    app = await world.call(
        M + "AddAPIApp",
        mgmt.AddAPIAppRequest(
            project_id=project.id, name="rs", auth_method_type=app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT
        ),
        org=org,
    )
    added = await world.call(
        M + "AddAppKey",
        mgmt.AddAppKeyRequest(project_id=project.id, app_id=app.app_id, type=authn.KEY_TYPE_JSON),
        org=org,
    )
    content = json.loads(added.key_details)
    return KeyedApp(project.id, app.app_id, app.client_id, added.id, RSAKey.import_key(content["key"]))


def assertion_of(
    app: KeyedApp, aud: str | list[str], header: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": app.client_id,
        "sub": app.client_id,
        "aud": aud,
        "iat": now,
        "exp": now + 600,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = "RS256" if isinstance(app.key, RSAKey) else "ES256"
    protected = {k: v for k, v in {"alg": alg, "kid": app.key_id, **(header or {})}.items() if v is not None}
    return jwt.encode(protected, body, app.key)


@pytest.fixture
async def admin(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


@pytest.fixture(params=["direct", "envoy"])
def base(request: pytest.FixtureRequest, running: Running) -> str:
    port = running.service.http_port if request.param == "direct" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


async def introspect_with(url: str, assertion: str, value: str, **form: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            url + INTROSPECT_PATH,
            data={
                "token": value,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
                **form,
            },
        )


def as_secret_app(app: KeyedApp) -> SecretApp:
    return SecretApp(app.project_id, app.client_id, "")


async def test_app_keys_under_zitadels_names(world: World) -> None:
    project = await world.call(M + "AddProject", mgmt.AddProjectRequest(name=unique_name("keyed")))
    app = await world.call(
        M + "AddAPIApp",
        mgmt.AddAPIAppRequest(
            project_id=project.id, name="rs", auth_method_type=app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT
        ),
    )
    assert (app.client_id, app.client_secret) == (f"{app.app_id}@{project.id}", "")  # no secret
    [listed] = (await world.call(M + "ListApps", mgmt.ListAppsRequest(project_id=project.id))).result
    assert listed.api_config.auth_method_type == app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT

    added = await world.call(
        M + "AddAppKey",
        mgmt.AddAppKeyRequest(project_id=project.id, app_id=app.app_id, type=authn.KEY_TYPE_JSON),
    )
    content = json.loads(added.key_details)
    assert list(content) == ["type", "keyId", "key", "appId", "clientId"]
    assert (content["type"], content["keyId"], content["appId"], content["clientId"]) == (
        "application",
        added.id,
        app.app_id,
        app.client_id,
    )
    assert added.details.resource_owner == world.home_org
    keys = await world.call(
        M + "ListAppKeys", mgmt.ListAppKeysRequest(project_id=project.id, app_id=app.app_id)
    )
    assert (keys.details.total_result, [k.id for k in keys.result]) == (1, [added.id])
    assert keys.result[0].type == authn.KEY_TYPE_JSON
    assert keys.result[0].expiration_date.seconds == 253402300799  # ZITADEL's 9999-12-31T23:59:59Z
    assert "PRIVATE" not in str(keys)
    got = await world.call(
        M + "GetAppKey", mgmt.GetAppKeyRequest(project_id=project.id, app_id=app.app_id, key_id=added.id)
    )
    assert got.key.id == added.id

    # Not for an application that authenticates with a secret, until its auth method changes.
    basic = await world.call(M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=project.id, name="basic"))
    add_to_basic = mgmt.AddAppKeyRequest(project_id=project.id, app_id=basic.app_id)
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "APP_AUTH_METHOD_NOT_PRIVATE_KEY_JWT",
        world.call(M + "AddAppKey", add_to_basic),
    )
    change = mgmt.UpdateAPIAppConfigRequest(
        project_id=project.id,
        app_id=basic.app_id,
        auth_method_type=app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT,
    )
    await world.call(M + "UpdateAPIAppConfig", change)
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION, "NO_CHANGES", world.call(M + "UpdateAPIAppConfig", change)
    )
    await expect_error(
        grpc.StatusCode.FAILED_PRECONDITION,
        "APP_AUTH_METHOD_NOT_BASIC",
        world.call(
            M + "RegenerateAPIClientSecret",
            mgmt.RegenerateAPIClientSecretRequest(project_id=project.id, app_id=basic.app_id),
        ),
    )
    assert (await world.call(M + "AddAppKey", add_to_basic)).key_details
    # And back: a secret is made anew.
    change.auth_method_type = app_pb2.API_AUTH_METHOD_TYPE_BASIC
    await world.call(M + "UpdateAPIAppConfig", change)
    again = await world.call(
        M + "RegenerateAPIClientSecret",
        mgmt.RegenerateAPIClientSecretRequest(project_id=project.id, app_id=basic.app_id),
    )
    assert is_well_formed(again.client_secret)

    remove = mgmt.RemoveAppKeyRequest(project_id=project.id, app_id=app.app_id, key_id=added.id)
    await world.call(M + "RemoveAppKey", remove)
    await expect_error(grpc.StatusCode.NOT_FOUND, "KEY_NOT_FOUND", world.call(M + "RemoveAppKey", remove))
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "KEY_NOT_FOUND",
        world.call(
            M + "GetAppKey",
            mgmt.GetAppKeyRequest(project_id=project.id, app_id=app.app_id, key_id=added.id),
        ),
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "APP_NOT_FOUND",
        world.call(M + "ListAppKeys", mgmt.ListAppKeysRequest(project_id=project.id, app_id="1")),
    )
    refused = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(M + "AddAppKey", mgmt.AddAppKeyRequest(project_id=project.id, app_id="")),
    )
    assert "app_id" in refused.violations

    # Another organisation's project is as absent as one that does not exist.
    other = await world.org()
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "PROJECT_NOT_FOUND",
        world.call(
            M + "AddAppKey", mgmt.AddAppKeyRequest(project_id=project.id, app_id=app.app_id), org=other
        ),
    )


async def test_the_native_app_keys(world: World) -> None:
    project = await world.call("AddProject", project_pb.AddProjectRequest(name=unique_name("native-keys")))
    app = await world.call(
        "AddApiApp",
        project_pb.AddApiAppRequest(
            project_id=project.project_id, name="rs", auth_method=project_pb.API_AUTH_METHOD_PRIVATE_KEY_JWT
        ),
    )
    assert app.client_secret == ""
    public_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    uploaded = await world.call(
        "AddAppKey",
        project_pb.AddAppKeyRequest(project_id=project.project_id, app_id=app.app_id, public_key=public_pem),
    )
    assert (uploaded.key_content, uploaded.HasField("expiration_date")) == (b"", False)
    generated = await world.call(
        "AddAppKey", project_pb.AddAppKeyRequest(project_id=project.project_id, app_id=app.app_id)
    )
    assert json.loads(generated.key_content)["type"] == "application"
    listed = await world.call(
        "ListAppKeys", project_pb.ListAppKeysRequest(project_id=project.project_id, app_id=app.app_id)
    )
    assert [(k.key_id, k.key_type, k.state) for k in listed.keys] == [
        (uploaded.key_id, "EC", user_pb.KEY_STATE_ACTIVE),
        (generated.key_id, "RSA", user_pb.KEY_STATE_ACTIVE),
    ]
    [shown] = (await world.call("ListApps", project_pb.ListAppsRequest(project_id=project.project_id))).apps
    assert shown.auth_method == project_pb.API_AUTH_METHOD_PRIVATE_KEY_JWT
    refused = await expect_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_ARGUMENT",
        world.call(
            "AddAppKey",
            project_pb.AddAppKeyRequest(
                project_id=project.project_id, app_id=app.app_id, public_key=b"-----BEGIN PRIVATE KEY-----"
            ),
        ),
    )
    assert "public_key" in refused.violations
    await world.call(
        "RemoveAppKey",
        project_pb.RemoveAppKeyRequest(
            project_id=project.project_id, app_id=app.app_id, key_id=uploaded.key_id
        ),
    )
    await world.call(
        "UpdateApiAppAuthMethod",
        project_pb.UpdateApiAppAuthMethodRequest(
            project_id=project.project_id, app_id=app.app_id, auth_method=project_pb.API_AUTH_METHOD_BASIC
        ),
    )
    secret = await world.call(
        "RegenerateApiAppSecret",
        project_pb.RegenerateApiAppSecretRequest(project_id=project.project_id, app_id=app.app_id),
    )
    assert is_well_formed(secret.client_secret)
    # Removing the application ends its keys.
    await world.call(
        "RemoveApp", project_pb.RemoveAppRequest(project_id=project.project_id, app_id=app.app_id)
    )
    await expect_error(
        grpc.StatusCode.NOT_FOUND,
        "APP_NOT_FOUND",
        world.call(
            "ListAppKeys", project_pb.ListAppKeysRequest(project_id=project.project_id, app_id=app.app_id)
        ),
    )


async def test_only_who_may_change_the_project_adds_a_key(world: World) -> None:
    """The escalation rule, as for the application's secret: a user manager may not."""
    app = await keyed_app(world)
    manager_id = await world.machine_user()
    await world.grant(manager_id, ["ORG_USER_MANAGER"])
    manager = await world.token_for(manager_id)
    await expect_error(
        grpc.StatusCode.PERMISSION_DENIED,
        "PERMISSION_DENIED",
        world.call(
            M + "AddAppKey",
            mgmt.AddAppKeyRequest(project_id=app.project_id, app_id=app.app_id),
            token=manager,
        ),
    )


async def test_an_assertion_without_kid_is_tried_on_few_keys(admin: World, base: str) -> None:
    """Each key tried is a signature verification, by anyone who knows a client id: without a
    kid, only the application's first MAX_KEYS_WITHOUT_KID keys are (the machine users' alike)."""
    app = await keyed_app(admin)
    value = await token(base, await machine(admin), audience(as_secret_app(app)))
    keys = [app]
    for _ in range(MAX_KEYS_WITHOUT_KID):
        added = await admin.call(
            M + "AddAppKey",
            mgmt.AddAppKeyRequest(project_id=app.project_id, app_id=app.app_id, type=authn.KEY_TYPE_JSON),
        )
        key = RSAKey.import_key(json.loads(added.key_details)["key"])
        keys.append(KeyedApp(app.project_id, app.app_id, app.client_id, added.id, key))
    first, beyond = keys[0], keys[-1]
    answer = await introspect_with(base, assertion_of(first, base, header={"kid": None}), value)
    assert answer.json()["active"] is True, answer.text
    answer = await introspect_with(base, assertion_of(beyond, base, header={"kid": None}), value)
    assert answer.status_code == 401, answer.text
    answer = await introspect_with(base, assertion_of(beyond, base), value)  # with its kid: found
    assert answer.json()["active"] is True, answer.text


async def test_an_application_introspects_with_its_key(admin: World, base: str) -> None:
    app = await keyed_app(admin)
    value = await token(base, await machine(admin), audience(as_secret_app(app)))
    # As passport-zitadel sends it: no client_id, aud the issuer, no jti (the same one reused).
    reused = assertion_of(app, base)
    for _ in range(2):
        answer = await introspect_with(base, reused, value)
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is True
    # With a client_id and a jti, aud the endpoint, no kid: the application's keys are tried.
    answer = await introspect_with(
        base,
        assertion_of(app, base + INTROSPECT_PATH, header={"kid": None}, jti=str(uuid.uuid4())),
        value,
        client_id=app.client_id,
    )
    assert answer.json()["active"] is True, answer.text
    assert (await introspect_with(base, reused, "nothing")).json() == INACTIVE
    # aud the token endpoint, as authlib's PrivateKeyJWT names it.
    to_token_endpoint = assertion_of(app, base + TOKEN_PATH)
    assert (await introspect_with(base, to_token_endpoint, value)).json()["active"] is True
    # An uploaded EC key signs ES256.
    ec_key = ECKey.generate_key("P-256")
    uploaded = await admin.call(
        "AddAppKey",
        project_pb.AddAppKeyRequest(
            project_id=app.project_id, app_id=app.app_id, public_key=ec_key.as_pem(private=False)
        ),
    )
    ec_app = KeyedApp(app.project_id, app.app_id, app.client_id, uploaded.key_id, ec_key)
    assert (await introspect_with(base, assertion_of(ec_app, base), value)).json()["active"] is True
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(base + "/.well-known/openid-configuration")).json()
    assert "private_key_jwt" in discovery["introspection_endpoint_auth_methods_supported"]
    assert "RS256" in discovery["introspection_endpoint_auth_signing_alg_values_supported"]
    # A removed key stops at once; so does every key of a removed application.
    await admin.call(
        M + "RemoveAppKey",
        mgmt.RemoveAppKeyRequest(project_id=app.project_id, app_id=app.app_id, key_id=app.key_id),
    )
    assert (await introspect_with(base, reused, value)).json() == REFUSED
    await admin.call(M + "RemoveApp", mgmt.RemoveAppRequest(project_id=app.project_id, app_id=app.app_id))
    assert (await introspect_with(base, assertion_of(ec_app, base), value)).json() == REFUSED


async def test_every_refusal_is_the_same_invalid_client(admin: World, base: str) -> None:
    app = await keyed_app(admin)
    other = await keyed_app(admin)
    value = await token(base, await machine(admin), audience(as_secret_app(app)))
    now = int(time.time())
    skew, longest = int(CLOCK_SKEW.total_seconds()), int(MAX_ASSERTION_LIFETIME.total_seconds())
    assert isinstance(app.key, RSAKey)
    public_pem = app.key.as_pem(private=False)
    replayed = assertion_of(app, base, jti=str(uuid.uuid4()))
    assert (await introspect_with(base, replayed, value)).json()["active"] is True
    _, payload, _ = replayed.split(".")
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"%s"}' % app.key_id.encode())
    claims = {"iss": app.client_id, "sub": app.client_id, "aud": base, "iat": now, "exp": now + 60}
    holder = await key_holder(admin)  # a machine user's key: no application's
    secret_app = await admin.call(
        M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=app.project_id, name="basic")
    )
    cases: dict[str, tuple[str, dict[str, str]]] = {
        "another application's key": (
            jwt.encode({"alg": "RS256", "kid": other.key_id}, claims, other.key),
            {},
        ),
        "signed by another key": (jwt.encode({"alg": "RS256", "kid": app.key_id}, claims, other.key), {}),
        "unknown client": (assertion_of(app, base, iss="1@2", sub="1@2"), {}),
        "a client id that is no client id": (assertion_of(app, base), {"client_id": "x\x00"}),
        "a client that authenticates with a secret": (
            assertion_of(app, base, iss=secret_app.client_id, sub=secret_app.client_id),
            {},
        ),
        "a machine key": (signed(holder, base), {"client_id": app.client_id}),
        "wrong audience": (assertion_of(app, "https://elsewhere.example"), {}),
        "a replay": (replayed, {}),
        "alg none": (unsigned_header.decode().rstrip("=") + "." + payload + ".", {}),
        "HS256 with the public key": (
            hs256_with(public_pem, {"alg": "HS256", "kid": app.key_id}, claims),
            {},
        ),
        "expired": (assertion_of(app, base, iat=now - 2000, exp=now - skew - 1), {}),
        "valid too long": (assertion_of(app, base, exp=now + longest + skew + 10), {}),
        "no iat": (assertion_of(app, base, iat=None), {}),
        "iss is not sub": (assertion_of(app, base, sub=other.client_id), {"client_id": app.client_id}),
        "client_id is not iss": (assertion_of(app, base), {"client_id": other.client_id}),
        "truncated signature": (assertion_of(app, base)[:-10], {}),
        "garbage": ("not.a.jwt", {"client_id": app.client_id}),
        "too long": (assertion_of(app, base, padding="x" * MAX_ASSERTION_LENGTH), {}),
    }
    for what, (assertion, form) in cases.items():
        answer = await introspect_with(base, assertion, value, **form)
        assert (answer.status_code, answer.json()) == (401, REFUSED), what
        assert value not in answer.text, what
        assert "www-authenticate" not in answer.headers, what
    # One method only; and the type must be the jwt-bearer one.
    async with httpx.AsyncClient() as http:
        both = await http.post(
            base + INTROSPECT_PATH,
            data={
                "token": value,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": replayed,
            },
            auth=(app.client_id, "secret"),
        )
        assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
        basic = await http.post(base + INTROSPECT_PATH, data={"token": value}, auth=(app.client_id, ""))
        assert (basic.status_code, basic.json()["error"]) == (401, "invalid_client")
    wrong_type = await introspect_with(base, replayed, value, client_assertion_type="urn:other")
    assert (wrong_type.status_code, wrong_type.json()["error"]) == (400, "invalid_request")


async def test_a_fuzz_of_client_assertions_authenticates_no_one_and_never_fails(
    admin: World, base: str
) -> None:
    """test_jwt_profile's hostile assertions, made of one the endpoint accepted (with a jti: any
    variant that still verified would be a replay): every one is refused 401 invalid_client (or,
    for an empty one, 400), never a 500 and never an answer."""
    app = await keyed_app(admin)
    value = await token(base, await machine(admin), audience(as_secret_app(app)))
    good = assertion_of(app, base, jti=str(uuid.uuid4()))
    assert (await introspect_with(base, good, value)).json()["active"] is True
    assert isinstance(app.key, RSAKey)
    holder = KeyHolder("", "", app.key_id, app.key)  # only its key id is read
    drawn: list[str] = []

    # Drawn first, then sent: hypothesis' given is synchronous, the client is not.
    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(hostile_assertions(holder, good))
    def draw(assertion: str) -> None:
        drawn.append(assertion)

    draw()
    for assertion in drawn:
        answer = await introspect_with(base, assertion, value)
        assert answer.status_code in (400, 401), (assertion, answer.status_code, answer.text)
        assert answer.json()["error"] in ("invalid_client", "invalid_request"), assertion
    # A new assertion still works: the fuzz refused what was wrong, not everything.
    assert (await introspect_with(base, assertion_of(app, base), value)).json()["active"] is True


async def test_an_applications_assertion_failures_are_limited(tmp_path: Path) -> None:
    """Forging an application's assertions meets the limits of guessing its secret: past the
    client's limit, even a good assertion is refused 429, with Retry-After."""
    limits = FailureLimits(per_client=3, per_source=50, window_s=60)
    running: Running = await start_service(config_for(tmp_path, failure_limits=limits))
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        world = await World.create(api, running.admin_token)
        app = await keyed_app(world)
        other = await keyed_app(world)
        url = f"http://127.0.0.1:{running.service.http_port}"
        value = await token(url, await machine(world), audience(as_secret_app(app)))
        forged = KeyedApp(app.project_id, app.app_id, app.client_id, app.key_id, other.key)
        statuses = [
            (await introspect_with(url, assertion_of(forged, url), value)).status_code for _ in range(3)
        ]
        assert statuses == [401] * 3
        refused = await introspect_with(url, assertion_of(app, url), value)
        assert refused.status_code == 429
        assert (refused.json()["error"], "retry-after" in refused.headers) == ("slow_down", True)
    finally:
        await api.close()
        await running.service.stop(0)
