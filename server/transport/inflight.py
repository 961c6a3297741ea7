"""A bound on the calls a process works on at once (MS_MAX_INFLIGHT), for every transport and the
HTTP endpoints alike. Past it a call is refused at once, RESOURCE_EXHAUSTED with reason OVERLOADED
(429 with Retry-After over JSON), instead of waiting in a queue until its caller times out: under
overload the service answers quickly, and its memory stays bounded (a call holds at most one
request of MAX_REQUEST_BYTES)."""

from server.domain.errors import ResourceExhausted

RETRY_AFTER_S = 1


def overloaded() -> ResourceExhausted:
    return ResourceExhausted(
        "OVERLOADED",
        "the service is at its limit of calls in flight; try again",
        {"retry_after": str(RETRY_AFTER_S)},
    )


class InflightLimit:
    """A counter, not a lock: the event loop runs one thing at a time, so taking a place is atomic."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.current = 0

    def try_enter(self) -> bool:
        if self.current >= self.limit:
            return False
        self.current += 1
        return True

    def leave(self) -> None:
        self.current -= 1
