"""An RPC that arrived over HTTP, as the HTTP adapters (grpcweb.py, connect.py, rest.py) turn it
into a Call: its gRPC metadata from the request's headers, what its head already refuses, and its
body read as the call's read step. What goes wrong in any of these is the call's error, answered,
logged and counted like every other failed call."""

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from server.domain.errors import Cancelled, DomainError, FieldViolation, InvalidArgument, ResourceExhausted
from server.transport.asgi import BodyTooLarge, ClientGone, Receive, peer_of, read_body
from server.transport.pipeline import Call, Metadata, Read, Request, request_too_slow

# Headers that belong to HTTP or to the grpc-web protocol, not to the call's metadata.
NOT_METADATA = frozenset(
    {
        "host", "content-type", "content-length", "accept", "accept-encoding", "accept-language",
        "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
        "origin", "referer", "cookie", "pragma", "cache-control", "x-grpc-web", "x-user-agent",
        "grpc-timeout", "grpc-encoding", "grpc-accept-encoding", "priority", "dnt",
    }
)  # fmt: skip


def bad_request(description: str) -> InvalidArgument:
    return InvalidArgument([FieldViolation("request", description)])


def message_too_large() -> ResourceExhausted:
    return ResourceExhausted("MESSAGE_TOO_LARGE", "the request is larger than the limit")


@dataclass
class HttpCall:
    """An RPC's HTTP request, as far as its head tells: the Call, and the error that ends it
    where the head cannot be read (metadata that is not ASCII or base64, a malformed timeout, a
    path variable too long). That error is raised in the call's read step (`read`), so that the
    call runs the pipeline like any other and fails there."""

    call: Call
    refused: DomainError | None = None

    @classmethod
    def of(
        cls,
        scope: dict[str, Any],
        method: str,
        transport: str,
        timeout_s: Callable[[], float | None] = lambda: None,
    ) -> "HttpCall":
        """timeout_s: the client's deadline, read from the header its protocol keeps it in."""
        try:
            return cls(Call(method, transport, grpc_metadata(scope), peer_of(scope), timeout_s()))
        except DomainError as error:
            return cls(Call(method, transport, (), peer_of(scope)), error)

    def read(self, body: Read) -> Read:
        """The call's read step: the head's refusal, or else what body() reads."""

        async def read() -> Request:
            if self.refused is not None:
                raise self.refused
            return await body()

        return read


def grpc_metadata(scope: dict[str, Any]) -> Metadata:
    """The headers that are gRPC metadata: not HTTP's or grpc-web's own."""
    metadata: list[tuple[str, str | bytes]] = []
    for raw_key, raw_value in scope["headers"]:
        key = raw_key.decode("latin-1").lower()
        if key in NOT_METADATA or key.startswith(("sec-", "access-control-", ":", "grpc-")):
            continue
        if key.endswith("-bin"):
            try:  # gRPC: accept padded and unpadded base64
                metadata.append(
                    (key, base64.b64decode(raw_value + b"=" * (-len(raw_value) % 4), validate=True))
                )
            except (binascii.Error, ValueError):
                raise bad_request(f"header {key} is not base64") from None
            continue
        try:
            metadata.append((key, raw_value.decode("ascii")))
        except UnicodeDecodeError:
            raise bad_request(f"header {key} is not ASCII") from None
    return metadata


async def read_call_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The request body, read as the call's read step: a body over limit is RESOURCE_EXHAUSTED
    (MESSAGE_TOO_LARGE), as gRPC refuses a message over its limit."""
    try:
        return await read_body(receive, limit, timeout_s)
    except BodyTooLarge:
        raise message_too_large() from None
    except ClientGone:
        raise Cancelled("CLIENT_GONE", "the client went away") from None
    except TimeoutError:
        raise request_too_slow(timeout_s) from None
