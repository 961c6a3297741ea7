"""Real `python -m server` processes, for tests about processes: several on one database,
killed, restarted.

The server logs to a file, not a pipe: a pipe must be drained by the test's event loop, and a test
that blocks that loop (a synchronous one, say) would stall the server once the pipe filled.
"""

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    grpc_port: int
    http_port: int
    log_file: Path

    @property
    def log(self) -> list[str]:
        return self.log_file.read_text(errors="replace").splitlines(keepends=True)

    @classmethod
    async def start(cls, database_url: str, folder: Path, **env: str) -> "ServerProcess":
        folder.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "MS_DATABASE_URL": database_url,
            "MS_GRPC_ADDR": "127.0.0.1:0",
            "MS_HTTP_ADDR": "127.0.0.1:0",
            "MS_ENVOY_ADDR": "off",
            "MS_ADMIN_PAT_FILE": str(folder / "admin.pat"),
            **env,
        }
        log_file = folder / f"server-{len(list(folder.glob('server-*.log')))}.log"
        with log_file.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", cwd=ROOT, env=environment, stderr=sink
            )
        started = cls(process, 0, 0, log_file)
        await started.wait_for_log("grpc-web and HTTP listening on")
        text = "".join(started.log)
        started.grpc_port = int(re.findall(r"gRPC listening on [\d.]+:(\d+)", text)[-1])
        started.http_port = int(re.findall(r"grpc-web and HTTP listening on [\d.]+:(\d+)", text)[-1])
        return started

    @property
    def envoy_port(self) -> int:
        return int(
            re.findall(r"Envoy \(JSON, gRPC, grpc-web\) listening on [\d.]+:(\d+)", "".join(self.log))[-1]
        )

    async def wait_for_log(self, text: str) -> None:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not any(text in line for line in self.log):
                assert self.process.returncode is None, f"the server exited: {''.join(self.log)}"
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self._wait()

    async def stop(self) -> int:
        """SIGTERM, and the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await self._wait()
        return self.process.returncode or 0

    async def _wait(self) -> None:
        async with asyncio.timeout(30):
            await self.process.wait()


async def start_with_envoy(folder: Path, **env: str) -> tuple[ServerProcess, str]:
    """A server on SQLite with its Envoy, and the admin's token."""
    process = await ServerProcess.start(
        f"sqlite:///{folder}/ms.db", folder, MS_ENVOY_ADDR="127.0.0.1:0", **env
    )
    await process.wait_for_log("Envoy (JSON")
    return process, (folder / "admin.pat").read_text().strip()
