"""/metrics of MS_WORKERS=N: the supervisor serves MS_METRICS_ADDR itself, and each scrape sums
what every worker counts (issue 36). Each worker serves its own /metrics on a private Unix socket
in the supervisor's folder (0600); a scrape asks them all at once, within SCRAPE_TIMEOUT_S each.

How samples merge, by name and labels:
- counters, histograms (buckets, sums, counts), summaries and gauges are summed: calls, bytes,
  CPU seconds, memory, calls in flight are all totals of the workers';
- creation times (`*_created`) and process_start_time_seconds take the earliest, and
  process_max_fds the least: they are not amounts;
- machinesecrets_workers_scraped says how many workers answered this scrape.

A worker that does not answer (it is being started again) counts with its last answer; a worker
started again counts from naught, which Prometheus's rate() reads as a counter reset.
"""

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from server.metrics import CONTENT_TYPE, PREFIX
from server.transport.asgi import Receive, Send, respond

SCRAPE_TIMEOUT_S = 2.0
MAX_EXPOSITION_BYTES = 4 * 1024 * 1024  # one worker's answer; far above what it writes
_EARLIEST = ("process_start_time_seconds",)
_LEAST = ("process_max_fds",)


async def scrape(socket_path: str) -> str | None:
    """One worker's exposition over its Unix socket, or None when it does not answer well."""
    writer = None
    try:
        async with asyncio.timeout(SCRAPE_TIMEOUT_S):
            reader, writer = await asyncio.open_unix_connection(socket_path)
            writer.write(b"GET /metrics HTTP/1.0\r\nhost: worker\r\n\r\n")
            await writer.drain()
            answer = await reader.read(MAX_EXPOSITION_BYTES + 1)
            while len(answer) <= MAX_EXPOSITION_BYTES and (more := await reader.read(65536)):
                answer += more
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    if len(answer) > MAX_EXPOSITION_BYTES or not head.startswith(b"HTTP/1.1 200"):
        return None
    return body.decode("utf-8", "replace")


def _merged_value(name: str, values: Sequence[float]) -> float:
    if name.endswith("_created") or name in _EARLIEST:
        return min(values)
    if name in _LEAST:
        return min(values)
    return sum(values)


def merge(expositions: Iterable[str]) -> list[Metric]:
    """The workers' metric families, their samples merged by name and labels (see above)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], list[float]]] = {}
    for text in expositions:
        for family in text_string_to_metric_families(text):
            kept = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            samples = values.setdefault(kept.name, {})
            for sample in family.samples:
                samples.setdefault((sample.name, tuple(sorted(sample.labels.items()))), []).append(
                    sample.value
                )
    for name, family in families.items():
        family.samples = [
            Sample(sample_name, dict(labels), _merged_value(sample_name, found))
            for (sample_name, labels), found in values[name].items()
        ]
    return list(families.values())


class _Families:
    """A collector of families already made (prometheus_client renders what collect() gives)."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


class MergedMetricsEndpoint:
    """GET /metrics on the supervisor: every worker's, merged."""

    def __init__(self, sockets: Sequence[str]) -> None:
        self._sockets = list(sockets)
        self._last: dict[str, str] = {}  # each worker's last answer

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        answers = await asyncio.gather(*(scrape(path) for path in self._sockets))
        answered = 0
        for path, answer in zip(self._sockets, answers, strict=True):
            if answer is not None:
                self._last[path] = answer
                answered += 1
        workers = Metric(f"{PREFIX}_workers_scraped", "Workers that answered this scrape", "gauge")
        workers.add_sample(f"{PREFIX}_workers_scraped", {}, float(answered))
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Families([*merge(self._last.values()), workers]))
        await respond(send, 200, [("content-type", CONTENT_TYPE)], generate_latest(registry))
