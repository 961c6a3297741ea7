"""The service's clock: every decision about time (expiry, the time of an event) reads it, so that
tests can move time forward instead of waiting for it (tests/test_secret_lifecycle_model.py). The
domain and the store both read it, so it sits beside them, like limits.py.

Where a time is kept (in an event's payload, a column of the store, an argument of the store's) it
is an integer: microseconds since the Unix epoch, UTC. Both sides write it so, hence here too."""

from datetime import UTC, datetime, timedelta
from typing import Protocol

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def optional_micros(span: timedelta | None) -> int | None:
    """A span (a lifetime, a grace period) in microseconds; None stays None (no limit)."""
    return None if span is None else span // timedelta(microseconds=1)


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, in UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ShiftedClock:
    """The system's time moved forward by a growing offset: for tests of expiry. Only forward, so
    that time never runs backwards for the store."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, by: timedelta) -> None:
        if by < timedelta(0):
            raise ValueError("time only moves forward")
        self.offset += by


SYSTEM_CLOCK = SystemClock()
