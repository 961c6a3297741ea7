"""A/B in one run: two services side by side, one call over native gRPC sent to each in turn,
round after round, so that both see the same noise of the machine. The two differ by a setting,
or B runs from another checkout (a commit before a change: `git worktree add`).

    python -m devtools.bench.compare MS_SQLITE_SYNC=normal MS_SQLITE_SYNC=full [--rounds 6]
    python -m devtools.bench.compare --b-root /tmp/before --call GetUserByID

Prints each round and the median ratio B/A of req/s and of server CPU per call, with the spread.
Separate full runs of `make bench` drift by more than the changes being measured (the no-op alone
has moved by 2.5x in an afternoon); alternating runs 10 seconds apart do not.
"""

import argparse
import os
import tempfile
from contextlib import ExitStack
from pathlib import Path

import grpc
from machinesecrets.v1 import user_service_pb2 as user_pb
from machinesecrets.v1 import user_service_pb2_grpc

from devtools.bench.calls import ADD_SECRET, GET_USER, grpc_request
from devtools.bench.measure import median, spread, timed_run
from devtools.bench.targets import ROOT, database, start_service


def setting(text: str) -> dict[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.startswith("MS_"):
        raise argparse.ArgumentTypeError(f"a setting looks like MS_NAME=value, not {text!r}")
    return {name: value}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.bench.compare")
    parser.add_argument("a", type=setting, nargs="?", default={}, help="MS_NAME=value of service A")
    parser.add_argument("b", type=setting, nargs="?", default={}, help="MS_NAME=value of service B")
    parser.add_argument("--b-root", type=Path, default=ROOT, help="the checkout service B runs from")
    parser.add_argument("--call", choices=["AddSecret", "GetUserByID"], default="AddSecret")
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=os.environ.get("MS_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test",
        default=None,
        help="each service on a throwaway database on this PostgreSQL server (default: SQLite)",
    )
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="machinesecrets-compare-") as tmp, ExitStack() as databases:
        services = []
        for label, settings, root in (("a", args.a, ROOT), ("b", args.b, args.b_root)):
            folder = Path(tmp) / label
            url = databases.enter_context(database(args.postgres, folder))
            process, ports = start_service(url, folder, settings, root)
            token = (folder / "admin.pat").read_text().strip()
            with grpc.insecure_channel(f"127.0.0.1:{ports.grpc}") as channel:
                users = user_service_pb2_grpc.UserServiceStub(channel)
                created = users.AddMachineUser(
                    user_pb.AddMachineUserRequest(user_name="compare", name="compare"),
                    metadata=(("authorization", f"Bearer {token}"),),
                )
            if args.call == "AddSecret":
                call = ADD_SECRET, user_pb.AddSecretRequest(user_id=created.user_id).SerializeToString()
            else:
                call = GET_USER, user_pb.GetUserByIDRequest(user_id=created.user_id).SerializeToString()
            services.append((process, grpc_request(ports.grpc, *call, token)))
        try:
            rps: list[list[float]] = [[], []]
            cpu: list[list[float]] = [[], []]
            for round_number in range(1, args.rounds + 1):
                for side, (process, request) in enumerate(services):
                    result, cpu_ms = timed_run(
                        request, args.requests // 10, args.requests, args.concurrency, process.pid
                    )
                    if result.succeeded != result.requests:
                        raise SystemExit(f"round {round_number}: {result.requests - result.succeeded} failed")
                    rps[side].append(result.rps)
                    cpu[side].append(cpu_ms)
                print(
                    f"round {round_number}: A {rps[0][-1]:,.0f} req/s {cpu[0][-1]:.2f} ms CPU; "
                    f"B {rps[1][-1]:,.0f} req/s {cpu[1][-1]:.2f} ms CPU",
                    flush=True,
                )
        finally:
            for process, _ in services:
                process.terminate()
                process.wait(timeout=30)
    throughput = [b / a for a, b in zip(rps[0], rps[1], strict=True)]
    cpu_ratio = [b / a for a, b in zip(cpu[0], cpu[1], strict=True)]
    b_root = "" if args.b_root == ROOT else f" from {args.b_root}"
    print(f"A: {args.a}; B: {args.b}{b_root}; {args.call} over native gRPC, {args.rounds} rounds")
    print(
        f"req/s A {median(rps[0]):,.0f} ({spread(rps[0], 0)}), B {median(rps[1]):,.0f} ({spread(rps[1], 0)})"
    )
    print(
        f"B/A req/s {median(throughput):.2f} ({spread(throughput)}); CPU per call {median(cpu_ratio):.2f} ({spread(cpu_ratio)})"
    )


if __name__ == "__main__":
    main()
