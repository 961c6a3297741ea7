"""The plain HTTP application behind the grpc-web adapter: whatever is not an RPC lands here."""

import json
from collections.abc import Mapping, Sequence
from typing import Any

from server.transport.asgi import ASGIApp, Receive, Send, header_lists, media_type, respond
from server.transport.connect import CONTENT_TYPES as CONNECT_TYPES


async def respond_json(
    send: Send, code: int, body: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
) -> None:
    await respond(send, code, [*headers, ("content-type", "application/json")], json.dumps(body).encode())


class HttpApp:
    """Routes by exact path, then by first segment (`/users` and what is under it); anything else
    is a JSON 404."""

    def __init__(self, routes: Mapping[str, ASGIApp], under: Mapping[str, ASGIApp] | None = None) -> None:
        self._routes = dict(routes)
        self._under = dict(under or {})

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        route = self._routes.get(path) or self._under.get(
            "/" + path.split("/", 2)[1] if path.count("/") else ""
        )
        if route is None:
            await respond_json(send, 404, {"error": "not_found", "error_description": "no such path"})
            return
        await route(scope, receive, send)


class StaticJson:
    """A JSON document read once at start, served as it is."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await respond(send, 200, [("content-type", "application/json")], self._body)


class ByContentType:
    """One path, two protocols: a Connect call (binary or JSON) to one application, anything else
    to the other (grpc-web, which answers a type it does not serve with 415)."""

    def __init__(self, connect: ASGIApp, other: ASGIApp) -> None:
        self._connect = connect
        self._other = other

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        target = self._connect if media_type(header_lists(scope)) in CONNECT_TYPES else self._other
        await target(scope, receive, send)
