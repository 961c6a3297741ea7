"""`GET /healthz` and `GET /readyz` on the HTTP port: the probes a Kubernetes manifest would use
(livenessProbe, readinessProbe). gRPC health (grpc.health.v1) is on the gRPC port.

- /healthz: the process is alive and its event loop answers; 200 always.
- /readyz: the store answers a read within its timeout (the ports are bound: the HTTP one answers
  this, and the gRPC one was bound before the HTTP one started); 200, else 503 with the reason.
  503 too once the service is shutting down, so that a load balancer stops sending it calls.
- gRPC health follows the store too (StoreWatch): NOT_SERVING while it does not answer.
"""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from grpc_health.v1 import health_pb2
from grpc_health.v1._async import HealthServicer

from server.store.contract import Store, StoreError
from server.transport.asgi import Receive, Send
from server.transport.http import respond_json

log = logging.getLogger("machinesecrets")

HEALTH_PATH = "/healthz"
WATCH_INTERVAL_S = 1.0
READY_PATH = "/readyz"
NO_CACHE = [("cache-control", "no-store")]


async def healthz(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    await respond_json(send, 200, {"status": "ok"}, NO_CACHE)


class Readiness:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.shutting_down = False

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if self.shutting_down:
            await respond_json(send, 503, {"status": "unavailable", "reason": "shutting down"}, NO_CACHE)
            return
        try:
            await self._store.any_org()
        except StoreError:
            await respond_json(
                send, 503, {"status": "unavailable", "reason": "the store does not answer"}, NO_CACHE
            )
            return
        await respond_json(send, 200, {"status": "ready"}, NO_CACHE)


class StoreWatch:
    """Asks the store every WATCH_INTERVAL_S whether it answers, and keeps gRPC health in step:
    SERVING while it does, NOT_SERVING while it does not (for every service name). The log says
    when it changes. After shutdown began, health stays NOT_SERVING (grpc's HealthServicer)."""

    def __init__(self, store: Store, health: HealthServicer, names: Sequence[str]) -> None:
        self._store = store
        self._health = health
        self._names = names
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        answering = True  # as the start found it
        while True:
            await asyncio.sleep(WATCH_INTERVAL_S)
            try:
                await self._store.any_org()
                now = True
            except StoreError:
                now = False
            if now != answering:
                answering = now
                status = (
                    health_pb2.HealthCheckResponse.SERVING
                    if now
                    else health_pb2.HealthCheckResponse.NOT_SERVING
                )
                for name in self._names:
                    await self._health.set(name, status)
                if now:
                    log.warning("the store answers again: gRPC health says SERVING")
                else:
                    log.warning("the store does not answer: gRPC health says NOT_SERVING")
