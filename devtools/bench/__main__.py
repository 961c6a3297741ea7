"""`make bench`: throughput and latency of the service, side by side with a no-op baseline on the
same stack, measured in one run and written to BENCHMARKS.md.

    python -m devtools.bench [--postgres [URL]] [--requests N] [--concurrency C] [--users N]

Every row is a fixed number of requests at a fixed concurrency after a warm-up, driven by h2load
from a separate process. A row whose requests did not all succeed (by the service's own count of
OK answers, at /metrics, not only by HTTP status) is reported as failed, not as fast.
"""

import argparse
import base64
import os
import platform
import statistics
import struct
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import bcrypt
import grpc
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import org_service_pb2_grpc, user_service_pb2_grpc
from machinesecrets.v1 import user_service_pb2 as user_pb

from devtools.bench import seed
from devtools.bench.load import Request, Result, h2load
from devtools.launcher import LaunchFailed, launch, tail, wait_ready
from devtools.throwaway_database import throwaway_database
from server.config import load
from server.domain.ids import IdGenerator
from server.domain.secret_format import new_secret
from server.metrics import calls_by_code
from server.transport.oauth import TOKEN_PATH

ROOT = Path(__file__).resolve().parent.parent.parent
REPORT = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
DASH = "\u2013"  # an en dash: no value
ADD_SECRET = "/machinesecrets.v1.UserService/AddSecret"
GET_USER = "/machinesecrets.v1.UserService/GetUserByID"
LIST_USERS = "/machinesecrets.v1.UserService/ListUsers"
ROTATE_SECRET = "/machinesecrets.v1.UserService/RotateSecret"
# Overload: this many connections against the usual 16; every call must be answered within 2 s.
OVERLOAD_CONNECTIONS = 256
OVERLOAD_ANSWER_MS = 2000
# The same request bytes as AddSecret's: its one field, user_id = 1.
GENERATE_SECRET = "/zitadel.management.v1.ManagementService/GenerateMachineSecret"


@dataclass
class Ports:
    grpc: int
    http: int
    envoy: int
    metrics: int = 0  # the service's /metrics (MS_METRICS_ADDR); 0: none (the no-op)


@dataclass(frozen=True)
class Sample:
    """One round of one row: the service's run, and its no-op's right after it."""

    result: Result
    ok: bool
    cpu_ms: float  # CPU time of the server process (all its threads) per request
    baseline: Result | None = None
    baseline_cpu_ms: float = 0.0


@dataclass
class Row:
    name: str
    transport: str
    note: str = ""
    samples: list[Sample] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.samples) and all(sample.ok for sample in self.samples)

    def rps(self) -> list[float]:
        return [sample.result.rps for sample in self.samples]

    def baseline_rps(self) -> list[float]:
        return [sample.baseline.rps for sample in self.samples if sample.baseline]

    def ratios(self) -> list[float]:
        """Per round: the service's req/s over its no-op's, measured one right after the other."""
        return [s.result.rps / s.baseline.rps for s in self.samples if s.baseline]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float], digits: int = 2) -> str:
    """min to max, so that a reader can tell a change from this machine's noise."""
    if not values:
        return DASH
    return f"{min(values):,.{digits}f}{DASH}{max(values):,.{digits}f}"


# --- processes ------------------------------------------------------------------------------


def start_service(
    database_url: str, folder: Path, settings: dict[str, str] | None = None, root: Path = ROOT
) -> tuple[subprocess.Popen[bytes], Ports]:
    launched = launch(
        folder,
        {
            "MS_DATABASE_URL": database_url,
            "MS_GRPC_ADDR": "127.0.0.1:0",
            "MS_HTTP_ADDR": "127.0.0.1:0",
            "MS_ENVOY_ADDR": "127.0.0.1:0",
            "MS_METRICS_ADDR": "127.0.0.1:0",
            "MS_ADMIN_PAT_FILE": str(folder / "admin.pat"),
            **(settings or {}),
        },
        root=root,
    )
    try:
        ports = wait_ready(launched)
    except LaunchFailed as error:
        raise SystemExit(f"the service did not start: {error}") from None
    if ports.envoy is None:
        raise SystemExit(f"Envoy did not start: {tail(launched.log_file)}")
    if ports.metrics is None:
        raise SystemExit("the service serves no /metrics: the runs' answers cannot be counted")
    return launched.process, Ports(ports.grpc, ports.http, ports.envoy, ports.metrics)


def start_noop(folder: Path) -> tuple[subprocess.Popen[bytes], Ports]:
    launched = launch(folder, {}, module="devtools.bench.noop")
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


def json_get_user(port: int, user_id: str, token: str) -> Request:
    headers = ((":method", "GET"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}/users/{user_id}", b"", headers, http1=True)


def token_request(port: int, client_id: str, secret: str) -> Request:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = (("content-type", "application/x-www-form-urlencoded"), ("authorization", f"Basic {basic}"))
    return Request(
        f"http://127.0.0.1:{port}{TOKEN_PATH}", b"grant_type=client_credentials", headers, http1=True
    )


def ok_count(metrics_port: int, method: str, outcome: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return calls_by_code(text, method).get(outcome, 0)


# --- the run ----------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU time so far of a process and its children (MS_WORKERS' workers), all
    their threads."""
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):  # it ended while we looked
                continue
    tree, total = [pid], 0
    while tree:
        current = tree.pop()
        fields = stats.get(current)
        if fields is None:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        tree += [child for child, f in stats.items() if int(f[1]) == current]  # ppid
    return total / os.sysconf("SC_CLK_TCK")


def timed_run(
    request: Request, warmup: int, requests: int, connections: int, pid: int
) -> tuple[Result, float]:
    """A warm-up, then the measured run, and the CPU milliseconds the server's processes (pid and
    its children) spent per request of it."""
    h2load(request, warmup, connections)
    cpu = cpu_seconds(pid)
    result = h2load(request, requests, connections)
    return result, (cpu_seconds(pid) - cpu) * 1000 / result.requests


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
        """timed_run at the run's settings; succeeded only if every request did (by the service's
        own count too, when counted names the method and outcome)."""
        before = ok_count(self.service.metrics, *counted) if counted else 0
        args = self.args
        result, cpu_ms = timed_run(request, args.warmup, args.requests, args.concurrency, pid)
        ok = result.succeeded == result.requests == self.args.requests
        if counted:
            ok = (
                ok
                and ok_count(self.service.metrics, *counted) - before == self.args.warmup + self.args.requests
            )
        return result, ok, cpu_ms

    def sample(
        self, row: Row, request: Request, counted: tuple[str, str] | None, baseline: Request | None
    ) -> None:
        """One round of a row: the service, then its no-op at once, so that both see the same noise."""
        result, ok, cpu_ms = self.measure(request, counted, self.service_pid)
        if baseline is None:
            row.samples.append(Sample(result, ok, cpu_ms))
        else:
            base, _, base_cpu_ms = self.measure(baseline, None, self.noop_pid)
            row.samples.append(Sample(result, ok, cpu_ms, base, base_cpu_ms))
        print(format_sample(row, row.samples[-1], len(row.samples)), flush=True)

    def rounds(self, specs: list["Spec"]) -> list[Row]:
        """Every spec once per round, for args.rounds rounds: each row's rounds are spread over the
        run, and the rows of one round are measured close together (their ratios pair by round)."""
        rows = [Row(spec.name, spec.transport, spec.note) for spec in specs]
        self.rows += rows
        for _ in range(self.args.rounds):
            for row, spec in zip(rows, specs, strict=True):
                self.sample(row, spec.request, spec.counted, spec.baseline)
        return rows


@dataclass(frozen=True)
class Spec:
    name: str
    transport: str
    request: Request
    counted: tuple[str, str] | None
    baseline: Request | None = None
    note: str = ""


def bcrypt_rate(cost: int, threads: int, hashes: int) -> float:
    secret_values = [new_secret().text.encode() for _ in range(hashes)]
    salt = bcrypt.gensalt(cost)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        start = time.perf_counter()
        list(pool.map(lambda s: bcrypt.hashpw(s, salt), secret_values))
    return hashes / (time.perf_counter() - start)


def format_sample(row: Row, sample: Sample, round_number: int) -> str:
    r = sample.result
    base = f", no-op {sample.baseline.rps:,.0f} req/s" if sample.baseline else ""
    status = "ok" if sample.ok else "FAILED: not every request succeeded"
    return (
        f"round {round_number}: {row.name}, {row.transport}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, "
        f"p99 {r.p99_ms:.2f} ms, {sample.cpu_ms:.2f} ms CPU{base}: {status}"
    )


def format_row(row: Row) -> str:
    """Medians over the rounds; the spread of req/s and of the ratio to the no-op."""
    samples, ratios = row.samples, row.ratios()
    status = "ok" if row.ok else "**FAILED: not every request succeeded**"
    cells = [
        row.name,
        row.transport,
        f"{median(row.rps()):,.0f}",
        spread(row.rps(), 0),
        f"{median([s.result.p50_ms for s in samples]):.2f}",
        f"{median([s.result.p99_ms for s in samples]):.2f}",
        f"{median([s.cpu_ms for s in samples]):.2f}",
        f"{median(row.baseline_rps()):,.0f}" if ratios else DASH,
        f"{median([s.baseline_cpu_ms for s in samples if s.baseline]):.2f}" if ratios else DASH,
        f"{median(ratios):.2f}" if ratios else DASH,
        spread(ratios),
        status + (f"; {row.note}" if row.note else ""),
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get("MS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test",
        default=None,
        help="run on a throwaway database on this PostgreSQL server (default: SQLite)",
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the report gives medians and spread")
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
    for total in dict.fromkeys((1_000, args.users)):
        started = time.perf_counter()
        seed.bulk_insert(url, seed.machine_users(org_id, total - present, ids))
        print(f"seeded {total - present:,} users in {time.perf_counter() - started:.1f} s", flush=True)
        present = total
        rows[f"users{total}"], rows[f"list{total}"], rows[f"humans{total}"] = bench.rounds(
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
            ]
        )
    measured = Measured(rows, overload(bench, json_get_user(service.http, user_id, token)))
    if url.startswith("postgresql"):
        measured = replace(
            measured, workers=workers(bench, url, folder, token_request(service.http, client_id, secret))
        )
    return report(args, url, cost, hashes, threads, bench, measured)


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
            f"p99 of OK {h.p99_ok_ms:.1f} ms, slowest {h.max_ms:.0f} ms, RSS +{growth[-1]:.1f} MB",
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

    def summary(self) -> str:
        def line(samples: list[Sample]) -> str:
            return (
                f"{median([s.result.rps for s in samples]):,.0f} req/s "
                f"({spread([s.result.rps for s in samples], 0)}), {median([s.cpu_ms for s in samples]):.2f} ms of "
                f"server CPU per call"
            )

        ok = all(s.ok for s in self.one + self.two)
        return (
            f"Workers: the token endpoint (HTTP direct) with 1 process: {line(self.one)}; with MS_WORKERS=2 "
            f"(CPU of the supervisor and both workers): {line(self.two)}."
            + ("" if ok else " **Some runs failed: their numbers do not count.**")
        )

    def targets(self) -> list[str]:
        throughput, cpu = self.throughput(), self.cpu()
        return [
            f"| 2 workers on PostgreSQL: token endpoint req/s, of 1 process (at least 1) | {median(throughput):.2f} | "
            f"{spread(throughput)} | 1.00 | {'yes' if median(throughput) >= 1 else '**no**'} |",
            f"| 2 workers: server CPU per call, of 1 process (within 15 %) | {median(cpu):.2f} | {spread(cpu)} | "
            f"1.15 | {'yes' if median(cpu) <= 1.15 else '**no**'} |",
        ]


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


def memory_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for process {pid}")


@dataclass(frozen=True)
class Measured:
    rows: dict[str, Row]
    overload: Overload
    workers: "Workers | None" = None


def report(
    args: argparse.Namespace,
    url: str,
    cost: int,
    hashes: float,
    threads: int,
    bench: Bench,
    measured: Measured,
) -> str:
    rows = measured.rows

    def ideal(noop: float) -> float:
        return 1 / (1 / noop + 1 / hashes)

    def of_ideal(row: Row) -> list[float]:
        return [s.result.rps / ideal(s.baseline.rps) for s in row.samples if s.baseline]

    def paired(row: Row, other: Row) -> list[float]:
        """Per round, one row over another measured in the same round."""
        return [a / b for a, b in zip(row.rps(), other.rps(), strict=True)]

    postgres = url.startswith("postgresql")
    goals = (
        {"add": 0.60, "token": 0.65, "get": 0.65} if postgres else {"add": 0.75, "token": 0.80, "get": 0.70}
    )
    targets: list[tuple[str, list[float], float]] = [
        (
            "AddSecret over native gRPC, of the ideal (no-op gRPC + one hash)",
            of_ideal(rows["grpc_add"]),
            goals["add"],
        ),
        ("token endpoint, of the ideal (no-op HTTP + one hash)", of_ideal(rows["token"]), goals["token"]),
        ("GetUserByID, of the no-op over native gRPC", rows["get"].ratios(), goals["get"]),
        (
            "JSON through Envoy, of AddSecret over native gRPC",
            paired(rows["json_add"], rows["grpc_add"]),
            0.85,
        ),
        ("grpc-web direct, of AddSecret over native gRPC", paired(rows["web_add"], rows["grpc_add"]), 0.60),
        (
            "ZITADEL's GenerateMachineSecret, of AddSecret over native gRPC (within 10 %)",
            paired(rows["zitadel_add"], rows["grpc_add"]),
            0.90,
        ),
        (
            "token endpoint, client with 10 live secrets, of one with 1 (within 10 %)",
            paired(rows["token_ten"], rows["token"]),
            0.90,
        ),
        (
            "RotateSecret (no grace), of AddSecret over native gRPC",
            paired(rows["rotate"], rows["grpc_add"]),
            0.70,
        ),
        (
            f"AddSecret, {args.rotations:,} rotations, of 10 (within 20 %)",
            paired(rows[f"rot{args.rotations}"], rows["rot10"]),
            0.80,
        ),
        # Data growth: each call with args.users users against 1,000.
        *(
            (
                f"{call}, {args.users:,} users{where}, of 1,000 (within 20 %)",
                paired(rows[f"{row}{args.users}"], rows[f"{row}1000"]),
                0.80,
            )
            for row, call, where in (
                ("users", "AddSecret", ""),
                ("list", "ListUsers by a prefix few have", " in the org"),
                ("humans", "ListUsers of a type few have", " in the org"),
            )
        ),
    ]
    load = measured.overload
    target_lines = [
        f"| {name} | {median(values):.2f} | {spread(values)} | {goal:.2f} | {'yes' if median(values) >= goal else '**no**'} |"
        for name, values, goal in targets
    ]
    heavy_p99 = load.p99_ratios()
    target_lines += [
        f"| overload, {OVERLOAD_CONNECTIONS} connections on GetUserByID: every call answered (200 or 429) "
        f"within {OVERLOAD_ANSWER_MS / 1000:.0f} s; slowest, ms | {median([r.max_ms for r in load.heavy]):,.0f} | "
        f"{spread([r.max_ms for r in load.heavy], 0)} | {OVERLOAD_ANSWER_MS:,} | {'yes' if load.answered_in_time() else '**no**'} |",
        f"| overload: p99 of OK at {OVERLOAD_CONNECTIONS} connections, over p99 at {args.concurrency} (at most 4) | "
        f"{median(heavy_p99):.2f} | {spread(heavy_p99)} | 4.00 | {'yes' if median(heavy_p99) <= 4 else '**no**'} |",
        f"| overload: RSS growth, MB (at most 50) | {median(load.rss_growth_mb):.1f} | {spread(load.rss_growth_mb, 1)} | "
        f"50.0 | {'yes' if max(load.rss_growth_mb) <= 50 else '**no**'} |",
    ]
    if measured.workers is not None:
        target_lines += measured.workers.targets()
    refused = [r.statuses.get("429", 0) / r.requests for r in load.heavy]
    all_ok = all(row.ok for row in bench.rows)
    lines = [
        BEGIN,
        f"Run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {machine()}.",
        f"Store: {'PostgreSQL' if postgres else 'SQLite'}. bcrypt cost **{cost}** (the default). "
        f"**{args.rounds} rounds**: in each, every row's service run is followed at once by its no-op's; the "
        f"table gives medians over the rounds and the spread (min{DASH}max) of req/s and of the ratio. "
        f"{args.requests:,} requests per run after {args.warmup:,} of warm-up, {args.concurrency} connections, "
        f"one request in flight on each; h2load from a separate process. Latencies in ms. Server CPU: the "
        f"server process's CPU time (all its threads; not Envoy's, not h2load's) per request.",
        "",
        f"bcrypt at cost {cost} with {threads} threads (the server's thread pool): **{hashes:,.0f} hashes/s**.",
        "",
        "| call | transport | req/s | spread | p50 | p99 | server CPU ms/req | no-op req/s | no-op CPU ms/req | ratio to no-op | spread | result |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
        *(format_row(row) for row in bench.rows),
        "",
        f"Overload: GetUserByID as JSON on the HTTP port, {load.heavy[0].requests:,} requests at {OVERLOAD_CONNECTIONS} "
        f"connections, {median([r.rps for r in load.heavy]):,.0f} req/s; refused with 429 (`OVERLOADED`): "
        f"{spread([100 * r for r in refused], 1)} % of calls; p99 of the OK answers "
        f"{median([r.p99_ok_ms for r in load.heavy]):.1f} ms against {median([r.p99_ok_ms for r in load.usual]):.1f} ms "
        f"at {args.concurrency} connections.",
        *([] if measured.workers is None else ["", measured.workers.summary()]),
        "",
        "| target (median of the rounds' ratios) | measured | spread | goal | met |",
        "| --- | ---: | ---: | ---: | --- |",
        *target_lines,
        "",
        f"Ideal for one RPC plus one hash, `1 / (1/noop + 1/hashes)`: native gRPC "
        f"{median([ideal(b) for b in rows['grpc_add'].baseline_rps()]):,.0f} req/s, "
        f"HTTP {median([ideal(b) for b in rows['token'].baseline_rps()]):,.0f} req/s (medians).",
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
