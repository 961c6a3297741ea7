"""Running a target: the service, or the no-op baseline (`noop.py`) on the same stack, each as a
process of its own on free ports, found through its ready file; and the database the service runs on."""

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devtools.launcher import LaunchFailed, launch, tail, wait_ready
from devtools.throwaway_database import throwaway_database

ROOT = Path(__file__).resolve().parents[2]  # the checkout: this file is devtools/bench/targets.py


@dataclass
class Ports:
    grpc: int
    http: int
    envoy: int
    metrics: int = 0  # the service's /metrics (MS_METRICS_ADDR); 0: none (the no-op)


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
            # Beside the store it encrypts the signing keys of: processes on one folder share it.
            "MS_MASTERKEY_FILE": str(folder / "masterkey"),
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
