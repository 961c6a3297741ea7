"""The ASGI callable types the HTTP side of the service is written against."""

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def header_lists(scope: Scope) -> dict[str, list[str]]:
    """The request's headers by lower-case name, every value of each, in order."""
    headers: dict[str, list[str]] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return headers


def first(headers: dict[str, list[str]], name: str) -> str:
    """The first value of a header, or "" when it is absent."""
    values = headers.get(name)
    return values[0] if values else ""


async def respond(send: Send, status: int, headers: Sequence[tuple[str, str]], body: bytes) -> None:
    """A whole response in one body message, with its content-length."""
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body, "more_body": False})
