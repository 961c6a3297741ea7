"""The HTTP port's queue in the event loop, and the refusal of a request that would wait in it.

Why a bound here, beside MS_MAX_INFLIGHT: uvicorn reads every request as its bytes arrive, in the
event loop's I/O step, and makes a task of it; the task then waits in the loop's ready queue behind
every request read before it. A call counts in flight only once its task runs, so under overload
the queue grows where no bound sees it: at 256 connections, GetUserByID as JSON had a p99 of
153 ms against 9 ms at 16, and not one call was refused (BENCHMARKS.md, before this bound).

So the requests read and not yet begun are counted (`waiting`), and a request read while
MS_MAX_WAITING others wait is answered at once, still in the I/O step, with a refusal made at
start: no task, no body read, no service code, no access line (one counter,
machinesecrets_requests_refused_waiting_total). Its answer is the one the same overload would get
from the call itself, in its protocol's shape: RESOURCE_EXHAUSTED (reason OVERLOADED, Retry-After)
as google.rpc.Status JSON (429), as a Connect error (429), in grpc-web trailers (200), or the token
endpoints' `slow_down` (429). The health and readiness probes are never refused here: an
orchestrator that sees them fail restarts a process that is only busy.

What it keeps of the denial-of-service guarantees (admission.py): only whole heads are counted,
and a request leaves the count as soon as its task begins, so a slow sender holds nothing here; a
refused request whose body has not all arrived closes its connection, so it cannot hold one by
never finishing a body nobody will read. A cross-origin browser call refused here gets no CORS
headers: the browser sees a network error, which its grpc-web or fetch client retries like any.
"""

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass

from server.transport.admission import RETRY_AFTER_S, overloaded
from server.transport.connect import CONTENT_TYPES as CONNECT_TYPES
from server.transport.grpcweb import TEXT_TYPES, answer_body, response_type
from server.transport.http_endpoint import NO_STORE, SlowDown
from server.transport.http_errors import COMPACT, SPACED, connect_error, retry_after, status_json
from server.transport.pipeline import error_outcome
from server.transport.status import HTTP_STATUS


@dataclass(frozen=True)
class Refusal:
    """A whole answer, made once."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes


def _refusal(status: int, headers: list[tuple[str, str]], body: bytes) -> Refusal:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    return Refusal(status, (*raw, (b"content-length", str(len(body)).encode())), body)


class Refusals:
    """Which answer a refused request gets, by its path and content type, as the HTTP app would
    route it: the RPC paths answer in grpc-web or Connect, the token endpoints in OAuth's shape,
    everything else in the JSON API's; the exempt paths are never refused."""

    def __init__(
        self, rpc_paths: Collection[str], oauth_paths: Collection[str], exempt: Collection[str]
    ) -> None:
        outcome = error_outcome(overloaded())
        wait = retry_after(outcome)
        code = HTTP_STATUS[outcome.code]
        self._json = _refusal(
            code,
            [("content-type", "application/json"), *wait],
            json.dumps(status_json(outcome), separators=COMPACT).encode(),
        )
        self._connect = _refusal(
            code,
            [("content-type", "application/json"), *wait],
            json.dumps(connect_error(outcome), separators=SPACED).encode(),
        )
        self._grpc_web = {
            text: _refusal(200, [("content-type", response_type(text))], answer_body(outcome, text))
            for text in (False, True)
        }
        slow_down = SlowDown(outcome.message, RETRY_AFTER_S).answer()
        self._oauth = _refusal(
            slow_down.status,
            [*NO_STORE, *slow_down.headers, ("content-type", "application/json")],
            json.dumps(slow_down.body).encode(),
        )
        self._rpc = {path.encode() for path in rpc_paths}
        self._oauth_paths = {path.encode() for path in oauth_paths}
        self._exempt = {path.encode() for path in exempt}

    def answer(self, target: bytes, content_type: bytes) -> Refusal | None:
        """The refusal for a request to target (path and query) of this content type (its
        header's value, as sent); None for a path that is never refused."""
        path = target.partition(b"?")[0]
        if path in self._exempt:
            return None
        if path in self._oauth_paths:
            return self._oauth
        if path in self._rpc:
            media = content_type.partition(b";")[0].strip().lower().decode("latin-1")
            if media in CONNECT_TYPES:
                return self._connect
            return self._grpc_web[media in TEXT_TYPES]
        return self._json


class Backlog:
    """The requests of one process's HTTP servers that have been read and not yet begun, and
    the limit past which a request is refused at once (one event loop: plain counters)."""

    def __init__(self, limit: int, refusals: Refusals, count_refusal: Callable[[], None]) -> None:
        self.limit = limit
        self.waiting = 0
        self.refusals = refusals
        self.count_refusal = count_refusal
