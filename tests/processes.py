"""Real `python -m server` processes, for tests about processes: several on one database,
killed, restarted."""

import asyncio
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT_S = 60


@dataclass
class ServerProcess:
    process: asyncio.subprocess.Process
    grpc_port: int
    http_port: int
    log: list[str] = field(default_factory=list)
    _reader: asyncio.Task[None] | None = None

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
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server", cwd=ROOT, env=environment, stderr=asyncio.subprocess.PIPE
        )
        assert process.stderr is not None
        log: list[str] = []
        ports: dict[str, int] = {}
        async with asyncio.timeout(READY_TIMEOUT_S):
            while len(ports) < 2:
                line = (await process.stderr.readline()).decode()
                assert line, f"the server exited: {''.join(log)}"
                log.append(line)
                if found := re.search(r"(gRPC|grpc-web and HTTP) listening on [\d.]+:(\d+)", line):
                    ports[found.group(1)] = int(found.group(2))
        started = cls(process, ports["gRPC"], ports["grpc-web and HTTP"], log)
        started._reader = asyncio.create_task(started._drain())
        return started

    async def wait_for_log(self, text: str) -> None:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while not any(text in line for line in self.log):
                assert self.process.returncode is None, f"the server exited: {''.join(self.log)}"
                await asyncio.sleep(0.05)

    async def _drain(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.log.append(line.decode())

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
            if self._reader is not None:
                await self._reader
