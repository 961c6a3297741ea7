"""Real `python -m server` processes, for tests about processes: several on one database,
killed, restarted. Started by devtools/launcher.py, which learns their ports from the ready file."""

import asyncio
import signal
from dataclasses import dataclass
from pathlib import Path

from devtools.launcher import Launched, Ports, launch, wait_ready_async

READY_TIMEOUT_S = 60


@dataclass
class ServerProcess:
    launched: Launched
    ports: Ports

    @property
    def grpc_port(self) -> int:
        return self.ports.grpc

    @property
    def http_port(self) -> int:
        return self.ports.http

    @property
    def envoy_port(self) -> int:
        assert self.ports.envoy is not None, "this process runs no Envoy"
        return self.ports.envoy

    @property
    def metrics_port(self) -> int:
        assert self.ports.metrics is not None, "this process serves no /metrics"
        return self.ports.metrics

    @property
    def pid(self) -> int:
        return self.launched.process.pid

    @property
    def alive(self) -> bool:
        return self.launched.process.poll() is None

    @property
    def log_file(self) -> Path:
        return self.launched.log_file

    @property
    def log(self) -> list[str]:
        return self.log_file.read_text(errors="replace").splitlines(keepends=True)

    @classmethod
    async def start(cls, database_url: str, folder: Path, **env: str) -> "ServerProcess":
        environment = {
            "MS_DATABASE_URL": database_url,
            "MS_GRPC_ADDR": "127.0.0.1:0",
            "MS_HTTP_ADDR": "127.0.0.1:0",
            "MS_ENVOY_ADDR": "off",
            "MS_METRICS_ADDR": "127.0.0.1:0",
            "MS_ADMIN_PAT_FILE": str(folder / "admin.pat"),
            # Beside the store it encrypts the signing keys of: processes on one folder share it.
            "MS_MASTERKEY_FILE": str(folder / "masterkey"),
            **env,
        }
        launched = launch(folder, environment)
        return cls(launched, await wait_ready_async(launched, READY_TIMEOUT_S))

    async def wait_for_log(self, text: str) -> None:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not any(text in line for line in self.log):
                assert self.alive, f"the server exited: {''.join(self.log)}"
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        self.launched.process.send_signal(signal.SIGKILL)
        await self._wait()

    async def stop(self) -> int:
        """SIGTERM, and the exit code."""
        if self.alive:
            self.launched.process.send_signal(signal.SIGTERM)
        return await self._wait()

    async def _wait(self) -> int:
        return await asyncio.to_thread(self.launched.process.wait, 30)


async def start_with_envoy(folder: Path, **env: str) -> tuple[ServerProcess, str]:
    """A server on SQLite with its Envoy, and the admin's token."""
    process = await ServerProcess.start(
        f"sqlite:///{folder}/ms.db", folder, MS_ENVOY_ADDR="127.0.0.1:0", **env
    )
    return process, (folder / "admin.pat").read_text().strip()
