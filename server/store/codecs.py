"""How values are read and written in the store: times as integers (microseconds since the Unix
epoch, UTC: server/clock.py writes them, from_micros reads them back), roles as one
space-separated text. Payloads are the events' own (server/events/base.py)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from server.clock import EPOCH

# "Does not expire", where SQL compares expiry times: the largest BIGINT, read back as FOREVER.
NEVER = (1 << 63) - 1
FOREVER = datetime.max.replace(tzinfo=UTC)

# One SQL statement and its parameters.
Statement = tuple[str, tuple[Any, ...]]


def from_micros(micros: int) -> datetime:
    return FOREVER if micros == NEVER else EPOCH + timedelta(microseconds=micros)


def encode_roles(roles: frozenset[str]) -> str:
    return " ".join(sorted(roles))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split())
