"""GET /metrics on the HTTP port: the service's Metrics (server/metrics.py) in Prometheus's text
format, for operators, and for the benchmark's proof that every call of a run succeeded. Envoy
does not route it."""

from typing import Any

from server.metrics import CONTENT_TYPE, Metrics
from server.transport.asgi import Receive, Send, respond

METRICS_PATH = "/metrics"


class MetricsEndpoint:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, [("content-type", CONTENT_TYPE)], self._metrics.exposition())
