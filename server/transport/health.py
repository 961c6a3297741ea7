"""`GET /healthz` and `GET /readyz` on the HTTP port: the probes a Kubernetes manifest would use
(livenessProbe, readinessProbe). gRPC health (grpc.health.v1) is on the gRPC port.

- /healthz: the process is alive and its event loop answers; 200 always.
- /readyz: the store answers a read within its timeout (the ports are bound: the HTTP one answers
  this, and the gRPC one was bound before the HTTP one started); 200, else 503 with the reason.
  503 too once the service is shutting down, so that a load balancer stops sending it calls.
"""

from typing import Any

from server.store.base import Store, StoreError
from server.transport.asgi import Receive, Send
from server.transport.http import respond_json

HEALTH_PATH = "/healthz"
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
