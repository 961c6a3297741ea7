"""Calls by method and outcome, for operators (and the benchmark's proof that every call of a run
succeeded), served as Prometheus text at GET /metrics on the HTTP port. Envoy does not route it."""

from collections import Counter
from typing import Any

from server.transport.asgi import Receive, Send, respond

METRICS_PATH = "/metrics"


class CallCounters:
    def __init__(self) -> None:
        self._calls: Counter[tuple[str, str]] = Counter()

    def count(self, method: str, outcome: str) -> None:
        self._calls[(method, outcome)] += 1

    def prometheus(self) -> str:
        lines = [
            "# HELP machinesecrets_calls_total Calls answered, by method and outcome (gRPC code or HTTP).",
            "# TYPE machinesecrets_calls_total counter",
        ]
        for (method, outcome), count in sorted(self._calls.items()):
            lines.append(f'machinesecrets_calls_total{{method="{method}",outcome="{outcome}"}} {count}')
        return "\n".join(lines) + "\n"


class MetricsEndpoint:
    def __init__(self, counters: CallCounters) -> None:
        self._counters = counters

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        body = self._counters.prometheus().encode()
        await respond(send, 200, [("content-type", "text/plain; version=0.0.4")], body)
