"""GET /metrics on an address of its own (MS_METRICS_ADDR, loopback by default; server/app.py's
start_metrics): the service's Metrics (server/metrics.py) in Prometheus's text format, for
operators, and for the benchmark's proof that every call of a run succeeded. Never on the API's
ports: the counts by method and code, of failed authentications and of tokens issued would tell
any caller what works."""

from typing import Any

from server.metrics import CONTENT_TYPE, Metrics
from server.transport.asgi import Receive, Send, respond

METRICS_PATH = "/metrics"


class MetricsEndpoint:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, [("content-type", CONTENT_TYPE)], self._metrics.exposition())
