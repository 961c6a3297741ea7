"""`make bench`: throughput and latency of the service, side by side with a no-op baseline on the
same stack, measured in one run and written to BENCHMARKS.md.

    python -m devtools.bench [--postgres [URL]] [--requests N] [--concurrency C] [--users N]

Every row is a fixed number of requests at a fixed concurrency after a warm-up, driven by h2load
from a separate process. A row whose requests did not all succeed (by the service's own count of
OK answers, at /metrics, not only by HTTP status) is reported as failed, not as fast.

A quick run that checks the harness end to end, not the service (BENCH_ARGS for `make bench`):

    python -m devtools.bench --rounds 1 --requests 200 --warmup 20 --users 2000 --rotations 20 --no-write

This module reads the settings and starts the targets; the rest is one job to a module:
`scenarios.py` the rows and how each is set up, `targets.py` starting the service and its
no-op baseline (`noop.py`), `calls.py` the requests h2load sends (`load.py` runs it),
`measure.py` the runs, their CPU time and the rounds, `report.py` the Markdown for
BENCHMARKS.md; `seed.py` bulk-inserts the data growth, `issuer.py` is the federated exchange's
platform, `compare.py` is an A/B of two services.
"""

import argparse
import os
import tempfile
from pathlib import Path

from devtools.bench.issuer import LabIssuer
from devtools.bench.report import report, write_report
from devtools.bench.scenarios import run
from devtools.bench.targets import database, start_noop, start_service
from server.config import load


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
        platform = LabIssuer()  # the federated exchange's issuer, on loopback
        service_process, service = start_service(url, folder, {"MS_FEDERATION_ALLOWED_ORIGINS": platform.url})
        noop_process, noop = start_noop(folder / "noop")
        try:
            pids = (service_process.pid, noop_process.pid)
            measured = run(args, url, folder, service, noop, cost, pids, platform)
        finally:
            for process in (service_process, noop_process):
                process.terminate()
                process.wait(timeout=30)
            platform.close()
    text = report(args, url, cost, measured)
    print(text)
    if not args.no_write:
        write_report(text)


if __name__ == "__main__":
    main()
