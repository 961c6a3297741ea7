"""uvicorn's HTTP/1.1 protocol (h11), with a limit on the request target and on the time its head
may take, and the refusal of a request that would wait too long to begin (backlog.py says why).

uvicorn (0.54) waits for a head forever: its keep-alive timer runs only between requests, and any
byte that arrives cancels it, so a client that sends a header line now and then (or nothing, on a
new connection) holds its connection for good. Here every connection must bring a whole head
within head_timeout_s of opening or of its last answer, or it is closed. The body has a bound of
its own (the endpoints' reads, MS_REQUEST_READ_TIMEOUT).

uvicorn percent-decodes the whole path of every request before the application sees it, in Python:
64 KiB of escapes cost 5 ms of the event loop, and the front door lets 128 KiB of headers through
(MAX_HEADER_BYTES, for the metadata limit's own answer). No URL of the service is longer than
MAX_TARGET_BYTES, so a longer one is refused before it is decoded: 400 with the JSON error body of
INVALID_ARGUMENT (the shape the JSON API answers in), and the connection closed, as uvicorn closes
it after any request it cannot read.
"""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from server.limits import MAX_TARGET_BYTES
from server.transport.asgi import Receive, Scope, Send
from server.transport.backlog import Backlog

TOO_LONG = json.dumps(
    {"code": 3, "message": f"the request target is longer than {MAX_TARGET_BYTES} bytes", "details": []}
)


class _TargetTooLong(h11.RemoteProtocolError):
    pass


class _Connection(h11.Connection):
    target_too_long = False
    # The protocol's check of each request read: True when it has answered the request already.
    answered_at_once: Callable[[h11.Request], bool] = staticmethod(lambda request: False)

    def next_event(self) -> Any:
        while True:
            event = super().next_event()
            if not isinstance(event, h11.Request):
                return event
            if len(event.target) > MAX_TARGET_BYTES:
                self.target_too_long = True
                raise _TargetTooLong("the request target is too long", error_status_hint=400)
            if not self.answered_at_once(event):
                return event
            if self.our_state is not h11.DONE:  # answered, and closing: read nothing more
                return h11.NEED_DATA
            # Answered, and the connection goes on: what is left of the request (its body, its
            # end) uvicorn reads past, since our side is done, and then starts the next cycle.


class BoundedH11Protocol(H11Protocol):
    head_timeout_s = 10.0  # bounded_h11 makes a class with the service's own
    backlog: Backlog | None = None  # and the process's backlog, if it has one
    _head_timer: asyncio.TimerHandle | None = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # The connection uvicorn makes, with the size limit the service always gives it.
        assert config.h11_max_incomplete_event_size is not None
        self.conn: _Connection = _Connection(h11.SERVER, config.h11_max_incomplete_event_size)
        if self.backlog is not None:
            self.conn.answered_at_once = self._refused_waiting

    # uvicorn runs `self.app` for each request it reads: here, the application behind a step that
    # counts the request out of the backlog as its task begins.
    @property
    def app(self) -> Callable[[Scope, Receive, Send], Any]:
        return self._begin

    @app.setter
    def app(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self._app = app

    async def _begin(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.backlog is not None:
            self.backlog.waiting -= 1
        await self._app(scope, receive, send)

    def _refused_waiting(self, request: h11.Request) -> bool:
        """Counts request into the backlog, or, with the backlog full, answers it at once with
        its refusal (True). The connection goes on if the request's body is here already, and
        closes if not (a body still arriving would otherwise be read for nothing, or never end)."""
        backlog = self.backlog
        assert backlog is not None
        refusal = None
        if backlog.waiting >= backlog.limit:
            refusal = backlog.refusals.answer(request.target, _header(request, b"content-type"))
        if refusal is None:
            backlog.waiting += 1
            return False
        backlog.count_refusal()
        whole = _body_is_here(self.conn, request)
        headers = [*refusal.headers] if whole else [*refusal.headers, (b"connection", b"close")]
        data = self.conn.send(h11.Response(status_code=refusal.status, headers=headers)) or b""
        data += self.conn.send(h11.Data(data=refusal.body)) or b""
        data += self.conn.send(h11.EndOfMessage()) or b""
        self.transport.write(data)
        if self.conn.our_state is h11.DONE:
            self._await_head()
        else:  # closing: asked to, or an HTTP/1.0 client's
            self.transport.close()
        return True

    def send_400_response(self, msg: str) -> None:
        if not self.conn.target_too_long:
            super().send_400_response(msg)
            return
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        for event in (
            h11.Response(status_code=400, headers=headers),
            h11.Data(data=TOO_LONG.encode()),
            h11.EndOfMessage(),
        ):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        super().connection_lost(exc)

    def _await_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _head_too_slow(self) -> None:
        self._head_timer = None
        # IDLE: h11 has not seen this request's whole head yet (it leaves IDLE with it).
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def _header(request: h11.Request, name: bytes) -> bytes:
    for key, value in request.headers:  # h11 gives the names in lower case
        if key == name:
            return bytes(value)
    return b""


def _body_is_here(conn: h11.Connection, request: h11.Request) -> bool:
    """Whether all of request's body has been received already (h11 holds it unread)."""
    if _header(request, b"transfer-encoding"):
        return False
    length = _header(request, b"content-length")
    return not length or len(conn.trailing_data[0]) >= int(length)


def bounded_h11(head_timeout_s: float, backlog: Backlog | None = None) -> type[BoundedH11Protocol]:
    """The protocol class for uvicorn's `http` setting, with this head timeout and backlog."""
    return type(
        "BoundedH11Protocol", (BoundedH11Protocol,), {"head_timeout_s": head_timeout_s, "backlog": backlog}
    )
