"""`make bench`: throughput and latency of the service, side by side with a no-op baseline on the
same stack, measured in one run and written to BENCHMARKS.md.

    python -m tools.bench [--postgres [URL]] [--requests N] [--concurrency C] [--users N]

Every row is a fixed number of requests at a fixed concurrency after a warm-up, driven by h2load
from a separate process. A row whose requests did not all succeed (by the service's own count of
OK answers, at /metrics, not only by HTTP status) is reported as failed, not as fast.
"""

import argparse
import base64
import os
import platform
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import bcrypt
import grpc
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import org_service_pb2_grpc, user_service_pb2_grpc
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.config import load
from server.domain.ids import IdGenerator
from server.domain.secret_format import new_secret
from server.metrics import calls_by_code
from server.transport.oauth import TOKEN_PATH
from tools.bench import seed
from tools.bench.load import Request, Result, h2load
from tools.launcher import LaunchFailed, launch, tail, wait_ready
from tools.throwaway_database import throwaway_database

ROOT = Path(__file__).resolve().parent.parent.parent
REPORT = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DASH = "\u2013"  # an en dash: no value
ADD_SECRET = "/machinesecrets.v1.UserService/AddSecret"
GET_USER = "/machinesecrets.v1.UserService/GetUserByID"
ROTATE_SECRET = "/machinesecrets.v1.UserService/RotateSecret"
# The same request bytes as AddSecret's: its one field, user_id = 1.
GENERATE_SECRET = "/zitadel.management.v1.ManagementService/GenerateMachineSecret"


@dataclass
class Ports:
    grpc: int
    http: int
    envoy: int


@dataclass
class Row:
    name: str
    transport: str
    result: Result | None
    baseline: Result | None
    ok: bool
    cpu_ms: float = 0.0  # CPU time of the server process (all its threads) per request
    baseline_cpu_ms: float = 0.0
    note: str = ""

    def ratio(self) -> float | None:
        if self.result is None or self.baseline is None:
            return None
        return self.result.rps / self.baseline.rps


# --- processes ------------------------------------------------------------------------------


def start_service(database_url: str, folder: Path) -> tuple[subprocess.Popen[bytes], Ports]:
    launched = launch(
        folder,
        {
            "MS_DATABASE_URL": database_url,
            "MS_GRPC_ADDR": "127.0.0.1:0",
            "MS_HTTP_ADDR": "127.0.0.1:0",
            "MS_ENVOY_ADDR": "127.0.0.1:0",
            "MS_ADMIN_PAT_FILE": str(folder / "admin.pat"),
        },
    )
    try:
        ports = wait_ready(launched)
    except LaunchFailed as error:
        raise SystemExit(f"the service did not start: {error}") from None
    if ports.envoy is None:
        raise SystemExit(f"Envoy did not start: {tail(launched.log_file)}")
    return launched.process, Ports(ports.grpc, ports.http, ports.envoy)


def start_noop(folder: Path) -> tuple[subprocess.Popen[bytes], Ports]:
    launched = launch(folder, {}, module="tools.bench.noop")
    ports = wait_ready(launched)
    assert ports.envoy is not None, "the baseline always runs its Envoy"
    return launched.process, Ports(ports.grpc, ports.http, ports.envoy)


@contextmanager
def database(postgres: str | None, folder: Path) -> Iterator[str]:
    if postgres is None:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    with throwaway_database(postgres, "ms_bench") as url:
        yield url


# --- requests ---------------------------------------------------------------------------------


def framed(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def grpc_request(port: int, method: str, message: bytes, token: str) -> Request:
    headers = (("content-type", "application/grpc"), ("te", "trailers"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}{method}", framed(message), headers)


def grpc_web_request(port: int, method: str, message: bytes, token: str) -> Request:
    headers = (
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("authorization", f"Bearer {token}"),
    )
    return Request(f"http://127.0.0.1:{port}{method}", framed(message), headers, http1=True)


def json_add_secret(port: int, user_id: str, token: str) -> Request:
    headers = ((":method", "PUT"), ("content-type", "application/json"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}/users/{user_id}/secret", b"{}", headers, http1=True)


def token_request(port: int, client_id: str, secret: str) -> Request:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = (("content-type", "application/x-www-form-urlencoded"), ("authorization", f"Basic {basic}"))
    return Request(
        f"http://127.0.0.1:{port}{TOKEN_PATH}", b"grant_type=client_credentials", headers, http1=True
    )


def ok_count(http_port: int, method: str, outcome: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return calls_by_code(text, method).get(outcome, 0)


# --- the run ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads, so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(
        self, args: argparse.Namespace, service: Ports, noop: Ports, token: str, pids: tuple[int, int]
    ) -> None:
        self.args, self.service, self.noop, self.token = args, service, noop, token
        self.service_pid, self.noop_pid = pids
        self.rows: list[Row] = []

    def measure(
        self, request: Request, counted: tuple[str, str] | None, pid: int
    ) -> tuple[Result, bool, float]:
        """Warm-up, then the measured run; succeeded only if every request did. Also the CPU
        milliseconds the server process spent per request of the measured run."""
        before = ok_count(self.service.http, *counted) if counted else 0
        h2load(request, self.args.warmup, self.args.concurrency)
        cpu = cpu_seconds(pid)
        result = h2load(request, self.args.requests, self.args.concurrency)
        cpu_ms = (cpu_seconds(pid) - cpu) * 1000 / result.requests
        ok = result.succeeded == result.requests == self.args.requests
        if counted:
            ok = (
                ok and ok_count(self.service.http, *counted) - before == self.args.warmup + self.args.requests
            )
        return result, ok, cpu_ms

    def row(
        self,
        name: str,
        transport: str,
        request: Request,
        counted: tuple[str, str] | None,
        baseline: Request | None = None,
        note: str = "",
    ) -> Row:
        result, ok, cpu_ms = self.measure(request, counted, self.service_pid)
        base, base_cpu_ms = None, 0.0
        if baseline is not None:
            base, _, base_cpu_ms = self.measure(baseline, None, self.noop_pid)
        row = Row(name, transport, result, base, ok, cpu_ms, base_cpu_ms, note)
        self.rows.append(row)
        print(format_row(row), flush=True)
        return row


def bcrypt_rate(cost: int, threads: int, hashes: int) -> float:
    secret_values = [new_secret().text.encode() for _ in range(hashes)]
    salt = bcrypt.gensalt(cost)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        list(pool.map(lambda s: bcrypt.hashpw(s, salt), secret_values))
    return hashes / (time.perf_counter() - start)


def format_row(row: Row) -> str:
    if row.result is None:
        return f"| {row.name} | {row.transport} |{(' ' + DASH + ' |') * 7} {row.note} |"
    r, ratio = row.result, row.ratio()
    status = "ok" if row.ok else "**FAILED: not every request succeeded**"
    base = f"{row.baseline.rps:,.0f}" if row.baseline else DASH
    base_cpu = f"{row.baseline_cpu_ms:.2f}" if row.baseline else DASH
    ratio_text = f"{ratio:.2f}" if ratio is not None else DASH
    return (
        f"| {row.name} | {row.transport} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {row.cpu_ms:.2f} | "
        f"{base} | {base_cpu} | {ratio_text} | {status}{'; ' + row.note if row.note else ''} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get("MS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test",
        default=None,
        help="run on a throwaway database on this PostgreSQL server (default: SQLite)",
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--users", type=int, default=1_000_000, help="users in the large data set")
    parser.add_argument("--rotations", type=int, default=10_000, help="earlier rotations in the large case")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md")
    args = parser.parse_args()
    cost = load([], os.environ).bcrypt_cost
    with (
        tempfile.TemporaryDirectory(prefix="machinesecrets-bench-") as tmp,
        database(args.postgres, Path(tmp)) as url,
    ):
        folder = Path(tmp)
        service_process, service = start_service(url, folder)
        noop_process, noop = start_noop(folder / "noop")
        try:
            report = run(args, url, folder, service, noop, cost, (service_process.pid, noop_process.pid))
        finally:
            for process in (service_process, noop_process):
                process.terminate()
                process.wait(timeout=30)
    print(report)
    if not args.no_write:
        write_report(report)


def run(
    args: argparse.Namespace,
    url: str,
    folder: Path,
    service: Ports,
    noop: Ports,
    cost: int,
    pids: tuple[int, int],
) -> str:
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

    threads = min(32, (os.cpu_count() or 1) + 4)  # asyncio.to_thread's default executor: the server's
    hashes = bcrypt_rate(cost, threads, 2000)
    print(f"bcrypt cost {cost}: {hashes:,.0f} hashes/s with {threads} threads", flush=True)

    counted_add = (ADD_SECRET, "OK")
    grpc_add = bench.row(
        "AddSecret",
        "native gRPC",
        grpc_request(service.grpc, ADD_SECRET, add, token),
        counted_add,
        grpc_request(noop.grpc, ADD_SECRET, add, token),
    )
    web_add = bench.row(
        "AddSecret",
        "grpc-web direct",
        grpc_web_request(service.http, ADD_SECRET, add, token),
        counted_add,
        grpc_web_request(noop.http, ADD_SECRET, add, token),
    )
    json_add = bench.row(
        "AddSecret",
        "JSON through Envoy",
        json_add_secret(service.envoy, user_id, token),
        counted_add,
        json_add_secret(noop.envoy, user_id, token),
    )
    bench.row(
        "AddSecret",
        "gRPC through Envoy",
        grpc_request(service.envoy, ADD_SECRET, add, token),
        counted_add,
        grpc_request(noop.envoy, ADD_SECRET, add, token),
    )
    # ZITADEL's name for the same call: the mapping onto the same command should cost nothing.
    zitadel_add = bench.row(
        "GenerateMachineSecret (ZITADEL v1)",
        "native gRPC",
        grpc_request(service.grpc, GENERATE_SECRET, add, token),
        (GENERATE_SECRET, "OK"),
        grpc_request(noop.grpc, ADD_SECRET, add, token),
    )
    get_row = bench.row(
        "GetUserByID",
        "native gRPC",
        grpc_request(service.grpc, GET_USER, get, token),
        (GET_USER, "OK"),
        grpc_request(noop.grpc, GET_USER, get, token),
    )
    token_direct = bench.row(
        "token endpoint",
        "HTTP direct",
        token_request(service.http, client_id, secret),
        (TOKEN_PATH, "200"),
        token_request(noop.http, client_id, secret),
    )
    bench.row(
        "token endpoint",
        "HTTP through Envoy",
        token_request(service.envoy, client_id, secret),
        (TOKEN_PATH, "200"),
        token_request(noop.envoy, client_id, secret),
    )

    # Several secrets: the token endpoint runs one bcrypt check whatever their number (the lookup
    # key finds the hash), so a client with 10 costs what one with 1 costs.
    orgs.SetSecretPolicy(
        org_pb.SetSecretPolicyRequest(policy=org_pb.SecretPolicy(max_secrets_per_user=10)), metadata=auth
    )
    many_client, many_user = "bench-client-10", machine_user("bench-client-10")[0]
    create = user_pb.CreateSecretRequest(user_id=many_user)
    many = [users.CreateSecret(create, metadata=auth).client_secret for _ in range(10)]
    token_one = bench.row(
        "token endpoint, client with 1 live secret",
        "HTTP direct",
        token_request(service.http, client_id, secret),
        (TOKEN_PATH, "200"),
        token_request(noop.http, client_id, secret),
    )
    token_ten = bench.row(
        "token endpoint, client with 10 live secrets",
        "HTTP direct",
        token_request(service.http, many_client, many[4]),
        (TOKEN_PATH, "200"),
        token_request(noop.http, many_client, many[4]),
    )
    # Rotation with no grace: a new secret, the others retired (at most 20 expired ones are kept).
    rotating = machine_user("bench-rotating")[0]
    rotate = user_pb.RotateSecretRequest(user_id=rotating)
    rotate.grace_period.FromSeconds(0)
    rotate_row = bench.row(
        "RotateSecret (no grace)",
        "native gRPC",
        grpc_request(service.grpc, ROTATE_SECRET, rotate.SerializeToString(), token),
        (ROTATE_SECRET, "OK"),
        grpc_request(noop.grpc, ADD_SECRET, add, token),
        note="no-op: AddSecret's fixed answer",
    )

    # Data growth: AddSecret on a user with few and with many earlier rotations, and with few and
    # many users in the store. Seeded by bulk insert of valid events.
    ids = IdGenerator()
    growth: dict[str, Row] = {}
    for rotations in (10, args.rotations):
        target, _ = machine_user(f"bench-rotated-{rotations}")
        seed.bulk_insert(url, seed.rotations(target, org_id, 2, rotations))
        request = grpc_request(
            service.grpc, ADD_SECRET, user_pb.AddSecretRequest(user_id=target).SerializeToString(), token
        )
        growth[f"rot{rotations}"] = bench.row(
            f"AddSecret, {rotations:,} earlier rotations", "native gRPC", request, counted_add
        )
    present = 8  # the admin and the users made above
    for total in (1_000, args.users):
        started = time.perf_counter()
        seed.bulk_insert(url, seed.machine_users(org_id, total - present, ids))
        print(f"seeded {total - present:,} users in {time.perf_counter() - started:.1f} s", flush=True)
        present = total
        growth[f"users{total}"] = bench.row(
            f"AddSecret, {total:,} users in the store",
            "native gRPC",
            grpc_request(service.grpc, ADD_SECRET, add, token),
            counted_add,
        )

    return report(
        args,
        url,
        cost,
        hashes,
        threads,
        bench,
        grpc_add,
        web_add,
        json_add,
        zitadel_add,
        get_row,
        token_direct,
        growth,
        (token_one, token_ten, rotate_row),
    )


def report(
    args: argparse.Namespace,
    url: str,
    cost: int,
    hashes: float,
    threads: int,
    bench: Bench,
    grpc_add: Row,
    web_add: Row,
    json_add: Row,
    zitadel_add: Row,
    get_row: Row,
    token_direct: Row,
    growth: dict[str, Row],
    lifecycle: tuple[Row, Row, Row],
) -> str:
    def ideal(noop: float) -> float:
        return 1 / (1 / noop + 1 / hashes)

    def rps(row: Row) -> float:
        return row.result.rps if row.result else 0.0

    def base(row: Row) -> float:
        return row.baseline.rps if row.baseline else 0.0

    targets = [
        (
            "AddSecret over native gRPC ≥ 70 % of the ideal (no-op gRPC + one hash)",
            rps(grpc_add) / ideal(base(grpc_add)),
            0.70,
        ),
        (
            "token endpoint ≥ 70 % of the ideal (no-op HTTP + one hash)",
            rps(token_direct) / ideal(base(token_direct)),
            0.70,
        ),
        ("GetUserByID ≥ 70 % of the no-op over native gRPC", rps(get_row) / base(get_row), 0.70),
        ("JSON through Envoy ≥ 80 % of AddSecret over native gRPC", rps(json_add) / rps(grpc_add), 0.80),
        ("grpc-web direct ≥ 60 % of AddSecret over native gRPC", rps(web_add) / rps(grpc_add), 0.60),
        (
            "ZITADEL's GenerateMachineSecret within 10 % of AddSecret over native gRPC",
            rps(zitadel_add) / rps(grpc_add),
            0.90,
        ),
        (
            "token endpoint, client with 10 live secrets within 10 % of one with 1",
            rps(lifecycle[1]) / rps(lifecycle[0]),
            0.90,
        ),
        (
            "RotateSecret (no grace) ≥ 70 % of AddSecret over native gRPC",
            rps(lifecycle[2]) / rps(grpc_add),
            0.70,
        ),
        (
            f"AddSecret, {args.rotations:,} rotations vs 10: within 20 %",
            rps(growth[f"rot{args.rotations}"]) / rps(growth["rot10"]),
            0.80,
        ),
        (
            f"AddSecret, {args.users:,} users vs 1,000: within 20 %",
            rps(growth[f"users{args.users}"]) / rps(growth["users1000"]),
            0.80,
        ),
    ]
    all_ok = all(row.ok for row in bench.rows)
    lines = [
        BEGIN,
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine()}.",
        f"Store: {'PostgreSQL' if url.startswith('postgresql') else 'SQLite'}. bcrypt cost **{cost}** (the default). "
        f"{args.requests:,} requests per row after {args.warmup:,} of warm-up, {args.concurrency} connections, "
        f"one request in flight on each; h2load from a separate process. Latencies in ms. Server CPU: the "
        f"server process's CPU time (all its threads; not Envoy's, not h2load's) per request.",
        "",
        f"bcrypt at cost {cost} with {threads} threads (the server's thread pool): **{hashes:,.0f} hashes/s**.",
        "",
        "| call | transport | req/s | p50 | p99 | server CPU ms/req | no-op req/s | no-op CPU ms/req | ratio to no-op | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(format_row(row) for row in bench.rows),
        "",
        "| target | measured | goal | met |",
        "| --- | ---: | ---: | --- |",
        *(
            f"| {name} | {value:.2f} | {goal:.2f} | {'yes' if value >= goal else '**no**'} |"
            for name, value, goal in targets
        ),
        "",
        f"Ideal for one RPC plus one hash, `1 / (1/noop + 1/hashes)`: native gRPC {ideal(base(grpc_add)):,.0f} req/s, "
        f"HTTP {ideal(base(token_direct)):,.0f} req/s.",
        "" if all_ok else "\n**Some rows failed: their numbers do not count.**",
        END,
    ]
    return "\n".join(lines)


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {int(memory) // 1024 // 1024} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, grpcio {grpc.__version__}"
    )


def write_report(report: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    REPORT.write_text(head + report + tail)
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
