"""Measuring: one run of h2load after its warm-up, the CPU time the target's processes spent on
it, and whether every call succeeded, by the service's own count of its answers at /metrics
too; the rounds of a table's rows, each service run followed at once by its no-op's; the
medians and spreads over the rounds."""

import argparse
import os
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import bcrypt

from devtools.bench.load import Request, Result, h2load
from devtools.bench.targets import Ports
from server.domain.secret_format import new_secret
from server.metrics import calls_by_code

DASH = "\u2013"  # an en dash: no value


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


@dataclass(frozen=True)
class Spec:
    name: str
    transport: str
    request: Request
    counted: tuple[str, str] | None
    baseline: Request | None = None
    note: str = ""


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: list[float], digits: int = 2) -> str:
    """min to max, so that a reader can tell a change from this machine's noise."""
    if not values:
        return DASH
    return f"{min(values):,.{digits}f}{DASH}{max(values):,.{digits}f}"


def ok_count(metrics_port: int, method: str, outcome: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return calls_by_code(text, method).get(outcome, 0)


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


def memory_kb(pid: int, name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} for process {pid}")


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
    """The table's rows, measured against one service and its no-op baseline."""

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

    def rounds(self, specs: list[Spec]) -> list[Row]:
        """Every spec once per round, for args.rounds rounds: each row's rounds are spread over the
        run, and the rows of one round are measured close together (their ratios pair by round)."""
        rows = [Row(spec.name, spec.transport, spec.note) for spec in specs]
        self.rows += rows
        for _ in range(self.args.rounds):
            for row, spec in zip(rows, specs, strict=True):
                self.sample(row, spec.request, spec.counted, spec.baseline)
        return rows


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
