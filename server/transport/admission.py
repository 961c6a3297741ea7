"""The two bounds a request meets on its way in, on every transport and the HTTP endpoints alike.

    arriving    a request whose head came and whose body is still on its way is *unfinished*:
                at most MS_MAX_UNFINISHED of them in the process, and MS_MAX_UNFINISHED_PER_SOURCE
                from one client address. Past either, the request is refused at once,
                RESOURCE_EXHAUSTED with reason UNFINISHED_REQUESTS (429 over JSON). Each waits at
                most MS_REQUEST_READ_TIMEOUT for the rest of its body.
    in flight   a request that has arrived whole is then worked on: at most MS_MAX_INFLIGHT at
                once. Past it a call is refused at once, RESOURCE_EXHAUSTED with reason OVERLOADED
                (429 with Retry-After over JSON), instead of waiting in a queue until its caller
                times out.

Why two bounds, and in this order: a request counted in flight while it was still arriving let a
caller with no credential hold every slot by sending half a body and waiting (260 connections,
each with `Content-Length: 100` and 10 bytes, refused everyone for the read timeout). Now a slot
is taken only by a request that is whole, so only work the service can start at once holds one;
what a slow sender holds is an unfinished place, bounded per address so that one address cannot
take them all, and in total so that many cannot exhaust memory (each holds at most one request of
MAX_REQUEST_BYTES). A caller that shares its address with such a sender (a NAT) is refused with
it: the limit cannot tell them apart.

Counters, not locks: the event loop runs one thing at a time, so taking a place is atomic.
"""

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from server.domain.errors import ResourceExhausted, Unavailable

RETRY_AFTER_S = 1
T = TypeVar("T")


def overloaded() -> ResourceExhausted:
    return ResourceExhausted(
        "OVERLOADED",
        "the service is at its limit of calls in flight; try again",
        {"retry_after": str(RETRY_AFTER_S)},
    )


def too_many_unfinished() -> ResourceExhausted:
    return ResourceExhausted(
        "UNFINISHED_REQUESTS",
        "too many requests are still arriving; send each request whole",
        {"retry_after": str(RETRY_AFTER_S)},
    )


def shutting_down() -> Unavailable:
    return Unavailable("SHUTTING_DOWN", "the service is stopping; try again")


def source_of(peer: str) -> str:
    """The address part of a peer as the access log names it ("ipv4:127.0.0.1:5555",
    "ipv6:[::1]:5555", "envoy:192.0.2.1", "unix:..."): requests are counted per address, not per
    connection, since a connection is free to open."""
    kind, _, rest = peer.partition(":")
    if kind == "envoy":
        return rest
    if kind in ("ipv4", "ipv6"):
        return rest.rpartition(":")[0].strip("[]")
    return peer


class Admission:
    def __init__(
        self,
        max_inflight: int,
        max_unfinished: int = 1024,
        max_unfinished_per_source: int = 64,
        hold_back_s: float = RETRY_AFTER_S,
    ) -> None:
        self.max_inflight = max_inflight
        self.max_unfinished = max_unfinished
        self.max_unfinished_per_source = max_unfinished_per_source
        self._hold_back_s = hold_back_s
        self.inflight = 0
        self.unfinished = 0
        self.held_back = 0
        self._unfinished_by_source: dict[str, int] = {}
        # Per address, the requests waiting for one of its places, first come first served.
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}
        self.draining = False
        self._released = asyncio.Event()
        self._last_arrival = 0.0

    async def arrived(self) -> None:
        """A call has reached the service. While it drains, the call waits for the servers to
        begin stopping, then is refused UNAVAILABLE (SHUTTING_DOWN)."""
        self._last_arrival = time.monotonic()
        if self.draining:
            await self._released.wait()
            raise shutting_down()

    async def drain(self, quiet_s: float, at_most_s: float) -> None:
        """Holds every call that arrives from now on; waits until the calls in flight have
        finished and none has arrived for quiet_s, or at_most_s. Then the servers stop, and
        release() refuses the held calls UNAVAILABLE, which a client retries elsewhere.

        Why the calls are held: grpc core, asked to shut down, cancels the calls it has taken but
        not yet handed to grpc.aio before it tells the clients to go away (GOAWAY), and a client
        does not retry CANCELLED (16 callers under SIGTERM: about 5 CANCELLED a run, none of them
        written). Refused at once, each caller's next call would be in that queue at the moment
        of the shutdown; held, each caller waits on its answer while the servers stop, and there
        is nothing in the queue to cancel.
        """
        self.draining = True
        deadline = time.monotonic() + at_most_s
        while time.monotonic() < deadline:
            idle = self.inflight == 0 and self.unfinished == 0
            if idle and time.monotonic() - self._last_arrival >= quiet_s:
                return
            await asyncio.sleep(min(quiet_s, 0.01))

    def release(self) -> None:
        """Answers the held calls: the servers are stopping."""
        self._released.set()

    @asynccontextmanager
    async def admitted(self, source: str, read: Callable[[], Awaitable[T]]) -> AsyncIterator[T]:
        """A request within both bounds, the one way every request is let in (the pipeline's
        calls and the HTTP endpoints alike): read() while it holds an unfinished place for source,
        then, once it is whole, worked on holding a place in flight, given back when the work is
        done. ResourceExhausted (UNFINISHED_REQUESTS or OVERLOADED) when either bound is reached."""
        async with self._arriving(source):
            request = await read()
        # Only now, with the whole request here: a caller that sends half a body holds no place
        # that a whole request could have used.
        if not self._try_enter():
            raise overloaded()
        try:
            yield request
        finally:
            self.inflight -= 1

    @asynccontextmanager
    async def _arriving(self, source: str) -> AsyncIterator[None]:
        """Holds an unfinished place for source while the body is read; ResourceExhausted
        (UNFINISHED_REQUESTS) when there is none.

        A request past its address's share waits in that address's line for one of its places,
        for one to two hold_back_s (the Retry-After it would be told), then is refused:
        - a burst of whole requests from one address (more than its share read at the same
          moment, their bodies a packet behind their heads) each gets a place a moment later, as
          the ones before it finish arriving;
        - a sender whose places are held by its own slow requests is refused, but not at once: a
          sender that opens a new connection for each refusal would otherwise turn its surplus
          into a flood of requests, each parsed and answered on the event loop (measured: 300
          connections from one address reopened 700 times a second and put a third of a second
          on other callers' p99). The spread keeps the refusals from coming back in one burst.
        Those waiting are bounded too, by MS_MAX_UNFINISHED again; past that, and past the total,
        the refusal is at once.
        """
        if self.unfinished >= self.max_unfinished:
            raise too_many_unfinished()
        if self._unfinished_by_source.get(source, 0) >= self.max_unfinished_per_source:
            await self._wait_in_line(source)  # a place of source's, handed over: counted already
        else:
            self.unfinished += 1
            self._unfinished_by_source[source] = self._unfinished_by_source.get(source, 0) + 1
        try:
            yield
        finally:
            self._leave_place(source)

    async def _wait_in_line(self, source: str) -> None:
        """Waits for a place of source's to be handed over; ResourceExhausted when none is."""
        if self.held_back >= self.max_unfinished:
            raise too_many_unfinished()
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines.setdefault(source, deque()).append(handed)
        self.held_back += 1
        try:
            await asyncio.wait({handed}, timeout=self._hold_back_s * (1 + random.random()))  # noqa: S311 (no secret)
        except BaseException:  # the call ended meanwhile (its client went away)
            self._give_up(source, handed)
            raise
        finally:
            self.held_back -= 1
        if not handed.done():
            self._give_up(source, handed)
            raise too_many_unfinished()

    def _give_up(self, source: str, handed: asyncio.Future[None]) -> None:
        """Leaves source's line; a place handed over meanwhile goes on to the next."""
        if handed.done():
            self._leave_place(source)
            return
        handed.cancel()
        line = self._lines[source]
        line.remove(handed)
        if not line:
            del self._lines[source]

    def _leave_place(self, source: str) -> None:
        """Gives the place back, or hands it to the first of source's line."""
        line = self._lines.get(source)
        while line:
            waiting = line.popleft()
            if not line:
                del self._lines[source]
            if not waiting.done():
                waiting.set_result(None)  # the place goes on: the counts stay
                return
        self.unfinished -= 1
        left = self._unfinished_by_source[source] - 1
        if left:
            self._unfinished_by_source[source] = left
        else:  # the table holds only addresses with a request arriving: it cannot grow without bound
            del self._unfinished_by_source[source]

    def _try_enter(self) -> bool:
        """Takes a place in flight for a request that has arrived whole; False when none is free."""
        if self.inflight >= self.max_inflight:
            return False
        self.inflight += 1
        return True
