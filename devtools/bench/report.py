"""The report: the table of rows, the overload and workers lines, the targets each ratio is held
to, and the machine it ran on, as Markdown written between BENCHMARKS.md's markers."""

import argparse
import os
import platform
import time
from pathlib import Path

import grpc

from devtools.bench.measure import DASH, Row, Sample, median, spread
from devtools.bench.scenarios import OVERLOAD_ANSWER_MS, OVERLOAD_CONNECTIONS, Measured, Workers
from devtools.bench.targets import ROOT

REPORT = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def report(args: argparse.Namespace, url: str, cost: int, measured: Measured) -> str:
    """The Markdown between the markers: what ran where, the table, and the targets."""
    rows, hashes, threads = measured.rows, measured.hashes, measured.threads

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
        # A platform token's RSA verification against the secret's bcrypt check: a workload that
        # holds no secret should not pay more for its token than one that does.
        (
            "token endpoint, federated exchange, of the secret grant",
            paired(rows["federated"], rows["token"]),
            0.90,
        ),
        (
            "token endpoint, federated exchange, inline JWKS, of keys fetched and cached (within 10 %)",
            paired(rows["federated_inline"], rows["federated"]),
            0.90,
        ),
        (
            "token endpoint, client with 10 live secrets, of one with 1 (within 10 %)",
            paired(rows["token_ten"], rows["token"]),
            0.90,
        ),
        (
            "token endpoint issuing JWT access tokens, of opaque ones",
            paired(rows["token_jwt"], rows["token"]),
            0.75,
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
                ("search", "ListUsers by a part of the name few have", " in the org"),
            )
        ),
    ]
    load = measured.overload
    target_lines = [
        f"| {name} | {median(values):.2f} | {spread(values)} | {goal:.2f} | {'yes' if median(values) >= goal else '**no**'} |"
        for name, values, goal in targets
    ]
    heavy_p99 = load.p99_ratios()
    refused_p99 = [r.p99_refused_ms for r in load.heavy]
    target_lines += [
        f"| overload, {OVERLOAD_CONNECTIONS} connections on GetUserByID: every call answered (200 or 429) "
        f"within {OVERLOAD_ANSWER_MS / 1000:.0f} s; slowest, ms | {median([r.max_ms for r in load.heavy]):,.0f} | "
        f"{spread([r.max_ms for r in load.heavy], 0)} | {OVERLOAD_ANSWER_MS:,} | {'yes' if load.answered_in_time() else '**no**'} |",
        f"| overload: p99 of OK at {OVERLOAD_CONNECTIONS} connections, over p99 at {args.concurrency} (at most 4) | "
        f"{median(heavy_p99):.2f} | {spread(heavy_p99)} | 4.00 | {'yes' if median(heavy_p99) <= 4 else '**no**'} |",
        f"| overload: p99 of the refusals (429) at {OVERLOAD_CONNECTIONS} connections, ms (at most 5) | "
        f"{median(refused_p99):.1f} | {spread(refused_p99, 1)} | 5.0 | {'yes' if median(refused_p99) <= 5 else '**no**'} |",
        f"| overload: RSS growth, MB (at most 50) | {median(load.rss_growth_mb):.1f} | {spread(load.rss_growth_mb, 1)} | "
        f"50.0 | {'yes' if max(load.rss_growth_mb) <= 50 else '**no**'} |",
    ]
    if measured.workers is not None:
        target_lines += workers_targets(measured.workers)
    refused = [r.statuses.get("429", 0) / r.requests for r in load.heavy]
    all_ok = all(row.ok for row in measured.table)
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
        *(format_row(row) for row in measured.table),
        "",
        f"Overload: GetUserByID as JSON on the HTTP port, {load.heavy[0].requests:,} requests at {OVERLOAD_CONNECTIONS} "
        f"connections, {median([r.rps for r in load.heavy]):,.0f} req/s; refused with 429 (`OVERLOADED`): "
        f"{spread([100 * r for r in refused], 1)} % of calls; p99 of the OK answers "
        f"{median([r.p99_ok_ms for r in load.heavy]):.1f} ms against {median([r.p99_ok_ms for r in load.usual]):.1f} ms "
        f"at {args.concurrency} connections, of the refusals {median(refused_p99):.1f} ms.",
        *([] if measured.workers is None else ["", workers_summary(measured.workers)]),
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


def workers_summary(workers: Workers) -> str:
    """MS_WORKERS=2 against one process, in a sentence under the table."""

    def line(samples: list[Sample]) -> str:
        return (
            f"{median([s.result.rps for s in samples]):,.0f} req/s "
            f"({spread([s.result.rps for s in samples], 0)}), {median([s.cpu_ms for s in samples]):.2f} ms of "
            f"server CPU per call"
        )

    ok = all(s.ok for s in workers.one + workers.two)
    return (
        f"Workers: the token endpoint (HTTP direct) with 1 process: {line(workers.one)}; with MS_WORKERS=2 "
        f"(CPU of the supervisor and both workers): {line(workers.two)}."
        + ("" if ok else " **Some runs failed: their numbers do not count.**")
    )


def workers_targets(workers: Workers) -> list[str]:
    """MS_WORKERS=2 against one process, as rows of the targets."""
    throughput, cpu = workers.throughput(), workers.cpu()
    return [
        f"| 2 workers on PostgreSQL: token endpoint req/s, of 1 process (at least 1) | {median(throughput):.2f} | "
        f"{spread(throughput)} | 1.00 | {'yes' if median(throughput) >= 1 else '**no**'} |",
        f"| 2 workers: server CPU per call, of 1 process (within 15 %) | {median(cpu):.2f} | {spread(cpu)} | "
        f"1.15 | {'yes' if median(cpu) <= 1.15 else '**no**'} |",
    ]


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
