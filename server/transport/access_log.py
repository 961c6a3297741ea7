"""One access line and one count per call, whatever the transport and however the call ended:
the pipeline's RPCs and the HTTP endpoints (token, revocation) alike.

The line carries the method (an RPC or a fixed path), never the request's values: a caller may
put anything in a path, a secret where an id belongs. Its request id comes from the handler's
filter (server/logs.py).
"""

import logging
import time

from server.metrics import Metrics

log = logging.getLogger("machinesecrets.access")


def record_call(
    metrics: Metrics, method: str, transport: str, code: str, started: float, caller: str, peer: str
) -> None:
    """started: time.perf_counter() when the call arrived; caller: the user id, or "-"."""
    seconds = time.perf_counter() - started
    metrics.count_call(method, transport, code, seconds)
    millis = round(seconds * 1000, 1)
    if log.isEnabledFor(logging.INFO):
        log.info(
            "%s %s %.1fms caller=%s transport=%s",
            method,
            code,
            millis,
            caller,
            transport,
            extra={
                "method": method,
                "transport": transport,
                "code": code,
                "duration_ms": millis,
                "caller": caller,
                "peer": peer,
            },
        )
