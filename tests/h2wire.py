"""A raw HTTP/2 client for the wire tests: it sends exactly the frames a test asks for (bodies cut
short, a client's trailers, repeated or invalid headers), which no gRPC client library will.

Built on h2 (sans-IO) with header validation off, so that invalid requests reach the server.
"""

import asyncio
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

from tests.codes import code_name

Headers = list[tuple[str, str]]


@dataclass
class Answer:
    """What the server sent on one stream."""

    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    trailers: dict[str, str] = field(default_factory=dict)
    reset_code: int | None = None  # RST_STREAM's error code, if the server reset the stream

    @property
    def http_status(self) -> int | None:
        status = self.headers.get(":status")
        return int(status) if status else None

    @property
    def grpc_status(self) -> str | None:
        """grpc-status from the trailers, or from the headers of a trailers-only answer."""
        return self.trailers.get("grpc-status", self.headers.get("grpc-status"))

    @property
    def code(self) -> str | None:
        """The grpc-status by name (OK, INVALID_ARGUMENT, ...)."""
        return None if self.grpc_status is None else code_name(self.grpc_status)

    @property
    def grpc_message(self) -> str:
        return self.trailers.get("grpc-message", self.headers.get("grpc-message", ""))


def grpc_headers(path: str, *extra: tuple[str, str]) -> Headers:
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "127.0.0.1"),
            ("content-type", "application/grpc"), ("te", "trailers"), *extra]  # fmt: skip


class Http2Connection:
    """One HTTP/2 connection on which requests go one after the other (sharing HPACK state)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        config = h2.config.H2Configuration(
            client_side=True, validate_outbound_headers=False, normalize_outbound_headers=False,
            validate_inbound_headers=False, header_encoding="latin-1",
        )  # fmt: skip
        self._reader, self._writer = reader, writer
        self._h2 = h2.connection.H2Connection(config)
        self._h2.initiate_connection()
        writer.write(self._h2.data_to_send())

    @classmethod
    async def open(cls, port: int) -> "Http2Connection":
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    def close(self) -> None:
        self._writer.close()

    async def request(
        self,
        headers: Headers,
        body: bytes = b"",
        *,
        trailers: Headers | None = None,
        half_close: bool = True,
        timeout_s: float = 5.0,
    ) -> Answer:
        """Sends one request (headers, the body in DATA frames, optional trailers; then
        half-closes unless told not to) and returns the answer. TimeoutError: the stream did not
        end in time."""
        connection, writer = self._h2, self._writer
        stream = connection.get_next_available_stream_id()
        answer = Answer()
        last = half_close and trailers is None  # whether the last DATA frame ends the stream
        async with asyncio.timeout(timeout_s):
            connection.send_headers(stream, headers, end_stream=not body and last)
            if not body and trailers is not None:
                connection.send_headers(stream, trailers, end_stream=half_close)
            unsent = body
            ended = False
            while not ended:
                # Send what flow control allows, half-closing after the last byte (or trailers).
                while unsent and connection.local_flow_control_window(stream) > 0:
                    size = min(len(unsent), connection.local_flow_control_window(stream),
                               connection.max_outbound_frame_size)  # fmt: skip
                    chunk, unsent = unsent[:size], unsent[size:]
                    connection.send_data(stream, chunk, end_stream=not unsent and last)
                    if not unsent and trailers is not None:
                        connection.send_headers(stream, trailers, end_stream=half_close)
                writer.write(connection.data_to_send())
                data = await self._reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection without an answer")
                for event in connection.receive_data(data):
                    ended = _record(event, stream, answer) or ended
                writer.write(connection.data_to_send())
        return answer


async def exchange(
    port: int,
    headers: Headers,
    body: bytes = b"",
    *,
    trailers: Headers | None = None,
    half_close: bool = True,
    timeout_s: float = 5.0,
) -> Answer:
    """One request on a connection of its own."""
    connection = await Http2Connection.open(port)
    try:
        return await connection.request(
            headers, body, trailers=trailers, half_close=half_close, timeout_s=timeout_s
        )
    finally:
        connection.close()


def _record(event: h2.events.Event, stream: int, answer: Answer) -> bool:
    """Notes one event in the answer; True when the stream is over."""
    if isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream:
        answer.headers = _text(event.headers)
    elif isinstance(event, h2.events.TrailersReceived) and event.stream_id == stream:
        answer.trailers = _text(event.headers)
    elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
        answer.body += event.data
    elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
        # NO_ERROR after a whole answer only asks the client to stop sending (RFC 9113 §8.1).
        if event.error_code:
            answer.reset_code = int(event.error_code)
        return True
    elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
        return True
    elif isinstance(event, h2.events.ConnectionTerminated):
        answer.reset_code = int(event.error_code or 0)
        return True
    return False


def _text(headers: object) -> dict[str, str]:
    pairs: list[tuple[str | bytes, str | bytes]] = list(headers)  # type: ignore[call-overload]
    return {_str(k): _str(v) for k, v in pairs}


def _str(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
