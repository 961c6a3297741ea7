"""The plain HTTP application behind the grpc-web adapter: whatever is not an RPC lands here."""

import json
from collections.abc import Sequence
from typing import Any

from server.transport.grpcweb import Receive, Send


async def respond_json(
    send: Send, code: int, body: dict[str, Any], headers: Sequence[tuple[str, str]] = ()
) -> None:
    raw = json.dumps(body).encode()
    raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw_headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": raw, "more_body": False})


class HttpApp:
    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        await respond_json(send, 404, {"error": "not_found", "error_description": "no such path"})
