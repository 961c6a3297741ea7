"""Every call has a request id: the client's (or Envoy's) `x-request-id` when it is a sane one,
else a new one. It is the contextvar logs.REQUEST_ID while the call is served, so that every line
the call writes carries it, and it goes back to the client: a response header over HTTP (grpc-web,
Connect, JSON, the token endpoint), initial metadata over gRPC (grpc_server.py)."""

import re
import uuid
from typing import Any

from server.logs import REQUEST_ID
from server.transport.asgi import ASGIApp, Receive, Scope, Send

HEADER = "x-request-id"
_HEADER_BYTES = HEADER.encode()
# What an id may be: a UUID, or a tracing system's id. Anything else (too long, control
# characters, spaces that would split a text log line) is replaced, not copied into the log.
SANE = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def choose(sent: str | None) -> str:
    """The id of a call whose client sent `sent` (None: nothing)."""
    if sent is not None and SANE.fullmatch(sent):
        return sent
    return str(uuid.uuid4())


class RequestIds:
    """ASGI middleware: the request id of every HTTP request, in the context and the response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        sent = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == _HEADER_BYTES), None)
        request_id = choose(sent)
        REQUEST_ID.set(request_id)  # uvicorn serves each request in a task of its own
        header = (_HEADER_BYTES, request_id.encode())

        async def with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self._app(scope, receive, with_id)
