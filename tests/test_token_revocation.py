"""Token revocation (RFC 7009) at `POST /oauth/v2/revoke`, on each store, on the HTTP port and
through Envoy: the client that holds an access token ends it, at once for introspection and this
service's API; a token of another client, a PAT or an unknown string is answered the same 200 and
left alone. Also discovery's revocation fields and RFC 8414's metadata document, authlib's
revoke_token and metadata validation, and two processes on one PostgreSQL."""

import asyncio
import json
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import authlib.deprecate  # noqa: F401 - installs an "always" filter of its own when first imported
import grpc
import httpx
import pytest
from machinesecrets.v1 import audit_service_pb2 as audit_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.caller_cache import CALLER_CACHE_TTL_S
from server.domain.failure_limits import FailureLimits
from server.transport.oauth import DISCOVERY_PATH, METADATA_PATH, REVOCATION_PATH
from tests import postgres
from tests.api import ApiError, GrpcApi, exchange
from tests.processes import ServerProcess
from tests.service import Running, config_for, start_service
from tests.test_introspection import INACTIVE, api_project, audience, introspect, machine, token
from tests.test_jwt_profile import CLIENT_ASSERTION_TYPE, grant, key_holder, signed
from tests.test_zitadel_clients import NODE_CLIENT, install_node_clients
from tests.world import World

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
    from authlib.oidc.discovery import OpenIDProviderMetadata

NO_LIMITS = {"MS_SOURCE_FAILURE_LIMIT": "100000", "MS_CLIENT_FAILURE_LIMIT": "100000"}


@pytest.fixture
async def admin(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


@pytest.fixture(params=["direct", "envoy"])
def base(request: pytest.FixtureRequest, running: Running) -> str:
    port = running.service.http_port if request.param == "direct" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


async def revoke(base: str, value: str, auth: tuple[str, str] | None = None, **form: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        if auth is None:
            return await http.post(base + REVOCATION_PATH, data={"token": value, **form})
        return await http.post(base + REVOCATION_PATH, data={"token": value, **form}, auth=auth)


def revoked_fine(answer: httpx.Response) -> None:
    """§2.2: 200, whatever was revoked; never cached."""
    assert answer.status_code == 200, answer.text
    assert answer.json() == {}
    assert answer.headers["cache-control"] == "no-store"


async def works_on_the_api(world: World, value: str) -> bool:
    try:
        await world.call("GetMe", user_pb.GetMeRequest(), token=value)
    except ApiError as error:
        refused = error
    else:
        return True
    assert refused.code == grpc.StatusCode.UNAUTHENTICATED, refused
    return False


async def test_the_holder_revokes_its_token_at_once(admin: World, base: str) -> None:
    app = await api_project(admin)
    m = await machine(admin)
    by_basic, by_post, kept = [await token(base, m, audience(app)) for _ in range(3)]
    for value in (by_basic, by_post, kept):
        assert (await introspect(base, app, value))["active"] is True
        assert await works_on_the_api(admin, value)
    revoked_fine(await revoke(base, by_basic, auth=(m.client_id, m.secret)))
    # client_secret_post, with a wrong hint: §2.1 lets the server look beyond it.
    revoked_fine(
        await revoke(
            base, by_post, client_id=m.client_id, client_secret=m.secret, token_type_hint="refresh_token"
        )
    )
    for value in (by_basic, by_post):
        assert await introspect(base, app, value) == INACTIVE
        assert not await works_on_the_api(admin, value)
        revoked_fine(await revoke(base, value, auth=(m.client_id, m.secret)))  # again: nothing left
    # One token, not the client's others.
    assert (await introspect(base, app, kept))["active"] is True
    assert await works_on_the_api(admin, kept)
    # The audit: the token's end, by the client's secret, over the OAuth endpoint.
    listed = audit_pb.ListUserEventsRequest(user_id=m.user_id, page_size=100)
    events = (await admin.call("ListUserEvents", listed)).events
    ends = [e for e in events if e.event_type == "token.access.revoked"]
    assert len(ends) == 2
    for end in ends:
        assert (end.actor.user_id, end.actor.credential_kind) == (m.user_id, "secret")
        assert (end.actor.credential_id, end.actor.transport) == (m.secret_id, "oauth")
        assert end.payload.fields["user_id"].string_value == m.user_id


async def test_a_jwt_access_token_is_revoked_like_an_opaque_one(admin: World, base: str) -> None:
    """A JWT is a row of the tokens table too: revoked, it is inactive at introspection and
    refused on this service's API at once (a resource server that verifies it offline cannot see
    that: docs/protecting-your-api.md)."""
    app = await api_project(admin)
    m = await machine(admin)
    jwt_type = user_pb.UpdateMachineUserRequest(
        user_id=m.user_id, access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT
    )
    await admin.call("UpdateMachineUser", jwt_type)
    value = await token(base, m, audience(app))
    assert value.count(".") == 2  # a JWS, not an opaque token
    assert (await introspect(base, app, value))["active"] is True
    assert await works_on_the_api(admin, value)
    revoked_fine(await revoke(base, value, auth=(m.client_id, m.secret)))
    assert await introspect(base, app, value) == INACTIVE
    assert not await works_on_the_api(admin, value)


async def test_nothing_but_the_holders_own_tokens(admin: World, base: str) -> None:
    """A token of another client, a PAT, an unknown or absurd string: 200, and nothing revoked
    (§2.2: the answer tells nothing of whether a token exists, or whose it is)."""
    app, other_app = await api_project(admin), await api_project(admin)
    holder, stranger = await machine(admin), await machine(admin)
    value = await token(base, holder, audience(app))
    _, pat = await admin.caller(["ORG_USER_MANAGER"])
    for target in (value, pat):
        revoked_fine(await revoke(base, target, auth=(stranger.client_id, stranger.secret)))
        revoked_fine(await revoke(base, target, auth=(other_app.client_id, other_app.secret)))
    revoked_fine(await revoke(base, pat, auth=(holder.client_id, holder.secret)))  # a PAT is no client's
    for absurd in ("", "not-a-token", "x" * 300, "\u0301" * 150):
        revoked_fine(await revoke(base, absurd, auth=(holder.client_id, holder.secret)))
    assert (await introspect(base, app, value))["active"] is True
    assert await works_on_the_api(admin, value)
    assert await works_on_the_api(admin, pat)


async def test_an_application_revokes_a_token_meant_for_its_project(admin: World, base: str) -> None:
    app = await api_project(admin)
    m = await machine(admin)
    value = await token(base, m, audience(app))
    revoked_fine(await revoke(base, value, auth=(app.client_id, app.secret)))
    assert await introspect(base, app, value) == INACTIVE
    assert not await works_on_the_api(admin, value)
    listed = audit_pb.ListUserEventsRequest(user_id=m.user_id, page_size=100)
    [end] = [
        e
        for e in (await admin.call("ListUserEvents", listed)).events
        if e.event_type == "token.access.revoked"
    ]
    assert (end.actor.credential_kind, end.actor.credential_id) == ("app_secret", app.client_id.split("@")[0])
    assert (end.actor.user_id, end.actor.org_id) == ("", admin.home_org)


async def test_a_key_holder_revokes_by_private_key_jwt(admin: World, base: str) -> None:
    holder = await key_holder(admin)
    earned = await grant(base, signed(holder, base))
    assert earned.status_code == 200, earned.text
    value = earned.json()["access_token"]
    assert await works_on_the_api(admin, value)
    # An assertion as private_key_jwt sends it: iss = sub = the client id, the user name.
    assertion = signed(holder, base, iss=holder.user_name, sub=holder.user_name)
    answer = await revoke(
        base, value, client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=assertion
    )
    revoked_fine(answer)
    assert not await works_on_the_api(admin, value)
    # A key of another client authenticates nobody.
    other = await key_holder(admin)
    forged = signed(other, base, iss=holder.user_name, sub=holder.user_name, header={"kid": holder.key_id})
    refused = await revoke(base, value, client_assertion_type=CLIENT_ASSERTION_TYPE, client_assertion=forged)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")


async def test_refusals_are_oauth_errors(admin: World, base: str) -> None:
    m = await machine(admin)
    value = await token(base, m)
    wrong = await revoke(
        base, value, auth=(m.client_id, m.secret[:-1] + ("y" if m.secret.endswith("x") else "x"))
    )
    assert (wrong.status_code, wrong.json()["error"]) == (401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")
    assert value not in wrong.text
    assert m.secret not in wrong.text
    for client_id in ("nobody", "1@2", "1\x00@2", "x" * 300):
        unknown = await revoke(base, value, auth=(client_id, m.secret))
        assert (unknown.status_code, unknown.json()["error"]) == (401, "invalid_client"), client_id
    anonymous = await revoke(base, value)
    assert (anonymous.status_code, anonymous.json()["error"]) == (401, "invalid_client")
    assert await works_on_the_api(admin, value)  # none of those revoked it
    async with httpx.AsyncClient() as http:
        url = base + REVOCATION_PATH
        no_token = await http.post(url, data={}, auth=(m.client_id, m.secret))
        assert (no_token.status_code, no_token.json()["error"]) == (400, "invalid_request")
        both = await http.post(
            url, data={"token": value, "client_secret": m.secret}, auth=(m.client_id, m.secret)
        )
        assert (both.status_code, both.json()["error"]) == (400, "invalid_request")
        twice = await http.post(
            url, content=f"token={value}&token={value}", auth=(m.client_id, m.secret), headers=FORM
        )
        assert (twice.status_code, twice.json()["error"]) == (400, "invalid_request")
        as_json = await http.post(url, json={"token": value}, auth=(m.client_id, m.secret))
        assert (as_json.status_code, as_json.json()["error"]) == (400, "invalid_request")
        got = await http.get(url)
        assert (got.status_code, got.json()["error"]) == (405, "invalid_request")
    assert await works_on_the_api(admin, value)


FORM = {"content-type": "application/x-www-form-urlencoded"}


async def test_the_clients_failures_are_limited(tmp_path: Path) -> None:
    """Guessing a client's secret at the revocation endpoint meets the token endpoint's limits,
    counted together with them: past the client's limit, even the right secret is 429."""
    limits = FailureLimits(per_client=3, per_source=50, window_s=60)
    running = await start_service(config_for(tmp_path, failure_limits=limits))
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        world = await World.create(api, running.admin_token)
        base = f"http://127.0.0.1:{running.service.http_port}"
        m = await machine(world)
        value = await token(base, m)
        statuses = [
            (await revoke(base, value, auth=(m.client_id, f"guess-{i}"))).status_code for i in range(2)
        ]
        guessed = await exchange(base, m.client_id, "guess-at-the-token-endpoint")
        assert [*statuses, guessed.status_code] == [401, 401, 401]
        refused = await revoke(base, value, auth=(m.client_id, m.secret))
        assert refused.status_code == 429
        assert (refused.json()["error"], "retry-after" in refused.headers) == ("slow_down", True)
        assert await works_on_the_api(world, value)
        # An application's secret, likewise.
        app = await api_project(world)
        for i in range(3):
            assert (await revoke(base, value, auth=(app.client_id, f"guess-{i}"))).status_code == 401
        assert (await revoke(base, value, auth=(app.client_id, app.secret))).status_code == 429
    finally:
        await api.close()
        await running.service.stop(0)


async def test_discovery_names_the_endpoints_and_validates(admin: World, base: str) -> None:
    async with httpx.AsyncClient() as http:
        openid = (await http.get(base + DISCOVERY_PATH)).json()
        metadata_answer = await http.get(base + METADATA_PATH)
    assert metadata_answer.status_code == 200
    metadata = metadata_answer.json()
    assert metadata == openid  # RFC 8414 §3: the same document at its own well-known path
    assert metadata["issuer"] == base
    assert metadata["revocation_endpoint"] == base + REVOCATION_PATH
    assert metadata["introspection_endpoint"] == base + "/oauth/v2/introspect"
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        metadata["revocation_endpoint_auth_methods_supported"]
    )
    assert "client_secret_basic" in metadata["introspection_endpoint_auth_methods_supported"]
    assert {
        "urn:zitadel:iam:org:projects:roles",
        "urn:zitadel:iam:user:resourceowner",
        "urn:zitadel:iam:org:project:id:{projectId}:aud",
        "urn:zitadel:iam:org:project:role:{roleKey}",
    } <= set(metadata["scopes_supported"])
    assert metadata["subject_types_supported"] == ["public"]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]
    # authlib's validators, unmodified: RFC 8414's in full; OpenID Connect Discovery's every rule
    # but jwks_uri's, which the JWT access tokens' keys bring (the document has none before them).
    AuthorizationServerMetadata(metadata).validate()
    oidc = OpenIDProviderMetadata(openid)
    for key in OpenIDProviderMetadata.REGISTRY_KEYS:
        if key != "jwks_uri" or "jwks_uri" in openid:
            getattr(oidc, f"validate_{key}")()


async def test_authlibs_revoke_token(admin: World, base: str) -> None:
    app = await api_project(admin)
    m = await machine(admin)
    async with httpx.AsyncClient() as http:
        metadata = (await http.get(base + METADATA_PATH)).json()
    async with AsyncOAuth2Client(
        client_id=m.client_id, client_secret=m.secret, scope=f"openid {audience(app)}"
    ) as oauth:
        issued = await oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert await works_on_the_api(admin, issued["access_token"])
        answer = await oauth.revoke_token(
            metadata["revocation_endpoint"], token=issued["access_token"], token_type_hint="access_token"
        )
        assert answer.status_code == 200
    assert not await works_on_the_api(admin, issued["access_token"])
    # client_secret_post, and an application's Basic, as authlib sends them.
    async with AsyncOAuth2Client(
        client_id=m.client_id,
        client_secret=m.secret,
        revocation_endpoint_auth_method="client_secret_post",
        scope=audience(app),
    ) as oauth:
        issued = await oauth.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
        assert (
            await oauth.revoke_token(metadata["revocation_endpoint"], token=issued["access_token"])
        ).status_code == 200
    assert await introspect(base, app, issued["access_token"]) == INACTIVE
    value = await token(base, m, audience(app))
    async with AsyncOAuth2Client(client_id=app.client_id, client_secret=app.secret) as resource_server:
        answer = await resource_server.revoke_token(metadata["revocation_endpoint"], token=value)
        assert answer.status_code == 200
    assert await introspect(base, app, value) == INACTIVE


@pytest.mark.parametrize("backend", ["postgres"])
async def test_another_process_on_the_same_database_refuses_it(tmp_path: Path, backend: str) -> None:
    """Revoked on one process: introspection on another refuses the token at once, and its API
    within its caller cache's bound."""
    with postgres.throwaway_database() as url:
        processes = [await ServerProcess.start(url, tmp_path, **NO_LIMITS) for _ in range(2)]
        try:
            apis = [GrpcApi("grpc", f"127.0.0.1:{p.grpc_port}") for p in processes]
            admin_token = (tmp_path / "admin.pat").read_text().strip()
            worlds = [await World.create(api, admin_token) for api in apis]
            bases = [f"http://127.0.0.1:{p.http_port}" for p in processes]
            app = await api_project(worlds[0])
            m = await machine(worlds[0])
            value = await token(bases[0], m, audience(app))
            assert await works_on_the_api(worlds[1], value)  # now in the second one's cache
            assert (await introspect(bases[1], app, value))["active"] is True
            revoked_fine(await revoke(bases[0], value, auth=(m.client_id, m.secret)))
            assert await introspect(bases[1], app, value) == INACTIVE
            assert not await works_on_the_api(worlds[0], value)
            await asyncio.sleep(CALLER_CACHE_TTL_S + 0.1)
            assert not await works_on_the_api(worlds[1], value)
            for api in apis:
                await api.close()
        finally:
            for process in processes:
                await process.stop()


@pytest.mark.parametrize("door", ["direct", "envoy"])
async def test_openid_clients_introspection_and_revocation(admin: World, running: Running, door: str) -> None:
    """openid-client 6 (npm), unmodified: discovery by both documents, client credentials,
    introspection by an API application, revocation by the client (Basic and form) and by the
    application, each on the HTTP port and through Envoy."""
    await install_node_clients()
    port = running.service.http_port if door == "direct" else running.service.envoy_port
    app = await api_project(admin)
    m = await machine(admin)
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "node",
            "revocation.mjs",
            f"http://127.0.0.1:{port}",
            m.client_id,
            m.secret,
            app.client_id,
            app.secret,
            f"openid {audience(app)}",
        ],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["revocationEndpoint"] == f"http://127.0.0.1:{port}{REVOCATION_PATH}"
    assert seen["basic"] == {"before": True, "after": False}, seen
    assert seen["post"] == {"before": True, "after": False}, seen
    assert seen["introspected"] == {
        "active": True,
        "sub": m.user_id,
        "clientId": m.client_id,
        "aud": [app.project_id],
    }, seen
    assert seen["byApplication"] is False, seen
    assert seen["unknown"] == "revoked", seen
    # A wrong secret: 401 with a Basic challenge, which openid-client reports as such.
    assert seen["wrongSecret"]["code"] == "OAUTH_WWW_AUTHENTICATE_CHALLENGE", seen
