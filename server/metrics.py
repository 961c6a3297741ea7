"""What an operator watches, as Prometheus metrics (prometheus_client), served at GET /metrics on
the HTTP port (transport/metrics_endpoint.py; Envoy does not route it).

One Metrics per service, with a registry of its own: a process may run several services (the
tests do), and each must count only its own calls. Every layer records through the one object
it is given, so that no module keeps a global counter.

Labels are bounded sets: methods and paths are the service's own, codes are gRPC's or HTTP's, and
reasons are the service's ErrorInfo reasons. Nothing a caller sends becomes a label value.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from server.store.base import Store, StoreError

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREFIX = "machinesecrets"
# Calls take from a tenth of a millisecond (a refused one) to seconds (bcrypt at a high cost).
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# bcrypt's cost doubles its time: cost 4 takes about a millisecond, cost 12 about a quarter second.
BCRYPT_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.calls = Counter(
            f"{PREFIX}_calls",
            "Calls answered, by method (RPC or HTTP path), transport and code (gRPC code or HTTP status)",
            ["method", "transport", "code"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Time from a call's arrival to its answer, by method and transport",
            ["method", "transport"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            f"{PREFIX}_calls_in_flight",
            "Calls being worked on now (MS_MAX_INFLIGHT bounds it)",
            registry=registry,
        )
        self.unfinished = Gauge(
            f"{PREFIX}_requests_arriving",
            "Requests whose body is still arriving (MS_MAX_UNFINISHED bounds it)",
            registry=registry,
        )
        self.bcrypt_seconds = Histogram(
            f"{PREFIX}_bcrypt_duration_seconds",
            "Time of one bcrypt operation: hash (a new secret) or verify (a token request, a report)",
            ["operation"],
            buckets=BCRYPT_BUCKETS,
            registry=registry,
        )
        self.store_seconds = Histogram(
            f"{PREFIX}_store_operation_duration_seconds",
            "Time of one store operation, by operation",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            f"{PREFIX}_store_errors",
            "Store operations that failed, by operation and error (conflicts are part of the design)",
            ["operation", "error"],
            registry=registry,
        )
        self.tokens_issued = Counter(
            f"{PREFIX}_access_tokens_issued", "Access tokens issued at the token endpoint", registry=registry
        )
        self.authentication_failures = Counter(
            f"{PREFIX}_authentication_failures",
            "Refused authentications, by reason: a bearer token's (TOKEN_MISSING, TOKEN_MALFORMED,"
            " TOKEN_INVALID) or a client's at the token endpoint (invalid_client, slow_down)",
            ["reason"],
            registry=registry,
        )

    def count_call(self, method: str, transport: str, code: str, seconds: float) -> None:
        self.calls.labels(method, transport, code).inc()
        self.call_seconds.labels(method, transport).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def calls_by_code(exposition: str, method: str) -> dict[str, int]:
    """From a scrape of /metrics: how many calls of method were answered with each code, over
    every transport (for the benchmark and the tests)."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples if family.name == f"{PREFIX}_calls" else ():
            if sample.name == f"{PREFIX}_calls_total" and sample.labels["method"] == method:
                code = sample.labels["code"]
                counts[code] = counts.get(code, 0) + int(sample.value)
    return counts


T = TypeVar("T")


def timed_store(store: Store, metrics: Metrics) -> Store:
    """The store, with every operation timed, and its failures counted, by the operation's name."""
    return cast(Store, _TimedStore(store, metrics))


class _TimedStore:
    """Wraps each coroutine method of the store on first use (then it is an attribute, found at C
    speed). Any other attribute is the store's own."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._store, name)
        if name.startswith("_") or not callable(target):
            return target
        timed = _timed(target, name, self._metrics)
        setattr(self, name, timed)
        return timed


def _timed(
    operation: Callable[..., Awaitable[T]], name: str, metrics: Metrics
) -> Callable[..., Awaitable[T]]:
    seconds = metrics.store_seconds.labels(name)

    async def timed(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            return await operation(*args, **kwargs)
        except StoreError as error:
            metrics.store_errors.labels(name, type(error).__name__).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    return timed
