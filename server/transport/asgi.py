"""The ASGI callable types the HTTP side of the service is written against, and what every
HTTP endpoint does with them: read headers, read the body, send one whole response."""

import asyncio
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


def peer_of(scope: Scope) -> str:
    """The connection's peer, as grpc names one, for the access log. Over the private Unix socket
    only the service's own Envoy can open: "envoy:" and the address Envoy saw."""
    client = scope.get("client")
    if client:
        return f"ipv4:{client[0]}:{client[1]}"
    forwarded = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"x-forwarded-for"]
    return via_envoy(forwarded)


def via_envoy(forwarded: list[str]) -> str:
    """The peer of a call that the service's own Envoy forwarded: the address it appended last
    (only that one is read: the header may hold 100 KiB of anything before it)."""
    return f"envoy:{forwarded[-1].rpartition(',')[2].strip()}" if forwarded else "envoy"


def first(headers: dict[str, list[str]], name: str) -> str:
    """The first value of a header, or "" when it is absent."""
    values = headers.get(name)
    return values[0] if values else ""


def media_type(headers: dict[str, list[str]]) -> str:
    """The request's Content-Type without its parameters, lower-case ("" when absent)."""
    return first(headers, "content-type").split(";")[0].strip().lower()


class BodyTooLarge(Exception):
    """The request body passed the limit."""


class ClientGone(Exception):
    """The client disconnected before its request body was whole."""


async def read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole request body. Raises BodyTooLarge once it passes limit bytes, ClientGone if the
    client goes away first, and TimeoutError if it is not whole within timeout_s."""
    body = bytearray()
    async with asyncio.timeout(timeout_s):
        while True:
            event = await receive()
            if event["type"] == "http.disconnect":
                raise ClientGone()
            body += event.get("body", b"")
            if len(body) > limit:
                raise BodyTooLarge()
            if not event.get("more_body"):
                return bytes(body)


async def respond(
    send: Send, status: int, headers: Sequence[tuple[str, str]], body: bytes, *, head: bool = False
) -> None:
    """A whole response in one body message, with its content-length: the body's length, also in
    answer to HEAD (which gets no body), and none on 204 and 304, which have no content
    (RFC 9110, 8.6)."""
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if status not in (204, 304):
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})
