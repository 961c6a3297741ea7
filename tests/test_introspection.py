"""Token introspection (RFC 7662) at `POST /oauth/v2/introspect`, on each store, on the HTTP port
and through Envoy: an API application of a project reads the tokens meant for its project, with
ZITADEL's claims; every other token, dead or meant for another API, is {"active": false} alone.
Also the project scopes at the token endpoint, and authlib's introspect_token as a client."""

import asyncio
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import authlib.deprecate  # noqa: F401 - installs an "always" filter of its own when first imported
import httpx
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.management.v1 import management_pb2 as mgmt

from server.domain.failure_limits import FailureLimits
from server.transport.oauth import INTROSPECT_PATH
from server.transport.revocation_endpoint import REVOKE_PATH
from tests.api import GrpcApi, exchange
from tests.service import Running, config_for, start_service
from tests.test_jwt_profile import grant, key_holder, signed
from tests.world import World, unique_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client

M = "ManagementService."
INACTIVE = {"active": False}


@dataclass
class App:
    project_id: str
    client_id: str
    secret: str


@dataclass
class Machine:
    user_id: str
    client_id: str
    secret: str
    secret_id: str


@pytest.fixture
async def admin(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


@pytest.fixture(params=["direct", "envoy"])
def base(request: pytest.FixtureRequest, running: Running) -> str:
    port = running.service.http_port if request.param == "direct" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


async def api_project(world: World, org: str | None = None, roles: tuple[str, ...] = ()) -> App:
    added = await world.call(M + "AddProject", mgmt.AddProjectRequest(name=unique_name("api")), org=org)
    for role in roles:
        await world.call(
            M + "AddProjectRole", mgmt.AddProjectRoleRequest(project_id=added.id, role_key=role), org=org
        )
    app = await world.call(M + "AddAPIApp", mgmt.AddAPIAppRequest(project_id=added.id, name="rs"), org=org)
    return App(added.id, app.client_id, app.client_secret)


async def machine(world: World, expires_in: timedelta | None = None) -> Machine:
    user_id = await world.machine_user(user_name=unique_name("introspected"))
    request = user_pb.CreateSecretRequest(user_id=user_id)
    if expires_in is not None:
        expiry = timestamp_pb2.Timestamp()
        expiry.FromDatetime(datetime.now(UTC) + expires_in)
        request.expiration_date.CopyFrom(expiry)
    issued = await world.call("CreateSecret", request)
    return Machine(user_id, issued.client_id, issued.client_secret, issued.secret_id)


async def token(base: str, m: Machine, *scopes: str) -> str:
    answer = await exchange(base, m.client_id, m.secret, scope=" ".join(scopes))
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == (" ".join(scopes) or "api")
    return str(answer.json()["access_token"])


def audience(app: App) -> str:
    return f"urn:zitadel:iam:org:project:id:{app.project_id}:aud"


async def introspect(base: str, app: App, value: str) -> dict[str, object]:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            base + INTROSPECT_PATH, data={"token": value}, auth=(app.client_id, app.secret)
        )
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    claims: dict[str, object] = answer.json()
    return claims


async def test_a_token_for_the_project_is_active_with_zitadels_claims(admin: World, base: str) -> None:
    shop = await api_project(admin, roles=("reader", "writer"))
    other = await api_project(admin)
    m = await machine(admin)
    await admin.call(
        M + "AddUserGrant",
        mgmt.AddUserGrantRequest(user_id=m.user_id, project_id=shop.project_id, role_keys=["reader"]),
    )
    scopes = (
        "openid",
        audience(shop),
        "urn:zitadel:iam:org:projects:roles",
        "urn:zitadel:iam:user:resourceowner",
    )
    value = await token(base, m, *scopes)
    claims = await introspect(base, shop, value)
    assert claims["active"] is True
    assert (claims["sub"], claims["username"], claims["client_id"]) == (m.user_id, m.client_id, m.client_id)
    assert (claims["scope"], claims["token_type"], claims["aud"]) == (
        " ".join(scopes),
        "Bearer",
        [shop.project_id],
    )
    assert claims["iss"] == base
    assert isinstance(claims["exp"], int) and isinstance(claims["iat"], int)  # noqa: PT018
    assert claims["nbf"] == claims["iat"] < claims["exp"]
    assert claims["jti"]
    assert claims["urn:zitadel:iam:user:resourceowner:id"] == admin.home_org
    assert claims["urn:zitadel:iam:user:resourceowner:name"]
    roles = {"reader": {admin.home_org: claims["urn:zitadel:iam:user:resourceowner:name"]}}
    assert claims["urn:zitadel:iam:org:project:roles"] == roles
    assert claims[f"urn:zitadel:iam:org:project:{shop.project_id}:roles"] == roles
    # The audience rule: another project's application finds it inactive, and learns nothing.
    assert await introspect(base, other, value) == INACTIVE
    # One role by name asserts that role only, if granted; no role scope, no role claim.
    only = await introspect(
        base, shop, await token(base, m, audience(shop), "urn:zitadel:iam:org:project:role:writer")
    )
    assert only["active"] is True
    assert "urn:zitadel:iam:org:project:roles" not in only
    assert "urn:zitadel:iam:user:resourceowner:id" not in only
    # A token for this service's API alone is no project's.
    assert await introspect(base, shop, await token(base, m)) == INACTIVE


async def test_dead_tokens_are_inactive_and_nothing_else(admin: World, base: str) -> None:
    app = await api_project(admin)
    assert await introspect(base, app, "not-a-token") == INACTIVE
    assert await introspect(base, app, "") == INACTIVE
    assert await introspect(base, app, "x" * 300) == INACTIVE

    brief = await machine(admin, expires_in=timedelta(seconds=2))
    expiring = await token(base, brief, audience(app))
    assert (await introspect(base, app, expiring))["active"] is True

    deleted, rotated, deactivated, removed, revoked = [await machine(admin) for _ in range(5)]
    tokens = {
        m.user_id: await token(base, m, audience(app))
        for m in (deleted, rotated, deactivated, removed, revoked)
    }
    for value in tokens.values():
        assert (await introspect(base, app, value))["active"] is True
    await admin.call(
        "DeleteSecret", user_pb.DeleteSecretRequest(user_id=deleted.user_id, secret_id=deleted.secret_id)
    )
    rotate = user_pb.RotateSecretRequest(
        user_id=rotated.user_id, grace_period=duration_pb2.Duration(seconds=0)
    )
    await admin.call("RotateSecret", rotate)
    await admin.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=deactivated.user_id))
    await admin.call("RemoveUser", user_pb.RemoveUserRequest(user_id=removed.user_id))
    async with httpx.AsyncClient() as http:
        reported = await http.post(base + REVOKE_PATH, json={"secrets": [revoked.secret]})
    assert reported.status_code == 200, reported.text
    for value in tokens.values():
        assert await introspect(base, app, value) == INACTIVE
    await asyncio.sleep(2.1)
    assert await introspect(base, app, expiring) == INACTIVE
    # The application's own end: a removed application, or a project removed, reads nothing.
    live = await token(base, await machine(admin), audience(app))
    await admin.call(M + "RemoveProject", mgmt.RemoveProjectRequest(id=app.project_id))
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            base + INTROSPECT_PATH, data={"token": live}, auth=(app.client_id, app.secret)
        )
    assert answer.status_code == 401


async def test_the_application_authenticates(admin: World, base: str) -> None:
    app = await api_project(admin)
    value = await token(base, await machine(admin), audience(app))
    async with httpx.AsyncClient() as http:
        url = base + INTROSPECT_PATH
        # Another last character (a secret that ends in "x" would be right with "x": 1 run in 64).
        other = app.secret[:-1] + ("y" if app.secret.endswith("x") else "x")
        wrong = await http.post(url, data={"token": value}, auth=(app.client_id, other))
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_client"
        assert wrong.headers["www-authenticate"].startswith("Basic")
        assert value not in wrong.text
        for client_id in ("1@2", "1\x00@2", "x" * 300, ""):
            unknown = await http.post(url, data={"token": value}, auth=(client_id, app.secret))
            assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client"), client_id
        posted = await http.post(
            url, data={"token": value, "client_id": app.client_id, "client_secret": app.secret}
        )
        assert posted.json()["active"] is True
        assert (await http.post(url, data={}, auth=(app.client_id, app.secret))).status_code == 400
        assert (await http.get(url)).status_code == 405
    # A regenerated secret replaces the old one at once.
    again = await admin.call(
        M + "RegenerateAPIClientSecret",
        mgmt.RegenerateAPIClientSecretRequest(project_id=app.project_id, app_id=app.client_id.split("@")[0]),
    )
    async with httpx.AsyncClient() as http:
        old = await http.post(base + INTROSPECT_PATH, data={"token": value}, auth=(app.client_id, app.secret))
        new = await http.post(
            base + INTROSPECT_PATH, data={"token": value}, auth=(app.client_id, again.client_secret)
        )
    assert old.status_code == 401
    assert new.json()["active"] is True


async def test_project_scopes_at_the_token_endpoint(admin: World, base: str) -> None:
    m = await machine(admin)
    theirs = await api_project(admin, org=await admin.org())
    for scope in (
        "urn:zitadel:iam:org:project:id:1:aud",  # no such project
        audience(theirs),  # another organisation's
        "urn:zitadel:iam:org:project:role:a b",
    ):
        answer = await exchange(base, m.client_id, m.secret, scope=scope)
        assert (answer.status_code, answer.json()["error"]) == (400, "invalid_scope"), scope
    # Today's scopes keep their meaning: the token works on this service's API.
    await admin.grant(m.user_id, ["ORG_USER_MANAGER"])
    mine = await api_project(admin)
    value = await token(base, m, "openid", "urn:zitadel:iam:org:project:id:zitadel:aud", audience(mine))
    user = await admin.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=m.user_id), token=value)
    assert user.user.id == m.user_id


async def test_discovery_and_authlib(admin: World, base: str) -> None:
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(base + "/.well-known/openid-configuration")).json()
    assert discovery["introspection_endpoint"] == base + INTROSPECT_PATH
    assert "client_secret_basic" in discovery["introspection_endpoint_auth_methods_supported"]
    assert "urn:zitadel:iam:org:projects:roles" in discovery["scopes_supported"]
    app = await api_project(admin)
    m = await machine(admin)
    async with AsyncOAuth2Client(
        client_id=m.client_id, client_secret=m.secret, scope=f"openid {audience(app)}"
    ) as oauth:
        issued = await oauth.fetch_token(discovery["token_endpoint"], grant_type="client_credentials")
    async with AsyncOAuth2Client(client_id=app.client_id, client_secret=app.secret) as resource_server:
        answer = await resource_server.introspect_token(
            discovery["introspection_endpoint"], token=issued["access_token"]
        )
        assert answer.status_code == 200
        assert answer.json()["active"] is True
        assert answer.json()["sub"] == m.user_id
        dead = await resource_server.introspect_token(discovery["introspection_endpoint"], token="nothing")
        assert dead.json() == INACTIVE


async def test_the_applications_failures_are_limited(tmp_path: Path) -> None:
    """Guessing an application's secret meets the token endpoint's limits: past the client's
    limit, even the right secret is refused 429, with Retry-After."""
    limits = FailureLimits(per_client=3, per_source=50, window_s=60)
    running = await start_service(config_for(tmp_path, failure_limits=limits))
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        world = await World.create(api, running.admin_token)
        app = await api_project(world)
        base = f"http://127.0.0.1:{running.service.http_port}"
        value = await token(base, await machine(world), audience(app))
        async with httpx.AsyncClient() as http:

            async def attempt(secret: str) -> httpx.Response:
                return await http.post(
                    base + INTROSPECT_PATH, data={"token": value}, auth=(app.client_id, secret)
                )

            assert [(await attempt(f"guess-{i}")).status_code for i in range(3)] == [401] * 3
            refused = await attempt(app.secret)
            assert refused.status_code == 429
            assert (refused.json()["error"], "retry-after" in refused.headers) == ("slow_down", True)
    finally:
        await api.close()
        await running.service.stop(0)


async def test_a_key_earns_a_token_for_its_own_organisations_projects_only(admin: World, base: str) -> None:
    """The audience rule holds for every grant, not only the secret's: a machine key asking for
    another organisation's project is refused, or that project's API would take its token."""
    holder = await key_holder(admin)
    theirs = await api_project(admin, org=await admin.org())
    mine = await api_project(admin)
    refused = await grant(base, signed(holder, base), scope=audience(theirs))
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_scope")
    earned = await grant(base, signed(holder, base), scope=audience(mine))
    assert earned.status_code == 200, earned.text
    value = earned.json()["access_token"]
    assert (await introspect(base, mine, value))["active"] is True
    assert await introspect(base, theirs, value) == INACTIVE
