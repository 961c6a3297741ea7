"""Workload identity federation (issue 34), end to end on both stores: a small OIDC issuer of the
test's own on loopback (discovery and JWKS; keys rotated mid-test), trusted by the organisation
(MS_FEDERATION_ALLOWED_ORIGINS names its origin); Kubernetes- and GitHub-Actions-shaped tokens
exchanged at the token endpoint, directly and through Envoy; every refusal the one invalid_client
answer; issuers that answer slowly, hugely, or with a redirect to a private address; inline
JWKS; and the RPCs over every transport."""

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet, RSAKey
from machinesecrets.v1 import audit_service_pb2 as audit_pb
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.failure_limits import FailureLimits
from server.domain.federation import MAX_KEYS_WITHOUT_KID, MAX_TOKEN_LIFETIME
from server.domain.issuer_keys import FETCH_TIMEOUT, MAX_DOCUMENT_BYTES, FetchRefused, IssuerKeys
from server.transport.oauth import KEYS_PATH
from tests import postgres
from tests.api import ApiError, GrpcApi
from tests.processes import ServerProcess
from tests.service import BACKENDS, TRANSPORTS, Running, client, config_for, start_service
from tests.test_jwt_profile import b64url, hs256_with
from tests.world import World, unique_name

TOKEN_PATH = "/oauth/v2/token"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFUSED = {"error": "invalid_client", "error_description": "client authentication failed"}
AUDIENCE = "https://secrets.example.com"


@dataclass
class Tenant:
    """One issuer of the test issuer: its keys (the JWKS lists `published`), and how it answers."""

    name: str
    keys: list[RSAKey | ECKey] = field(default_factory=list)
    published: list[RSAKey | ECKey] = field(default_factory=list)
    mode: str = "normal"  # normal, slow, huge, redirect, down, drip
    jwks_fetches: int = 0

    def rotate(self) -> RSAKey:
        """A new key, and the JWKS lists only it from now on."""
        key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex}, private=True)
        self.keys.append(key)
        self.published = [key]
        return key


class OidcIssuer:
    """Issuers at http://127.0.0.1:<port>/<tenant>: discovery and JWKS, over a thread's HTTP server."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                name, _, rest = self.path.lstrip("/").partition("/")
                tenant = issuer.tenants.get(name)
                if tenant is None:
                    self._answer(404, b"{}")
                elif rest == ".well-known/openid-configuration":
                    base = issuer.url(name)
                    document = {"issuer": base, "jwks_uri": base + "/jwks"}
                    self._answer(200, json.dumps(document).encode())
                elif rest == "jwks":
                    tenant.jwks_fetches += 1
                    self._jwks(tenant)
                else:
                    self._answer(404, b"{}")

            def _jwks(self, tenant: Tenant) -> None:
                if tenant.mode == "drip":  # a header byte a second, for longer than any deadline
                    with contextlib.suppress(OSError):
                        self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                        for _ in range(int(FETCH_TIMEOUT) * 4):
                            self.wfile.write(b"x")
                            self.wfile.flush()
                            time.sleep(1)
                    return
                if tenant.mode == "down":
                    self._answer(503, b"{}")
                    return
                if tenant.mode == "slow":
                    time.sleep(FETCH_TIMEOUT + 2)
                if tenant.mode == "redirect":
                    self.send_response(302)
                    self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                    self.end_headers()
                    return
                keys = [k.as_dict(private=False) for k in tenant.published]
                body = json.dumps({"keys": keys}).encode()
                if tenant.mode == "huge":
                    body = json.dumps({"keys": keys, "pad": "x" * (MAX_DOCUMENT_BYTES * 2)}).encode()
                self._answer(200, body, "max-age=600")

            def _answer(self, status: int, body: bytes, cache: str = "") -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                if cache:
                    self.send_header("cache-control", cache)
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str) -> str:
        return f"{self.origin}/{name}"

    def tenant(self, mode: str = "normal") -> Tenant:
        tenant = Tenant(unique_name("idp"), mode=mode)
        tenant.rotate()
        self.tenants[tenant.name] = tenant
        return tenant

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def issuer() -> Iterator[OidcIssuer]:
    started = OidcIssuer()
    yield started
    started.close()


@pytest.fixture(scope="module", params=BACKENDS)
async def service(
    request: pytest.FixtureRequest, issuer: OidcIssuer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    folder = tmp_path_factory.mktemp(f"federation-{request.param}")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if request.param == "postgres" else None
        config = config_for(folder, database_url=url, envoy=True, federation_allowed_origins=(issuer.origin,))
        started = await start_service(config)
        yield started
        await started.service.stop(0)


@pytest.fixture
async def admin(service: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{service.service.grpc_port}")
    yield await World.create(api, service.admin_token)
    await api.close()


def endpoints(running: Running) -> dict[str, str]:
    return {
        "direct": f"http://127.0.0.1:{running.service.http_port}",
        "envoy": f"http://127.0.0.1:{running.service.envoy_port}",
    }


@dataclass
class Workload:
    user_id: str
    user_name: str
    tenant: Tenant
    issuer: str
    issuer_id: str
    credential_id: str


async def trust(admin: World, issuer: OidcIssuer, tenant: Tenant, **keys: str) -> str:
    request = org_pb.AddTrustedIssuerRequest(issuer=issuer.url(tenant.name), description="lab", **keys)
    return str((await admin.call("AddTrustedIssuer", request)).issuer_id)


async def workload(
    admin: World,
    issuer: OidcIssuer,
    subject: str,
    tenant: Tenant | None = None,
    claim: tuple[str, str] = ("", ""),
    roles: list[str] | None = None,
) -> Workload:
    tenant = tenant or issuer.tenant()
    issuer_id = await trust(admin, issuer, tenant)
    user_name = unique_name("workload")
    user_id = await admin.machine_user(user_name=user_name)
    if roles:
        await admin.grant(user_id, roles)
    added = await admin.call(
        "AddFederatedCredential",
        user_pb.AddFederatedCredentialRequest(
            user_id=user_id,
            issuer=issuer.url(tenant.name),
            subject=subject,
            audience=AUDIENCE,
            claim_name=claim[0],
            claim_value=claim[1],
        ),
    )
    return Workload(user_id, user_name, tenant, issuer.url(tenant.name), issuer_id, added.credential_id)


def kubernetes_token(
    w: Workload, key: RSAKey | ECKey | None = None, alg: str = "RS256", kid: bool = True, **claims: Any
) -> str:
    """What a projected service-account token of the audience carries (kubernetes.io claims)."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": w.issuer,
        "sub": "system:serviceaccount:ci:deployer",
        "aud": [AUDIENCE],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "kubernetes.io": {
            "namespace": "ci",
            "serviceaccount": {"name": "deployer", "uid": str(uuid.uuid4())},
        },
    }
    body.update(claims)
    key = key or w.tenant.published[0]
    header = {"alg": alg, "kid": key.kid} if kid else {"alg": alg}
    return jwt.encode(header, {k: v for k, v in body.items() if v is not None}, key)


def github_token(w: Workload, **claims: Any) -> str:
    """What a GitHub Actions OIDC token carries, with its own jti."""
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": w.issuer,
        "sub": "repo:acme/app:ref:refs/heads/main",
        "aud": AUDIENCE,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "repository": "acme/app",
        "ref": "refs/heads/main",
        "environment": "production",
        "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
    }
    body.update(claims)
    key = w.tenant.published[0]
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, body, key)


async def exchange(base: str, client_id: str, assertion: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            base + TOKEN_PATH,
            data={
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_assertion_type": CLIENT_ASSERTION_TYPE,
                "client_assertion": assertion,
            },
        )


async def refused(base: str, client_id: str, assertion: str) -> None:
    answer = await exchange(base, client_id, assertion)
    assert (answer.status_code, answer.json()) == (401, REFUSED), answer.text


async def access_token(base: str, client_id: str, assertion: str) -> str:
    answer = await exchange(base, client_id, assertion)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def works(admin: World, w: Workload, token: str) -> bool:
    """Whether token calls the API (False: refused as UNAUTHENTICATED)."""
    code = grpc.StatusCode.OK
    try:
        await admin.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=w.user_id), token=token)
    except ApiError as error:
        code = error.code
    assert code in (grpc.StatusCode.OK, grpc.StatusCode.UNAUTHENTICATED)
    return code == grpc.StatusCode.OK


@pytest.mark.parametrize("endpoint", ["direct", "envoy"])
async def test_a_kubernetes_token_buys_an_access_token(
    admin: World, service: Running, issuer: OidcIssuer, endpoint: str
) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", roles=["ORG_USER_MANAGER"])
    base = endpoints(service)[endpoint]
    answer = await exchange(base, w.user_name, kubernetes_token(w))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert await works(admin, w, body["access_token"])
    # No jti: the same token may be exchanged again while it is valid (its lifetime bounds that).
    token = kubernetes_token(w)
    await access_token(base, w.user_name, token)
    await access_token(base, w.user_name, token)
    # The audit names the federated credential as the token's actor; the list its last use.
    listed = audit_pb.ListUserEventsRequest(user_id=w.user_id, page_size=100)
    events = (await admin.call("ListUserEvents", listed)).events
    [issued, *_] = [e for e in events if e.event_type == "token.access.federated.added"]
    assert (issued.actor.credential_kind, issued.actor.credential_id) == ("federated", w.credential_id)
    assert "token_hash" not in issued.payload.fields
    credentials = await admin.call(
        "ListFederatedCredentials", user_pb.ListFederatedCredentialsRequest(user_id=w.user_id)
    )
    [listed_credential] = credentials.credentials
    assert listed_credential.subject == "system:serviceaccount:ci:deployer"
    assert listed_credential.HasField("last_used")


async def test_a_github_actions_token_with_its_claim_condition_and_jti(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    w = await workload(
        admin, issuer, "repo:acme/app:ref:refs/heads/main", claim=("environment", "production")
    )
    base = endpoints(service)["direct"]
    token = github_token(w)
    await access_token(base, w.user_name, token)
    await refused(base, w.user_name, token)  # its jti was seen: a replay
    await refused(base, w.user_name, github_token(w, environment="staging"))
    await refused(base, w.user_name, github_token(w, environment=None))
    await access_token(base, w.user_name, github_token(w))


async def test_every_wrong_token_is_the_one_refusal(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    other = await workload(admin, issuer, "system:serviceaccount:ci:other")
    base = endpoints(service)["direct"]
    now = int(time.time())
    stranger = issuer.tenant()  # an issuer the organisation does not trust
    untrusted = Workload(w.user_id, w.user_name, stranger, issuer.url(stranger.name), "", "")
    wrong = [
        kubernetes_token(w, sub="system:serviceaccount:ci:other"),
        kubernetes_token(w, sub="system:serviceaccount:ci:deployer2"),
        kubernetes_token(w, sub="system:serviceaccount:ci:*"),
        kubernetes_token(w, aud=["https://elsewhere.example.com"]),
        kubernetes_token(w, aud=AUDIENCE + "/"),
        kubernetes_token(untrusted),
        kubernetes_token(w, iss=other.issuer),  # another trusted issuer's name, this one's key
        kubernetes_token(w, exp=now - 120, iat=now - 600, nbf=now - 600),
        kubernetes_token(w, nbf=now + 600),
        kubernetes_token(w, iat=now + 600),
        kubernetes_token(w, iat=None),
        kubernetes_token(w, exp=now + int(MAX_TOKEN_LIFETIME.total_seconds()) + 3600),
        kubernetes_token(
            w, key=RSAKey.generate_key(2048, parameters={"kid": str(w.tenant.published[0].kid)})
        ),
        kubernetes_token(w, key=other.tenant.published[0]),
        "not.a.jwt",
    ]
    for token in wrong:
        await refused(base, w.user_name, token)
    await refused(base, other.user_name, kubernetes_token(w))  # another user's credential
    await refused(base, "no-such-user", kubernetes_token(w))
    await access_token(base, w.user_name, kubernetes_token(w))


async def test_algorithm_confusion_is_refused(admin: World, service: Running, issuer: OidcIssuer) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    base = endpoints(service)["direct"]
    key = w.tenant.published[0]
    now = int(time.time())
    claims = {
        "iss": w.issuer,
        "sub": "system:serviceaccount:ci:deployer",
        "aud": [AUDIENCE],
        "iat": now,
        "exp": now + 600,
    }
    pem = key.as_pem(private=False)
    await refused(base, w.user_name, hs256_with(pem, {"alg": "HS256", "kid": key.kid}, claims))
    header = {"alg": "none", "kid": key.kid}
    unsigned = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode()) + "."
    await refused(base, w.user_name, unsigned)
    # An RSA signature labelled as an EC algorithm's.
    _, body, signature = kubernetes_token(w).split(".")
    relabelled = b64url(json.dumps({"alg": "ES256", "kid": key.kid}).encode())
    await refused(base, w.user_name, f"{relabelled}.{body}.{signature}")
    await access_token(base, w.user_name, kubernetes_token(w))


async def test_a_rotation_is_fetched_on_its_unknown_kid(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    base = endpoints(service)["direct"]
    old = w.tenant.published[0]
    await access_token(base, w.user_name, kubernetes_token(w))
    fetched = w.tenant.jwks_fetches
    await access_token(base, w.user_name, kubernetes_token(w))
    assert w.tenant.jwks_fetches == fetched  # cached (max-age=600)
    w.tenant.rotate()
    await access_token(base, w.user_name, kubernetes_token(w))  # a new kid: fetched again
    assert w.tenant.jwks_fetches == fetched + 1
    # The old key is no longer published: refused, and no refetch within the interval.
    await refused(base, w.user_name, kubernetes_token(w, key=old))
    w.tenant.rotate()
    await refused(base, w.user_name, kubernetes_token(w))  # rotated again so soon: rate-limited
    assert w.tenant.jwks_fetches == fetched + 1


async def test_removed_credential_user_or_issuer_is_refused_at_once(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    base = endpoints(service)["direct"]
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", roles=["ORG_USER_MANAGER"])
    token = await access_token(base, w.user_name, kubernetes_token(w))
    assert await works(admin, w, token)
    await admin.call(
        "RemoveFederatedCredential",
        user_pb.RemoveFederatedCredentialRequest(user_id=w.user_id, credential_id=w.credential_id),
    )
    assert not await works(admin, w, token)
    await refused(base, w.user_name, kubernetes_token(w))

    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", roles=["ORG_USER_MANAGER"])
    token = await access_token(base, w.user_name, kubernetes_token(w))
    await admin.call("RemoveTrustedIssuer", org_pb.RemoveTrustedIssuerRequest(issuer_id=w.issuer_id))
    assert not await works(admin, w, token)
    await refused(base, w.user_name, kubernetes_token(w))
    # The credentials that named it ended with it: trusting the issuer again brings none back.
    listed = await admin.call(
        "ListFederatedCredentials", user_pb.ListFederatedCredentialsRequest(user_id=w.user_id)
    )
    assert list(listed.credentials) == []
    await trust(admin, issuer, w.tenant)
    await refused(base, w.user_name, kubernetes_token(w))

    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", roles=["ORG_USER_MANAGER"])
    token = await access_token(base, w.user_name, kubernetes_token(w))
    await admin.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=w.user_id))
    assert not await works(admin, w, token)
    await refused(base, w.user_name, kubernetes_token(w))
    await admin.call("RemoveUser", user_pb.RemoveUserRequest(user_id=w.user_id))
    await refused(base, w.user_name, kubernetes_token(w))


@pytest.mark.parametrize("mode", ["slow", "huge", "redirect"])
async def test_an_issuer_that_misbehaves_is_refused(
    admin: World, service: Running, issuer: OidcIssuer, mode: str
) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", tenant=issuer.tenant(mode))
    base = endpoints(service)["direct"]
    started = time.monotonic()
    await refused(base, w.user_name, kubernetes_token(w))
    assert time.monotonic() - started < FETCH_TIMEOUT + 4  # the fetch's bound, not the issuer's


async def test_an_issuer_that_fails_is_fetched_once_per_back_off(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    """A request with no credential must not buy a fetch each: a failing issuer is remembered."""
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", tenant=issuer.tenant("down"))
    base = endpoints(service)["direct"]
    for _ in range(5):
        await refused(base, w.user_name, kubernetes_token(w))
    assert w.tenant.jwks_fetches == 1
    w.tenant.mode = "normal"  # back up, but within the back-off: still refused, not fetched
    await refused(base, w.user_name, kubernetes_token(w))
    assert w.tenant.jwks_fetches == 1


async def test_a_token_that_matches_no_credential_fetches_nothing(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    base = endpoints(service)["direct"]
    await refused(base, w.user_name, kubernetes_token(w, sub="system:serviceaccount:ci:other"))
    await refused(base, w.user_name, kubernetes_token(w, aud=["https://other.example.com"]))
    assert w.tenant.jwks_fetches == 0
    await access_token(base, w.user_name, kubernetes_token(w))
    assert w.tenant.jwks_fetches == 1


async def test_a_token_without_kid_is_tried_on_few_keys(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    """Without a kid, only the first MAX_KEYS_WITHOUT_KID keys of the issuer are tried: each is an
    RSA verification, and the JWKS may hold twenty."""
    tenant = issuer.tenant()
    for _ in range(MAX_KEYS_WITHOUT_KID):
        kept = tenant.published
        tenant.rotate()
        tenant.published = kept + tenant.published
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", tenant=tenant)
    base = endpoints(service)["direct"]
    first, last = tenant.published[0], tenant.published[-1]
    await access_token(base, w.user_name, kubernetes_token(w, key=first, kid=False))
    await refused(base, w.user_name, kubernetes_token(w, key=last, kid=False))
    await access_token(base, w.user_name, kubernetes_token(w, key=last))  # with its kid: found


async def test_fetches_wait_in_no_queue(admin: World, service: Running, issuer: OidcIssuer) -> None:
    """An organisation whose issuer answers slowly holds one fetch thread, not all of them: its
    other issuers' fetches are refused at once (answered from the cache, or not at all), never
    queued, while another organisation's are fetched."""
    slow = await workload(admin, issuer, "system:serviceaccount:ci:deployer", tenant=issuer.tenant("slow"))
    base = endpoints(service)["direct"]
    holding = asyncio.create_task(refused(base, slow.user_name, kubernetes_token(slow)))
    same_org = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    while slow.tenant.jwks_fetches == 0:  # noqa: ASYNC110 - another server's count
        await asyncio.sleep(0.05)
    started = time.monotonic()
    await refused(base, same_org.user_name, kubernetes_token(same_org))
    assert time.monotonic() - started < FETCH_TIMEOUT / 2
    assert same_org.tenant.jwks_fetches == 0
    # Another organisation's issuer is fetched meanwhile.
    org = await admin.org()
    tenant = issuer.tenant()
    trusted = org_pb.AddTrustedIssuerRequest(issuer=issuer.url(tenant.name))
    issuer_id = (await admin.call("AddTrustedIssuer", trusted, org=org)).issuer_id
    user_name = unique_name("workload")
    user_id = await admin.machine_user(org=org, user_name=user_name)
    credential = user_pb.AddFederatedCredentialRequest(
        user_id=user_id,
        issuer=issuer.url(tenant.name),
        subject="system:serviceaccount:ci:deployer",
        audience=AUDIENCE,
    )
    added = await admin.call("AddFederatedCredential", credential, org=org)
    elsewhere = Workload(user_id, user_name, tenant, issuer.url(tenant.name), issuer_id, added.credential_id)
    await access_token(base, elsewhere.user_name, kubernetes_token(elsewhere))
    await holding
    await access_token(base, same_org.user_name, kubernetes_token(same_org))  # the thread free: fetched now


async def test_an_issuer_that_drips_its_answer_holds_no_thread(
    admin: World, service: Running, issuer: OidcIssuer
) -> None:
    """A server that sends its headers a byte now and then (each read within the socket's
    timeout) is cut at the fetch's deadline, and its thread is free again."""
    dripping = await workload(
        admin, issuer, "system:serviceaccount:ci:deployer", tenant=issuer.tenant("drip")
    )
    base = endpoints(service)["direct"]
    started = time.monotonic()
    await refused(base, dripping.user_name, kubernetes_token(dripping))
    assert time.monotonic() - started < FETCH_TIMEOUT + 4
    await asyncio.sleep(1)  # the thread ends at the fetch's deadline, a moment after the answer
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")  # the same organisation
    await access_token(base, w.user_name, kubernetes_token(w))


async def test_inline_jwks_needs_no_fetch(admin: World, service: Running, issuer: OidcIssuer) -> None:
    tenant = Tenant(unique_name("cluster"))  # not served: its issuer cannot be reached
    tenant.rotate()
    jwks = json.dumps({"keys": [k.as_dict(private=False) for k in tenant.published]})
    request = org_pb.AddTrustedIssuerRequest(issuer=issuer.url(tenant.name), jwks=jwks)
    issuer_id = (await admin.call("AddTrustedIssuer", request)).issuer_id
    user_name = unique_name("workload")
    user_id = await admin.machine_user(user_name=user_name)
    added = await admin.call(
        "AddFederatedCredential",
        user_pb.AddFederatedCredentialRequest(
            user_id=user_id,
            issuer=issuer.url(tenant.name),
            subject="system:serviceaccount:ci:deployer",
            audience=AUDIENCE,
        ),
    )
    w = Workload(user_id, user_name, tenant, issuer.url(tenant.name), issuer_id, added.credential_id)
    await access_token(endpoints(service)["envoy"], user_name, kubernetes_token(w))
    assert tenant.jwks_fetches == 0


async def test_an_issuer_fetched_elsewhere_is_refused_when_it_is_added(
    admin: World, service: Running
) -> None:
    refusals = [
        org_pb.AddTrustedIssuerRequest(issuer="http://idp.example.com"),  # http, not an allowed origin
        org_pb.AddTrustedIssuerRequest(issuer="https://idp.example.com", jwks_uri="http://10.0.0.1/jwks"),
        org_pb.AddTrustedIssuerRequest(issuer="ftp://idp.example.com"),
        org_pb.AddTrustedIssuerRequest(issuer="https://user@idp.example.com"),
        org_pb.AddTrustedIssuerRequest(issuer=""),
        org_pb.AddTrustedIssuerRequest(issuer="https://idp.example.com", jwks="{}"),
        org_pb.AddTrustedIssuerRequest(
            issuer="https://idp.example.com", jwks='{"keys": [{"kty": "RSA", "d": "x"}]}'
        ),
    ]
    for request in refusals:
        with pytest.raises(ApiError) as refused_call:
            await admin.call("AddTrustedIssuer", request)
        assert refused_call.value.code == grpc.StatusCode.INVALID_ARGUMENT, request


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_rpcs_over_every_transport(service: Running, issuer: OidcIssuer, transport: str) -> None:
    api = client(transport, service.service)
    try:
        world = await World.create(api, service.admin_token)
        tenant = issuer.tenant()
        issuer_id = await trust(world, issuer, tenant)
        listed = (await world.call("ListTrustedIssuers", org_pb.ListTrustedIssuersRequest())).issuers
        [mine] = [i for i in listed if i.issuer_id == issuer_id]
        assert (mine.issuer, mine.description, mine.inline_jwks) == (issuer.url(tenant.name), "lab", False)
        with pytest.raises(ApiError) as twice:
            await trust(world, issuer, tenant)
        assert twice.value.code == grpc.StatusCode.ALREADY_EXISTS
        user_id = await world.machine_user()
        request = user_pb.AddFederatedCredentialRequest(
            user_id=user_id, issuer=issuer.url(tenant.name), subject="s", audience="a"
        )
        added = await world.call("AddFederatedCredential", request)
        with pytest.raises(ApiError) as untrusted:
            await world.call(
                "AddFederatedCredential",
                user_pb.AddFederatedCredentialRequest(
                    user_id=user_id, issuer="https://nobody.example.com", subject="s", audience="a"
                ),
            )
        assert untrusted.value.code == grpc.StatusCode.INVALID_ARGUMENT
        human = await world.human_user()
        with pytest.raises(ApiError) as not_machine:
            await world.call(
                "AddFederatedCredential",
                user_pb.AddFederatedCredentialRequest(
                    user_id=human, issuer=issuer.url(tenant.name), subject="s", audience="a"
                ),
            )
        assert not_machine.value.code == grpc.StatusCode.FAILED_PRECONDITION
        credentials = await world.call(
            "ListFederatedCredentials", user_pb.ListFederatedCredentialsRequest(user_id=user_id)
        )
        assert [c.credential_id for c in credentials.credentials] == [added.credential_id]
        remove = user_pb.RemoveFederatedCredentialRequest(user_id=user_id, credential_id=added.credential_id)
        await world.call("RemoveFederatedCredential", remove)
        with pytest.raises(ApiError) as gone:
            await world.call("RemoveFederatedCredential", remove)
        assert gone.value.code == grpc.StatusCode.NOT_FOUND
        await world.call("RemoveTrustedIssuer", org_pb.RemoveTrustedIssuerRequest(issuer_id=issuer_id))
        with pytest.raises(ApiError) as issuer_gone:
            await world.call("RemoveTrustedIssuer", org_pb.RemoveTrustedIssuerRequest(issuer_id=issuer_id))
        assert issuer_gone.value.code == grpc.StatusCode.NOT_FOUND
        # Without policy.write (a user manager), no trusted issuer is added.
        _, token = await world.caller(["ORG_USER_MANAGER"])
        with pytest.raises(ApiError) as denied:
            await world.call(
                "AddTrustedIssuer", org_pb.AddTrustedIssuerRequest(issuer=issuer.url("x")), token=token
            )
        assert denied.value.code == grpc.StatusCode.PERMISSION_DENIED
    finally:
        await api.close()


async def test_many_exchanges_at_once(admin: World, service: Running, issuer: OidcIssuer) -> None:
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
    base = endpoints(service)["direct"]
    tokens = await asyncio.gather(*(access_token(base, w.user_name, kubernetes_token(w)) for _ in range(8)))
    assert len(set(tokens)) == 8


@pytest.mark.parametrize("backend", ["postgres"])
async def test_two_processes_on_one_postgresql(issuer: OidcIssuer, tmp_path: Path, backend: str) -> None:
    """A token with a jti is exchanged once across processes; a removed credential is refused by
    the other process at once; a token without a jti is exchanged by either."""
    with postgres.throwaway_database() as url:
        allowed = {"MS_FEDERATION_ALLOWED_ORIGINS": issuer.origin}
        processes = [await ServerProcess.start(url, tmp_path, **allowed) for _ in range(2)]
        try:
            api = GrpcApi("grpc", f"127.0.0.1:{processes[0].grpc_port}")
            world = await World.create(api, (tmp_path / "admin.pat").read_text().strip())
            github = await workload(world, issuer, "repo:acme/app:ref:refs/heads/main")
            kubernetes = await workload(world, issuer, "system:serviceaccount:ci:deployer")
            bases = [f"http://127.0.0.1:{p.http_port}" for p in processes]
            token = github_token(github)
            first, second = await asyncio.gather(*(exchange(base, github.user_name, token) for base in bases))
            assert sorted([first.status_code, second.status_code]) == [200, 401], (first.text, second.text)
            shared = kubernetes_token(kubernetes)
            for base in bases:
                await access_token(base, kubernetes.user_name, shared)
            remove = user_pb.RemoveFederatedCredentialRequest(
                user_id=kubernetes.user_id, credential_id=kubernetes.credential_id
            )
            await world.call("RemoveFederatedCredential", remove)
            await refused(bases[1], kubernetes.user_name, shared)
            await api.close()
        finally:
            for process in processes:
                await process.stop()


async def test_the_exchanges_failures_are_limited(issuer: OidcIssuer, tmp_path: Path) -> None:
    """Tokens that fail for a client meet the token endpoint's limits, as wrong secrets do: past
    the client's limit, even a good token is refused 429, with Retry-After."""
    limits = FailureLimits(per_client=3, per_source=50, window_s=60)
    config = config_for(tmp_path, failure_limits=limits, federation_allowed_origins=(issuer.origin,))
    running = await start_service(config)
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        admin = await World.create(api, running.admin_token)
        w = await workload(admin, issuer, "system:serviceaccount:ci:deployer")
        base = f"http://127.0.0.1:{running.service.http_port}"
        for _ in range(3):
            await refused(base, w.user_name, kubernetes_token(w, sub="system:serviceaccount:ci:intruder"))
        limited = await exchange(base, w.user_name, kubernetes_token(w))
        assert limited.status_code == 429, limited.text
        assert (limited.json()["error"], "retry-after" in limited.headers) == ("slow_down", True)
    finally:
        await api.close()
        await running.service.stop(0)


async def test_an_issuers_dear_rsa_key_is_refused(admin: World, issuer: OidcIssuer) -> None:
    """An RSA key whose every verification is dear (a huge exponent: OpenSSL takes one almost as
    large as the modulus) is refused in an issuer's keys as in an uploaded machine key."""
    modulus = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key().public_numbers().n
    dear = RSAKey.import_key(rsa.RSAPublicNumbers((1 << 2040) + 1, modulus).public_key())
    jwks = json.dumps({"keys": [{**dear.as_dict(private=False), "kid": "dear"}]})
    tenant = Tenant(unique_name("cluster"))
    request = org_pb.AddTrustedIssuerRequest(issuer=issuer.url(tenant.name), jwks=jwks)
    with pytest.raises(ApiError) as refused:
        await admin.call("AddTrustedIssuer", request)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("endpoint", ["direct", "envoy"])
async def test_a_workload_whose_user_has_jwt_access_tokens_gets_one(
    admin: World, service: Running, issuer: OidcIssuer, endpoint: str
) -> None:
    """Every grant issues the user's form: a platform token buys a JWT access token (RFC 9068)
    that verifies with the service's JWKS, and works on the API."""
    w = await workload(admin, issuer, "system:serviceaccount:ci:deployer", roles=["ORG_USER_MANAGER"])
    await admin.call(
        "UpdateMachineUser",
        user_pb.UpdateMachineUserRequest(user_id=w.user_id, access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT),
    )
    base = endpoints(service)[endpoint]
    token = await access_token(base, w.user_name, kubernetes_token(w))
    async with httpx.AsyncClient() as http:
        keys = (await http.get(base + KEYS_PATH)).json()
    header = jws.extract_compact(token.encode()).headers()
    assert header["typ"] == "at+jwt"
    assert header["kid"] in [k["kid"] for k in keys["keys"]]
    verified = jwt.decode(token, KeySet.import_key_set(keys), algorithms=["RS256", "ES256"])
    assert verified.claims["sub"] == w.user_id
    assert verified.claims["client_id"] == w.user_name
    assert await works(admin, w, token)


def test_a_tls_handshake_that_drips_ends_at_the_deadline() -> None:
    """The fetch's deadline holds over TLS too: a server that sends its handshake a byte a second
    (each read within the socket's timeout) is cut at FETCH_TIMEOUT, not when it stops."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def drip() -> None:
        connection, _ = server.accept()
        with connection, contextlib.suppress(OSError):
            connection.recv(4096)  # the ClientHello
            connection.sendall(b"\x16\x03\x03\x40\x00")  # a handshake record of 16 KiB, then slowly
            for _ in range(int(FETCH_TIMEOUT) * 6):
                connection.sendall(b"\x02")
                time.sleep(1)

    threading.Thread(target=drip, daemon=True).start()
    keys = IssuerKeys([f"https://127.0.0.1:{port}"])
    started = time.monotonic()
    with pytest.raises(FetchRefused):
        keys.fetch(f"https://127.0.0.1:{port}/jwks", time.monotonic() + FETCH_TIMEOUT)
    assert time.monotonic() - started < FETCH_TIMEOUT + 2
    server.close()
