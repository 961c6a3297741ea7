"""The service's clock: every decision about time (expiry, the time of an event) reads it, so that
tests can move time forward instead of waiting for it (tests/test_secret_lifecycle_model.py). The
domain and the store both read it, so it sits beside them, like limits.py."""

from datetime import UTC, datetime, timedelta
from typing import Protocol


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
