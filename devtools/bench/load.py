"""One load run with h2load, and what it measured."""

import statistics
import subprocess
import tempfile
from collections import Counter
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
    max_ms: float
    statuses: dict[str, int]  # HTTP status: requests
    p99_ok_ms: float  # of the 2xx answers only (0 if none)
    p99_refused_ms: float  # of the 429 answers only (0 if none)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def h2load(request: Request, requests: int, concurrency: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        body, log = Path(folder) / "body", Path(folder) / "log"
        body.write_bytes(request.body)
        command = ["h2load", "-n", str(requests), "-c", str(concurrency), "-m", "1"]
        command += ["-d", str(body)] if request.body else []  # h2load cannot map an empty file
        command += ["--log-file", str(log), *(["--h1"] if request.http1 else [])]
        for name, value in request.headers:
            command += ["-H", f"{name}: {value}"]
        output = subprocess.run(
            [*command, request.url], capture_output=True, text=True, check=True, timeout=900
        )
        fields = [line.split("\t") for line in log.read_text().splitlines() if line]
    durations = [int(field[2]) / 1000 for field in fields]
    statuses = [field[1] for field in fields]
    ok = [duration for duration, status in zip(durations, statuses, strict=True) if status.startswith("2")]
    refused = [duration for duration, status in zip(durations, statuses, strict=True) if status == "429"]
    cut = statistics.quantiles(durations, n=100, method="inclusive")
    return Result(
        requests=len(durations),
        succeeded=len(ok),
        seconds=_finished_in(output.stdout),
        p50_ms=cut[49],
        p99_ms=cut[98],
        max_ms=max(durations),
        statuses=dict(Counter(statuses)),
        p99_ok_ms=_p99(ok),
        p99_refused_ms=_p99(refused),
    )


def _p99(durations: list[float]) -> float:
    return statistics.quantiles(durations, n=100, method="inclusive")[98] if len(durations) > 1 else 0.0


def _finished_in(report: str) -> float:
    # "finished in 1.20s, 166.73 req/s, 48.54KB/s"
    for line in report.splitlines():
        if line.startswith("finished in "):
            value = line.split()[2].rstrip(",")
            return float(value[:-2]) / 1000 if value.endswith("ms") else float(value.rstrip("s"))
    raise RuntimeError(f"h2load said no time: {report[-500:]}")
