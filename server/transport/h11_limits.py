"""uvicorn's HTTP/1.1 protocol (h11), with a limit on the request target.

uvicorn percent-decodes the whole path of every request before the application sees it, in Python:
64 KiB of escapes cost 5 ms of the event loop, and the front door lets 128 KiB of headers through
(MAX_HEADER_BYTES, for the metadata limit's own answer). No URL of the service is longer than
MAX_TARGET_BYTES, so a longer one is refused before it is decoded: 400 with the JSON error body of
INVALID_ARGUMENT (the shape the JSON API answers in), and the connection closed, as uvicorn closes
it after any request it cannot read.
"""

import asyncio
import json
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from server.limits import MAX_TARGET_BYTES

TOO_LONG = json.dumps(
    {"code": 3, "message": f"the request target is longer than {MAX_TARGET_BYTES} bytes", "details": []}
)


class _TargetTooLong(h11.RemoteProtocolError):
    pass


class _Connection(h11.Connection):
    def next_event(self) -> Any:
        event = super().next_event()
        if isinstance(event, h11.Request) and len(event.target) > MAX_TARGET_BYTES:
            self.target_too_long = True
            raise _TargetTooLong("the request target is too long", error_status_hint=400)
        return event

    target_too_long = False


class BoundedH11Protocol(H11Protocol):
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
