"""One load run with h2load, and what it measured."""

import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Request:
    """One request, repeated: what h2load sends."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    http1: bool = False


@dataclass(frozen=True)
class Result:
    requests: int
    succeeded: int  # HTTP 2xx; the caller checks the service's own count of OK answers too
    seconds: float
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def h2load(request: Request, requests: int, concurrency: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        body, log = Path(folder) / "body", Path(folder) / "log"
        body.write_bytes(request.body)
        command = ["h2load", "-n", str(requests), "-c", str(concurrency), "-m", "1", "-d", str(body)]
        command += ["--log-file", str(log), *(["--h1"] if request.http1 else [])]
        for name, value in request.headers:
            command += ["-H", f"{name}: {value}"]
        output = subprocess.run(
            [*command, request.url], capture_output=True, text=True, check=True, timeout=900
        )
        durations = [int(line.split("\t")[2]) / 1000 for line in log.read_text().splitlines() if line]
        statuses = [line.split("\t")[1] for line in log.read_text().splitlines() if line]
    seconds = _finished_in(output.stdout)
    cut = statistics.quantiles(durations, n=100, method="inclusive")
    return Result(len(durations), sum(s.startswith("2") for s in statuses), seconds, cut[49], cut[98])


def _finished_in(report: str) -> float:
    # "finished in 1.20s, 166.73 req/s, 48.54KB/s"
    for line in report.splitlines():
        if line.startswith("finished in "):
            value = line.split()[2].rstrip(",")
            return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
    raise RuntimeError(f"h2load said no time: {report[-500:]}")
