"""The supervisor of MS_WORKERS=N: N server processes behind one Envoy, for every core of a machine.
Each worker is `server/worker.py`.

The first process is the supervisor. It serves no call itself:
- it reserves the gRPC and HTTP ports and starts N workers (`python -m server.worker`), which
  all listen on those ports with SO_REUSEPORT, so that the kernel spreads connections over them;
- it starts the one Envoy, which reaches each worker over the worker's own private Unix sockets
  (load-balanced, and retried on another when a worker cannot be reached);
- it starts a worker again when one dies, and the log says so;
- on SIGHUP it reads the TLS certificate again, and has every worker do so;
- on SIGTERM or Ctrl-C it stops Envoy accepting, asks every worker to stop (each drains its calls
  for MS_SHUTDOWN_GRACE), lets Envoy hand over the last answers, stops it, and exits 0.

PostgreSQL only: config.load refuses N > 1 on SQLite, whose one writer lives in one process.
Each worker keeps its own caches and metrics. /metrics (MS_METRICS_ADDR) is the supervisor's: it
asks every worker (each serves its own on a private Unix socket) and answers their sum
(runtime/worker_metrics.py), the same totals at every scrape, whichever worker took the calls.
"""

import asyncio
import contextlib
import logging
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

from server import app
from server.config import CannotListen, Config, ConfigError
from server.runtime.ready_file import remove_ready_file, write_ready_file
from server.runtime.temp_dirs import private_temp_dir
from server.runtime.tls import ServingCertificate, load_tls, reload_on_signal
from server.runtime.worker_metrics import MergedMetricsEndpoint
from server.transport.asgi_server import AsgiServer
from server.transport.hsts import StrictTransportSecurity
from server.transport.http import HttpApp
from server.transport.metrics_endpoint import METRICS_PATH

log = logging.getLogger("machinesecrets")

READY_TIMEOUT_S = 60.0
WATCH_INTERVAL_S = 0.2


class WorkersFailed(ConfigError):
    """A worker exited while the others started; its own reason is in the log above."""


@dataclass
class Worker:
    index: int
    grpc_socket: str
    http_socket: str
    ready_file: Path
    own: list[str]  # settings of this worker's own, after the shared ones
    process: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, settings: list[str]) -> None:
        command = [
            sys.executable, "-m", "server.worker",
            "--grpc-socket", self.grpc_socket, "--http-socket", self.http_socket,
            *settings, *self.own, "--ready-file", str(self.ready_file),
        ]  # fmt: skip
        # Our own interpreter and module, with the settings the supervisor was given: its log lines
        # go where the supervisor's go.
        self.process = subprocess.Popen(command)  # noqa: S603


async def supervise(config: Config, argv: list[str]) -> None:
    files = load_tls(config.tls_cert_file, config.tls_key_file)  # Envoy needs them; fail before starting
    tls = None if files is None else ServingCertificate(files)
    folder = private_temp_dir("workers")
    envoy = None
    metrics_server: AsgiServer | None = None
    workers: list[Worker] = []
    try:
        # The shared ports, held (SO_REUSEPORT, not listening) until every worker listens on them.
        held = [_hold(config.grpc_addr), _hold(config.http_addr)]
        grpc_addr, http_addr = (
            app.with_port(a, s.getsockname()[1])
            for a, s in zip((config.grpc_addr, config.http_addr), held, strict=True)
        )
        workers = [
            Worker(
                i,
                f"{folder.name}/grpc-{i}.sock",
                f"{folder.name}/http-{i}.sock",
                Path(folder.name) / f"ready-{i}.json",
                []
                if config.metrics_addr is None
                else ["--metrics-socket", f"{folder.name}/metrics-{i}.sock"],
            )
            for i in range(config.workers)
        ]
        # Bound before the workers start: a taken port stops the start at once.
        metrics_server = await _serve_merged_metrics(config, [w.own[1] for w in workers if w.own], tls)
        envoy_addr = (
            None
            if config.envoy_addr is None
            else app.with_port(config.envoy_addr, _free_port(config.envoy_addr))
        )
        # The supervisor's flags, then the worker's own (argparse takes a flag's last value).
        settings = [
            *argv,
            "--grpc-addr",
            grpc_addr,
            "--http-addr",
            http_addr,
            "--envoy-addr",
            "off",
            "--metrics-addr",
            "off",
            "--workers",
            "1",
        ]
        if envoy_addr is not None:
            settings += ["--envoy-addr-public", envoy_addr]
        for worker in workers:
            worker.start(settings)
        await _all_ready(workers)
        for sock in held:
            sock.close()
        if envoy_addr is not None:
            envoy = await app.start_envoy(
                replace(config, envoy_addr=envoy_addr),
                tuple(f"unix:{w.grpc_socket}" for w in workers),
                tuple(f"unix:{w.http_socket}" for w in workers),
                tls,
            )
            if envoy is not None and tls is not None:
                tls.on_reload(envoy.use_certificate)
        log.info("%d workers serving gRPC on %s and HTTP on %s", len(workers), grpc_addr, http_addr)
        if config.ready_file:
            grpc_port, http_port = (int(a.rpartition(":")[2]) for a in (grpc_addr, http_addr))
            metrics_port = None if metrics_server is None else metrics_server.port
            write_ready_file(
                Path(config.ready_file),
                grpc_port,
                http_port,
                None if envoy is None else envoy.port,
                metrics_port,
            )
        await _watch(workers, settings, tls)
        log.info("stopping")
        if envoy is not None:
            await envoy.stop_accepting()
        grace = config.shutdown_grace.total_seconds()
        for worker in workers:
            if worker.alive and worker.process is not None:
                worker.process.send_signal(signal.SIGTERM)
        await asyncio.gather(*(_wait(w, grace + 5) for w in workers))
        if envoy is not None:
            await envoy.wait_idle(5)
    finally:
        for worker in workers:
            if worker.alive and worker.process is not None:
                worker.process.kill()
                await _wait(worker, 5)
        if envoy is not None:
            await envoy.stop()
        if metrics_server is not None:
            await metrics_server.stop(0)
        if config.ready_file:
            remove_ready_file(Path(config.ready_file))
        folder.cleanup()


async def _serve_merged_metrics(
    config: Config, sockets: list[str], tls: ServingCertificate | None
) -> AsgiServer | None:
    if config.metrics_addr is None:
        return None
    endpoint = StrictTransportSecurity(HttpApp({METRICS_PATH: MergedMetricsEndpoint(sockets)}))
    try:
        return await AsgiServer.start(
            endpoint, config.metrics_addr, None, None if tls is None else tls.http_context()
        )
    except OSError as error:
        raise CannotListen("MS_METRICS_ADDR", config.metrics_addr, error.strerror or "refused") from error


async def _watch(workers: list[Worker], settings: list[str], tls: ServingCertificate | None) -> None:
    """Until SIGTERM or SIGINT: a worker that exits is started again. SIGHUP: the certificate is
    read again, by the supervisor (its Envoy and metrics port) and by every worker."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)

    def reload() -> None:
        reload_on_signal(tls)
        for worker in workers:
            if worker.alive and worker.process is not None:
                worker.process.send_signal(signal.SIGHUP)

    loop.add_signal_handler(signal.SIGHUP, reload)
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), WATCH_INTERVAL_S)
        for worker in workers:
            if not stopping.is_set() and not worker.alive and worker.process is not None:
                code, pid = worker.process.returncode, worker.process.pid
                worker.start(settings)
                log.warning(
                    "worker %d (pid %d) exited with code %s: started it again (pid %d)",
                    worker.index, pid, code, worker.process.pid,
                )  # fmt: skip


async def _all_ready(workers: list[Worker]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_TIMEOUT_S
    while not all(w.ready_file.exists() for w in workers):
        for worker in workers:
            if not worker.alive and worker.process is not None:
                raise WorkersFailed(
                    f"worker {worker.index} exited with code {worker.process.returncode} at start"
                )
        if loop.time() > deadline:
            raise WorkersFailed(f"the workers did not start within {READY_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.05)


async def _wait(worker: Worker, timeout_s: float) -> None:
    if worker.process is None:
        return
    try:
        await asyncio.to_thread(worker.process.wait, timeout_s)
    except subprocess.TimeoutExpired:
        worker.process.kill()
        await asyncio.to_thread(worker.process.wait)


def _hold(addr: str) -> socket.socket:
    """A socket bound to addr with SO_REUSEPORT (port 0: a free one), not listening: it keeps the
    port for the workers, and takes none of their connections."""
    host, _, port = addr.rpartition(":")
    sock = socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), int(port)))
    except OSError as error:
        sock.close()
        raise ConfigError(f"cannot listen on {addr}: {error.strerror or error}") from None
    return sock


def _free_port(addr: str) -> int:
    """Envoy's port: the one configured, or a free one found now (Envoy binds it itself)."""
    host, _, port = addr.rpartition(":")
    if int(port):
        return int(port)
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as probe:
        probe.bind((host.strip("[]"), 0))
        return int(probe.getsockname()[1])
