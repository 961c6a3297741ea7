"""Starts the service (or the benchmark's no-op baseline) as a process, and learns its ports from
the ready file it writes once it serves (MS_READY_FILE: JSON with every bound port), not from its
log lines. The tests and `devtools/bench` both start processes with this."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60


class LaunchFailed(Exception):
    """The process exited, or did not get ready in time; the message ends with its log's tail."""


@dataclass(frozen=True)
class Ports:
    grpc: int
    http: int
    envoy: int | None  # None: no Envoy (MS_ENVOY_ADDR=off, or it could not start)
    metrics: int | None = None  # None: no /metrics (MS_METRICS_ADDR=off; the benchmark's no-op)


@dataclass
class Launched:
    process: subprocess.Popen[bytes]
    log_file: Path
    ready_file: Path

    def ports(self) -> Ports | None:
        """The ports, once the process has written its ready file."""
        try:
            ready = json.loads(self.ready_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):  # not yet, or not yet whole
            return None
        return Ports(ready["grpc"], ready["http"], ready["envoy"], ready.get("metrics"))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise LaunchFailed(f"exited with {self.process.returncode}: {tail(self.log_file)}")


def launch(folder: Path, env: Mapping[str, str], module: str = "server", root: Path = ROOT) -> Launched:
    """`python -m module` in the repository (or another checkout of it, with its own generated
    code: an A/B of two commits), logging to a new file in folder."""
    folder.mkdir(parents=True, exist_ok=True)
    number = len(list(folder.glob("server-*.log")))
    log_file, ready_file = folder / f"server-{number}.log", folder / f"ready-{number}.json"
    ready_file.unlink(missing_ok=True)
    environment = {**os.environ, **env, "MS_READY_FILE": str(ready_file)}
    if root != ROOT:
        environment["PYTHONPATH"] = str(root / "generated")
    # A file, not a pipe: a pipe must be drained, and a reader that blocks would stall the server.
    with log_file.open("wb") as sink:
        process = subprocess.Popen(  # noqa: S603 - this interpreter, a module of this repository
            [sys.executable, "-m", module], cwd=root, env=environment, stderr=sink
        )
    return Launched(process, log_file, ready_file)


def wait_ready(launched: Launched, timeout_s: float = READY_TIMEOUT_S) -> Ports:
    deadline = time.monotonic() + timeout_s
    while (ports := launched.ports()) is None:
        launched.check_alive()
        if time.monotonic() > deadline:
            raise LaunchFailed(f"not ready within {timeout_s:g} s: {tail(launched.log_file)}")
        time.sleep(0.05)
    return ports


async def wait_ready_async(launched: Launched, timeout_s: float = READY_TIMEOUT_S) -> Ports:
    deadline = time.monotonic() + timeout_s
    while (ports := launched.ports()) is None:
        launched.check_alive()
        if time.monotonic() > deadline:
            raise LaunchFailed(f"not ready within {timeout_s:g} s: {tail(launched.log_file)}")
        await asyncio.sleep(0.05)
    return ports


def tail(log_file: Path, lines: int = 20) -> str:
    return "\n".join(log_file.read_text(errors="replace").splitlines()[-lines:]) or "no output"
