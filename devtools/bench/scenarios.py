"""The rows: what is measured, and how each row's service is set up for it. The transports and
calls beside their no-op, data growth (earlier rotations, users in the store and in the
organisation, seeded by bulk insert), overload at many connections, and MS_WORKERS on
PostgreSQL."""

import argparse
import json
import os
import time
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import org_service_pb2_grpc, user_service_pb2_grpc
from machinesecrets.v1 import user_service_pb2 as user_pb

from devtools.bench import issuer as issuer_module
from devtools.bench import seed
from devtools.bench.calls import (
    ADD_SECRET,
    GENERATE_SECRET,
    GET_USER,
    LIST_USERS,
    ROTATE_SECRET,
    federated_request,
    grpc_request,
    grpc_web_request,
    json_add_secret,
    json_get_user,
    jwt_bearer_request,
    token_request,
)
from devtools.bench.issuer import LabIssuer
from devtools.bench.load import Request, Result, h2load
from devtools.bench.measure import Bench, Row, Sample, Spec, bcrypt_rate, memory_kb
from devtools.bench.targets import Ports, start_service
from server.domain.ids import IdGenerator
from server.transport.oauth import DISCOVERY_PATH, KEYS_PATH, TOKEN_PATH

# Overload: this many connections against the usual 16; every call must be answered within 2 s.
OVERLOAD_CONNECTIONS = 256
OVERLOAD_ANSWER_MS = 2000


def run(
    args: argparse.Namespace,
    url: str,
    folder: Path,
    service: Ports,
    noop: Ports,
    cost: int,
    pids: tuple[int, int],
    platform: LabIssuer,
) -> "Measured":
    """Every row, in the order of the report's table, then overload and (on PostgreSQL) workers."""
    token = (folder / "admin.pat").read_text().strip()
    channel = grpc.insecure_channel(f"127.0.0.1:{service.grpc}")
    users = user_service_pb2_grpc.UserServiceStub(channel)
    orgs = org_service_pb2_grpc.OrgServiceStub(channel)
    auth = (("authorization", f"Bearer {token}"),)

    def machine_user(name: str) -> tuple[str, str]:
        created = users.AddMachineUser(
            user_pb.AddMachineUserRequest(user_name=name, name=name), metadata=auth
        )
        return created.user_id, created.details.resource_owner

    bench = Bench(args, service, noop, token, pids)
    user_id, org_id = machine_user("bench-user")
    add = user_pb.AddSecretRequest(user_id=user_id).SerializeToString()
    get = user_pb.GetUserByIDRequest(user_id=user_id).SerializeToString()
    client_id, client_user = "bench-client", machine_user("bench-client")[0]
    orgs.AddOrgMember(
        org_pb.AddOrgMemberRequest(user_id=client_user, roles=["ORG_USER_MANAGER"]), metadata=auth
    )
    secret = users.AddSecret(user_pb.AddSecretRequest(user_id=client_user), metadata=auth).client_secret
    assertions = signed_assertions(users, auth, client_user, service.http)
    workloads = federated_workloads(users, orgs, auth, platform)
    # A client whose access tokens are JWTs, signed with the service's key (MS_SIGNING_KEY_ALGORITHM:
    # RS256 unless the bench's environment says ES256).
    jwt_user = users.AddMachineUser(
        user_pb.AddMachineUserRequest(
            user_name="bench-jwt-client", name="bench", access_token_type=user_pb.ACCESS_TOKEN_TYPE_JWT
        ),
        metadata=auth,
    ).user_id
    jwt_secret = users.AddSecret(user_pb.AddSecretRequest(user_id=jwt_user), metadata=auth).client_secret
    signing = os.environ.get("MS_SIGNING_KEY_ALGORITHM", "RS256").upper()

    threads = min(32, (os.cpu_count() or 1) + 4)  # asyncio.to_thread's default executor: the server's
    hashes = bcrypt_rate(cost, threads, 2000)
    print(f"bcrypt cost {cost}: {hashes:,.0f} hashes/s with {threads} threads", flush=True)

    # Set up before the rounds, so that every round measures the same thing.
    orgs.SetSecretPolicy(
        org_pb.SetSecretPolicyRequest(policy=org_pb.SecretPolicy(max_secrets_per_user=10)), metadata=auth
    )
    many_client, many_user = "bench-client-10", machine_user("bench-client-10")[0]
    create = user_pb.CreateSecretRequest(user_id=many_user)
    many = [users.CreateSecret(create, metadata=auth).client_secret for _ in range(10)]
    rotating = machine_user("bench-rotating")[0]
    rotate = user_pb.RotateSecretRequest(user_id=rotating)
    rotate.grace_period.FromSeconds(0)

    counted_add = (ADD_SECRET, "OK")
    noop_grpc_add = grpc_request(noop.grpc, ADD_SECRET, add, token)
    specs = {
        "grpc_add": Spec(
            "AddSecret",
            "native gRPC",
            grpc_request(service.grpc, ADD_SECRET, add, token),
            counted_add,
            noop_grpc_add,
        ),
        "web_add": Spec(
            "AddSecret",
            "grpc-web direct",
            grpc_web_request(service.http, ADD_SECRET, add, token),
            counted_add,
            grpc_web_request(noop.http, ADD_SECRET, add, token),
        ),
        "json_add": Spec(
            "AddSecret",
            "JSON through Envoy",
            json_add_secret(service.envoy, user_id, token),
            counted_add,
            json_add_secret(noop.envoy, user_id, token),
        ),
        "envoy_add": Spec(
            "AddSecret",
            "gRPC through Envoy",
            grpc_request(service.envoy, ADD_SECRET, add, token),
            counted_add,
            grpc_request(noop.envoy, ADD_SECRET, add, token),
        ),
        # ZITADEL's name for the same call: the mapping onto the same command should cost nothing.
        "zitadel_add": Spec(
            "GenerateMachineSecret (ZITADEL v1)",
            "native gRPC",
            grpc_request(service.grpc, GENERATE_SECRET, add, token),
            (GENERATE_SECRET, "OK"),
            noop_grpc_add,
        ),
        "get": Spec(
            "GetUserByID",
            "native gRPC",
            grpc_request(service.grpc, GET_USER, get, token),
            (GET_USER, "OK"),
            grpc_request(noop.grpc, GET_USER, get, token),
        ),
        "token": Spec(
            "token endpoint",
            "HTTP direct",
            token_request(service.http, client_id, secret),
            (TOKEN_PATH, "200"),
            token_request(noop.http, client_id, secret),
        ),
        "envoy_token": Spec(
            "token endpoint",
            "HTTP through Envoy",
            token_request(service.envoy, client_id, secret),
            (TOKEN_PATH, "200"),
            token_request(noop.envoy, client_id, secret),
        ),
        # The JWT profile grant beside the client secret: a signature verification (RSA 2048,
        # or EC P-256) instead of a bcrypt check, and the key's lookup by its id.
        "jwt_rs256": Spec(
            "token endpoint, JWT profile grant (RS256, generated key)",
            "HTTP direct",
            jwt_bearer_request(service.http, assertions["RS256"]),
            (TOKEN_PATH, "200"),
            jwt_bearer_request(noop.http, assertions["RS256"]),
        ),
        "jwt_es256": Spec(
            "token endpoint, JWT profile grant (ES256, uploaded key)",
            "HTTP direct",
            jwt_bearer_request(service.http, assertions["ES256"]),
            (TOKEN_PATH, "200"),
            jwt_bearer_request(noop.http, assertions["ES256"]),
        ),
        # A workload's platform token for an access token: one RSA verification against the
        # issuer's keys (fetched once, then cached), the user's federated credentials read.
        "federated": Spec(
            "token endpoint, federated exchange (RS256 platform token, keys fetched and cached)",
            "HTTP direct",
            federated_request(service.http, FETCHED_WORKLOAD, platform.token()),
            (TOKEN_PATH, "200"),
            federated_request(noop.http, FETCHED_WORKLOAD, platform.token()),
        ),
        "federated_inline": Spec(
            "token endpoint, federated exchange (RS256 platform token, inline JWKS)",
            "HTTP direct",
            federated_request(service.http, INLINE_WORKLOAD, platform.token(workloads[INLINE_WORKLOAD])),
            (TOKEN_PATH, "200"),
            federated_request(noop.http, INLINE_WORKLOAD, platform.token(workloads[INLINE_WORKLOAD])),
        ),
        # The same grant issuing a JWT access token: one signature more, and a longer row.
        "token_jwt": Spec(
            f"token endpoint, JWT access token ({signing})",
            "HTTP direct",
            token_request(service.http, "bench-jwt-client", jwt_secret),
            (TOKEN_PATH, "200"),
            token_request(noop.http, "bench-jwt-client", jwt_secret),
        ),
        # The JWKS, from memory: what a resource server's cache asks for, with no credential.
        "jwks": Spec(
            "JWKS (GET /oauth/v2/keys)",
            "HTTP direct",
            Request(f"http://127.0.0.1:{service.http}{KEYS_PATH}", b"", ((":method", "GET"),), http1=True),
            None,
        ),
        # Several secrets: the token endpoint runs one bcrypt check whatever their number (the
        # lookup key finds the hash), so a client with 10 costs what one with 1 costs.
        "token_ten": Spec(
            "token endpoint, client with 10 live secrets",
            "HTTP direct",
            token_request(service.http, many_client, many[4]),
            (TOKEN_PATH, "200"),
            token_request(noop.http, many_client, many[4]),
        ),
        # Rotation with no grace: a new secret, the others retired (at most 20 expired ones kept).
        "rotate": Spec(
            "RotateSecret (no grace)",
            "native gRPC",
            grpc_request(service.grpc, ROTATE_SECRET, rotate.SerializeToString(), token),
            (ROTATE_SECRET, "OK"),
            noop_grpc_add,
            note="no-op: AddSecret's fixed answer",
        ),
    }
    rows = dict(zip(specs, bench.rounds(list(specs.values())), strict=True))

    # Data growth: AddSecret on a user with few and with many earlier rotations, and with few and
    # many users in the store. Seeded by bulk insert of valid events; each row's rounds follow
    # its seeding.
    ids = IdGenerator()
    for rotations in dict.fromkeys((10, args.rotations)):  # once, if they are the same
        target, _ = machine_user(f"bench-rotated-{rotations}")
        seed.bulk_insert(url, seed.rotations(target, org_id, 2, rotations))
        request = grpc_request(
            service.grpc, ADD_SECRET, user_pb.AddSecretRequest(user_id=target).SerializeToString(), token
        )
        [rows[f"rot{rotations}"]] = bench.rounds(
            [Spec(f"AddSecret, {rotations:,} earlier rotations", "native gRPC", request, counted_add)]
        )
    present = 10  # the admin and the users made above
    list_bench = user_pb.ListUsersRequest(user_name_prefix="bench-", page_size=20).SerializeToString()
    users.AddHumanUser(
        user_pb.AddHumanUserRequest(user_name="bench-human", display_name="Bench", email="bench@example.com"),
        metadata=auth,
    )
    present += 1
    list_humans = user_pb.ListUsersRequest(type=user_pb.USER_TYPE_HUMAN, page_size=20).SerializeToString()
    list_search = user_pb.ListUsersRequest(contains="ench-", page_size=20).SerializeToString()
    for total in dict.fromkeys((1_000, args.users)):
        started = time.perf_counter()
        seed.bulk_insert(url, seed.machine_users(org_id, total - present, ids))
        print(f"seeded {total - present:,} users in {time.perf_counter() - started:.1f} s", flush=True)
        present = total
        rows[f"users{total}"], rows[f"list{total}"], rows[f"humans{total}"], rows[f"search{total}"] = (
            bench.rounds(
                [
                    Spec(
                        f"AddSecret, {total:,} users in the store",
                        "native gRPC",
                        grpc_request(service.grpc, ADD_SECRET, add, token),
                        counted_add,
                    ),
                    # The console's search: a name prefix that few of the organisation's users have
                    # (the seeded ones are "seed-…"), so the page is not full and the store must know
                    # where the prefix's names end rather than read on to the organisation's last.
                    Spec(
                        f'ListUsers, names starting "bench-" (a few), {total:,} users in the org',
                        "native gRPC",
                        grpc_request(service.grpc, LIST_USERS, list_bench, token),
                        (LIST_USERS, "OK"),
                    ),
                    # One type of few: the organisation's human users (one) among its machine users.
                    Spec(
                        f"ListUsers, human users (one), {total:,} users in the org",
                        "native gRPC",
                        grpc_request(service.grpc, LIST_USERS, list_humans, token),
                        (LIST_USERS, "OK"),
                    ),
                    # The console's search (issue 35): a part of the name, anywhere, that few have. No
                    # index finds it: a page reads at most 1,000 users, whatever the organisation's size.
                    Spec(
                        f'ListUsers, names holding "ench-" (a few), {total:,} users in the org',
                        "native gRPC",
                        grpc_request(service.grpc, LIST_USERS, list_search, token),
                        (LIST_USERS, "OK"),
                    ),
                ]
            )
        )
    heavy = overload(bench, json_get_user(service.http, user_id, token))
    two_workers = (
        workers(bench, url, folder, token_request(service.http, client_id, secret))
        if url.startswith("postgresql")
        else None
    )
    return Measured(bench.rows, rows, heavy, hashes, threads, two_workers)


def signed_assertions(
    users: user_service_pb2_grpc.UserServiceStub,
    auth: tuple[tuple[str, str], ...],
    user_id: str,
    http_port: int,
) -> dict[str, str]:
    """An assertion for the JWT profile grant by algorithm: RS256 signed by a key the service made
    (its key file), ES256 by an uploaded public key's private half. Without a jti (as ZITADEL's
    SDKs send them), so that h2load may send each again and again; valid for 59 minutes (the most
    the service takes is an hour), which the rows measured first, these among them, finish within."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{DISCOVERY_PATH}") as answer:
        issuer = json.load(answer)["issuer"]
    made = users.AddKey(user_pb.AddKeyRequest(user_id=user_id), metadata=auth)
    generated = RSAKey.import_key(json.loads(made.key_content)["key"])
    private = ec.generate_private_key(ec.SECP256R1())
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    uploaded = users.AddKey(user_pb.AddKeyRequest(user_id=user_id, public_key=public), metadata=auth)
    signing = ECKey.import_key(
        private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    now = int(time.time())
    claims = {"iss": user_id, "sub": user_id, "aud": issuer, "iat": now, "exp": now + 59 * 60}
    return {
        "RS256": jwt.encode({"alg": "RS256", "kid": made.key_id}, claims, generated),
        "ES256": jwt.encode({"alg": "ES256", "kid": uploaded.key_id}, claims, signing),
    }


FETCHED_WORKLOAD, INLINE_WORKLOAD = "bench-workload", "bench-workload-inline"
INLINE_ISSUER = "https://cluster.bench.invalid"  # not reachable: its keys are given inline


def federated_workloads(
    users: user_service_pb2_grpc.UserServiceStub,
    orgs: org_service_pb2_grpc.OrgServiceStub,
    auth: tuple[tuple[str, str], ...],
    platform: LabIssuer,
) -> dict[str, str]:
    """Two machine users whose federated credentials name the platform's service account: one
    through the issuer's discovery and JWKS, one through the same keys given inline. By user
    name, the issuer each one's tokens name."""
    orgs.AddTrustedIssuer(org_pb.AddTrustedIssuerRequest(issuer=platform.url), metadata=auth)
    orgs.AddTrustedIssuer(
        org_pb.AddTrustedIssuerRequest(issuer=INLINE_ISSUER, jwks=platform.jwks()), metadata=auth
    )
    issuers = {FETCHED_WORKLOAD: platform.url, INLINE_WORKLOAD: INLINE_ISSUER}
    for name, issuer in issuers.items():
        user_id = users.AddMachineUser(
            user_pb.AddMachineUserRequest(user_name=name, name=name), metadata=auth
        ).user_id
        credential = user_pb.AddFederatedCredentialRequest(
            user_id=user_id, issuer=issuer, subject=issuer_module.SUBJECT, audience=issuer_module.AUDIENCE
        )
        users.AddFederatedCredential(credential, metadata=auth)
    return issuers


@dataclass(frozen=True)
class Overload:
    """GetUserByID as JSON straight to the HTTP port (its answers' HTTP status tells OK, 200, from
    RESOURCE_EXHAUSTED, 429) at the usual connections and at OVERLOAD_CONNECTIONS, per round."""

    usual: list[Result]
    heavy: list[Result]
    rss_growth_mb: list[float]  # peak RSS during the heavy run over RSS before it

    def answered_in_time(self) -> bool:
        return all(
            r.max_ms <= OVERLOAD_ANSWER_MS
            and sum(r.statuses.values()) == r.requests
            and set(r.statuses) <= {"200", "429"}
            for r in self.heavy
        )

    def p99_ratios(self) -> list[float]:
        return [h.p99_ok_ms / u.p99_ok_ms for u, h in zip(self.usual, self.heavy, strict=True) if u.p99_ok_ms]


def overload(bench: Bench, request: Request) -> Overload:
    usual: list[Result] = []
    heavy: list[Result] = []
    growth: list[float] = []
    for round_number in range(1, bench.args.rounds + 1):
        h2load(request, bench.args.warmup, bench.args.concurrency)
        usual.append(h2load(request, bench.args.requests, bench.args.concurrency))
        # Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
        Path(f"/proc/{bench.service_pid}/clear_refs").write_text("5")
        before = memory_kb(bench.service_pid, "VmRSS")
        # h2load refuses fewer requests than connections (a short run: --requests 100).
        heavy.append(
            h2load(request, max(bench.args.requests * 2, OVERLOAD_CONNECTIONS), OVERLOAD_CONNECTIONS)
        )
        growth.append((memory_kb(bench.service_pid, "VmHWM") - before) / 1024)
        h, u = heavy[-1], usual[-1]
        print(
            f"round {round_number}: overload, GetUserByID as JSON: {bench.args.concurrency} connections p99 "
            f"{u.p99_ok_ms:.1f} ms; {OVERLOAD_CONNECTIONS} connections {h.rps:,.0f} req/s, answers {h.statuses}, "
            f"p99 of OK {h.p99_ok_ms:.1f} ms, of refused {h.p99_refused_ms:.1f} ms, slowest {h.max_ms:.0f} ms, "
            f"RSS +{growth[-1]:.1f} MB",
            flush=True,
        )
    return Overload(usual, heavy, growth)


@dataclass(frozen=True)
class Workers:
    """The token endpoint on PostgreSQL (a bcrypt check and a write per call), HTTP direct: the
    service with MS_WORKERS=2 against the one above (one process), alternating in each round."""

    one: list[Sample]
    two: list[Sample]

    def throughput(self) -> list[float]:
        return [t.result.rps / o.result.rps for o, t in zip(self.one, self.two, strict=True)]

    def cpu(self) -> list[float]:
        return [t.cpu_ms / o.cpu_ms for o, t in zip(self.one, self.two, strict=True)]


def workers(bench: Bench, url: str, folder: Path, one_request: Request) -> Workers:
    process, ports = start_service(url, folder / "workers", {"MS_WORKERS": "2"})
    two_request = replace(
        one_request, url=one_request.url.replace(f":{bench.service.http}/", f":{ports.http}/")
    )
    one: list[Sample] = []
    two: list[Sample] = []
    try:
        for round_number in range(1, bench.args.rounds + 1):
            for samples, request, pid in (
                (one, one_request, bench.service_pid),
                (two, two_request, process.pid),
            ):
                result, ok, cpu_ms = bench.measure(request, None, pid)
                samples.append(Sample(result, ok, cpu_ms))
            print(
                f"round {round_number}: workers, token endpoint: 1 process {one[-1].result.rps:,.0f} req/s "
                f"({one[-1].cpu_ms:.2f} ms CPU), 2 workers {two[-1].result.rps:,.0f} req/s ({two[-1].cpu_ms:.2f} ms CPU)",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait(timeout=60)
    return Workers(one, two)


@dataclass(frozen=True)
class Measured:
    table: list[Row]  # every row, in the order measured
    rows: dict[str, Row]  # the rows the targets compare, by a short name
    overload: Overload
    hashes: float  # bcrypt hashes per second at the service's cost, on its thread pool
    threads: int
    workers: Workers | None = None
