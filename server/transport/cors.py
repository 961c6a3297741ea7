"""CORS for the browser-facing paths (the Fetch standard's CORS protocol), as an ASGI middleware.

Only origins on the allow-list get CORS headers, and each gets its own Origin echoed back, never
`*` and never credentials: the API's credentials are bearer tokens a page sends itself. A request
from any other origin is served without CORS headers, so the browser keeps the answer from the
page. (sonora 0.2.3 echoed the Host with `Allow-Credentials: true`, which browsers reject.)
"""

from collections.abc import Iterable
from typing import Any

from server.transport.asgi import ASGIApp, Receive, Send, first, header_lists, respond

ALLOW_HEADERS = (
    "content-type, x-grpc-web, x-user-agent, grpc-timeout, authorization, x-zitadel-orgid, x-request-id"
)
EXPOSE_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin, x-request-id"
MAX_AGE = "86400"


class CorsMiddleware:
    def __init__(self, app: ASGIApp, origins: Iterable[str], methods: str = "POST, OPTIONS") -> None:
        self._app = app
        self._origins = frozenset(origins)
        self._methods = methods

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        headers = header_lists(scope)
        origin = first(headers, "origin")
        if scope["type"] != "http" or origin not in self._origins:
            await self._app(scope, receive, send)
            return
        cors = [("access-control-allow-origin", origin), ("vary", "Origin")]
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:  # a preflight
            await respond(
                send,
                204,
                [
                    *cors,
                    ("access-control-allow-methods", self._methods),
                    ("access-control-allow-headers", ALLOW_HEADERS),
                    ("access-control-max-age", MAX_AGE),
                ],
                b"",
            )
            return
        extra = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in cors]
        extra.append((b"access-control-expose-headers", EXPOSE_HEADERS.encode("latin-1")))

        async def send_with_cors(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self._app(scope, receive, send_with_cors)
