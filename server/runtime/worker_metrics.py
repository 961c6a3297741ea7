"""/metrics of MS_WORKERS=N: the supervisor serves MS_METRICS_ADDR itself, and each scrape sums
what every worker counts (issue 36). Each worker serves its own /metrics on a private Unix socket
in the supervisor's folder (0600); a scrape asks them all at once, within SCRAPE_TIMEOUT_S each.

How samples merge, by name and labels:
- counters, histograms (buckets, sums, counts), summaries and gauges are summed: calls, bytes,
  CPU seconds, memory, calls in flight are all totals of the workers';
- creation times (`*_created`) and process_start_time_seconds take the earliest, and
  process_max_fds the least: they are not amounts;
- machinesecrets_workers_scraped says how many workers answered this scrape.

A worker that does not answer (it is being started again) counts with its last answer. A worker
started again (its process_start_time_seconds changed) counts from naught: its counters' last
values before are kept as an offset added to its new ones, so that the sums never go down (a sum
that fell would read to Prometheus as a reset of the whole series, and rate() would show the other
workers' totals as a spike).

A scrape's answer is kept for CACHE_S: scrapes that come together share one round of the workers'.
"""

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from server.metrics import CONTENT_TYPE, PREFIX
from server.transport.asgi import Receive, Send, respond

SCRAPE_TIMEOUT_S = 2.0
CACHE_S = 1.0
MAX_EXPOSITION_BYTES = 4 * 1024 * 1024  # one worker's answer; far above what it writes
# Not amounts: the least of the workers' (the earliest start, the tightest limit).
_NOT_SUMMED = ("process_start_time_seconds", "process_max_fds")


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
    return min(values) if name.endswith("_created") or name in _NOT_SUMMED else sum(values)


SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))


def _counts(family_type: str, sample_name: str) -> bool:
    """Whether a sample only ever grows while its process lives (not a gauge, not a time)."""
    return family_type in ("counter", "histogram", "summary") and not sample_name.endswith("_created")


class _Worker:
    """What one worker last said, and what its earlier lives had counted (a worker started again
    is told by its process_start_time_seconds)."""

    def __init__(self) -> None:
        self.families: list[Metric] = []
        self._started = 0.0
        self._last: dict[SampleKey, float] = {}  # this life's counting samples
        self._offsets: dict[SampleKey, float] = {}  # earlier lives' final counts
        self._kinds: dict[SampleKey, tuple[str, str, str]] = {}  # family: name, help, type

    def heard(self, text: str) -> None:
        families = list(text_string_to_metric_families(text))
        started = next(
            (s.value for f in families for s in f.samples if s.name == "process_start_time_seconds"), 0.0
        )
        if started != self._started:
            if self._started:  # started again: what the life before counted stays counted
                for key, value in self._last.items():
                    self._offsets[key] = self._offsets.get(key, 0.0) + value
            self._last = {}
            self._started = started
        seen: set[SampleKey] = set()
        for family in families:
            samples = []
            for sample in family.samples:
                key = _key(sample)
                if _counts(family.type, sample.name):
                    self._last[key] = sample.value
                    self._kinds[key] = (family.name, family.documentation, family.type)
                    seen.add(key)
                    sample = sample._replace(value=sample.value + self._offsets.get(key, 0.0))
                samples.append(sample)
            family.samples = samples
        # What an earlier life counted that this one has not counted yet: still in the sums.
        by_name = {family.name: family for family in families}
        for key, offset in self._offsets.items():
            if key not in seen:
                name, documentation, kind = self._kinds[key]
                if name not in by_name:
                    by_name[name] = Metric(name, documentation, kind)
                    families.append(by_name[name])
                by_name[name].samples.append(Sample(key[0], dict(key[1]), offset))
        self.families = families


def merge(workers: Iterable[list[Metric]]) -> list[Metric]:
    """The workers' metric families, their samples merged by name and labels (see above)."""
    families: dict[str, Metric] = {}
    values: dict[str, dict[SampleKey, list[float]]] = {}
    for worker in workers:
        for family in worker:
            kept = families.setdefault(family.name, Metric(family.name, family.documentation, family.type))
            samples = values.setdefault(kept.name, {})
            for sample in family.samples:
                samples.setdefault(_key(sample), []).append(sample.value)
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
        self._workers = {path: _Worker() for path in self._sockets}
        self._answer: tuple[float, bytes] = (-CACHE_S, b"")
        self._scraping = asyncio.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        async with self._scraping:  # scrapes that come together wait for one round, and share it
            made, body = self._answer
            if time.monotonic() - made >= CACHE_S:
                body = await self._scrape_all()
                self._answer = (time.monotonic(), body)
        await respond(send, 200, [("content-type", CONTENT_TYPE)], body)

    async def _scrape_all(self) -> bytes:
        answers = await asyncio.gather(*(scrape(path) for path in self._sockets))
        answered = 0
        for path, answer in zip(self._sockets, answers, strict=True):
            if answer is not None:
                self._workers[path].heard(answer)
                answered += 1
        workers = Metric(f"{PREFIX}_workers_scraped", "Workers that answered this scrape", "gauge")
        workers.add_sample(f"{PREFIX}_workers_scraped", {}, float(answered))
        registry = CollectorRegistry(auto_describe=False)
        merged = merge(worker.families for worker in self._workers.values())
        registry.register(_Families([*merged, workers]))
        return generate_latest(registry)
