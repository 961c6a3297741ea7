"""The plain HTTP application behind the grpc-web adapter: whatever is not an RPC lands here."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from server.transport.asgi import ASGIApp, Receive, Send


async def respond_json(
    send: Send, code: int, body: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
) -> None:
    raw = json.dumps(body).encode()
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw_headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes limit bytes."""
    body = bytearray()
    while True:
        event = await receive()
        body += event.get("body", b"")
        if len(body) > limit:
            return None
        if event["type"] == "http.disconnect" or not event.get("more_body"):
            return bytes(body)


class HttpApp:
    """Routes by exact path; anything else is a JSON 404."""

    def __init__(self, routes: Mapping[str, ASGIApp]) -> None:
        self._routes = dict(routes)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        route = self._routes.get(scope["path"])
        if route is None:
            await respond_json(send, 404, {"error": "not_found", "error_description": "no such path"})
            return
        await route(scope, receive, send)


class StaticJson:
    """A JSON document read once at start, served as it is."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(self._body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": self._body, "more_body": False})
