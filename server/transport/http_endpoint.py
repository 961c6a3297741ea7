"""What the service's two HTTP endpoints that are not RPCs share, the token endpoint (oauth.py) and
the revocation endpoint (revocation_endpoint.py): their errors, RFC 6749 §5.2's JSON
{"error", "error_description"}; their answer, JSON never cached, with one access line and one
count (access_log.py, as every RPC has); and how they read a request, within the process's bounds
(admission.py, as every RPC is).

Why they do not run the RPCs' Pipeline: their requests are a form or a JSON list, not a message;
they take no bearer token (the client authenticates in the request, or needs no credential); they
act in no organisation; and their errors are OAuth's, not a google.rpc.Status. What the two share
with the pipeline, the bounds, the access line and the counts, is one implementation used by both.
"""

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from server.domain.errors import InvalidArgument, ResourceExhausted, TooManyFailures, Unavailable
from server.limits import MAX_REQUEST_BYTES
from server.metrics import Metrics
from server.transport.access_log import record_call
from server.transport.admission import RETRY_AFTER_S, Admission
from server.transport.asgi import BodyTooLarge, ClientGone, Receive, Send, peer_of, read_body
from server.transport.http import respond_json
from server.transport.status import domain_error

log = logging.getLogger("machinesecrets")

# §5.1 and §5.2: token answers must not be cached.
NO_STORE = [("cache-control", "no-store"), ("pragma", "no-cache")]


class OAuthError(Exception):
    """An RFC 6749 §5.2 error answer. Each kind owns its `error` code, HTTP status and headers
    (Authlib's shape)."""

    error = "invalid_request"
    status = 400

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description

    def headers(self) -> list[tuple[str, str]]:
        return []

    def answer(self) -> "EndpointAnswer":
        return EndpointAnswer(
            self.status, {"error": self.error, "error_description": self.description}, self.headers()
        )


@dataclass(frozen=True)
class EndpointAnswer:
    """What an endpoint of this kind answers: JSON, never cached (§5.1), counted and logged."""

    status: int
    body: dict[str, Any]
    headers: list[tuple[str, str]] = field(default_factory=list)

    async def send(
        self, send: Send, scope: dict[str, Any], metrics: Metrics, started: float, caller: str = "-"
    ) -> None:
        await respond_json(send, self.status, self.body, [*NO_STORE, *self.headers])
        record_call(metrics, scope["path"], "http", str(self.status), started, caller, peer_of(scope))


class InvalidRequest(OAuthError):
    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status


class SlowDown(OAuthError):
    """RFC 6749 has no code for too many failures; slow_down is RFC 8628's (§3.5) for the same
    advice."""

    error = "slow_down"
    status = 429

    def __init__(self, description: str, retry_after: int) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> list[tuple[str, str]]:
        return [("retry-after", str(self.retry_after))]


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status = 503


class ServerError(OAuthError):
    error = "server_error"
    status = 500


class AdmittedBody:
    """How an endpoint of this kind reads its request: within the process's two bounds
    (Admission.admitted, as every RPC), each refusal a 429 slow_down."""

    def __init__(self, admission: Admission, read_timeout_s: float) -> None:
        self._admission = admission
        self._read_timeout_s = read_timeout_s

    @asynccontextmanager
    async def read(
        self, receive: Receive, source: str, limit: int = MAX_REQUEST_BYTES
    ) -> AsyncIterator[bytes]:
        """The body, while the request holds its place in flight."""
        async with AsyncExitStack() as admitted:
            try:
                body = await admitted.enter_async_context(
                    self._admission.admitted(
                        source, lambda: _read_request_body(receive, self._read_timeout_s, limit)
                    )
                )
            except ResourceExhausted as error:  # either bound: too many arriving, or in flight
                raise SlowDown(error.message, RETRY_AFTER_S) from None
            yield body


async def _read_request_body(receive: Receive, read_timeout_s: float, limit: int) -> bytes:
    """The body of a request to an HTTP endpoint of this module's kind; InvalidRequest if it
    cannot be read whole, or is longer than limit bytes."""
    try:
        return await read_body(receive, limit, read_timeout_s)
    except BodyTooLarge:
        raise InvalidRequest("the body is too large", 413) from None
    except ClientGone:  # answered all the same, for the log and the counters
        raise InvalidRequest("the client went away") from None
    except TimeoutError:
        raise InvalidRequest("the request did not arrive in time", 408) from None


def known_failure(error: Exception, where: str) -> OAuthError:
    """The answer to a domain error that any endpoint of this kind may meet (too many attempts,
    the store away); ServerError, logged, for anything else."""
    known = domain_error(error)
    if isinstance(known, InvalidArgument):  # what the transport checked already, checked again
        return InvalidRequest(known.message)
    if isinstance(known, TooManyFailures):
        return SlowDown(known.message, known.retry_after)
    if isinstance(known, Unavailable):
        return TemporarilyUnavailable("try again")
    log.exception("unexpected error in %s", where)
    return ServerError("internal error")
