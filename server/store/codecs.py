"""How values are written in the store: times as integers (microseconds since the Unix epoch,
UTC), payloads as compact JSON with sorted keys, roles as one space-separated text."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# "Does not expire", where SQL compares expiry times: the largest BIGINT, read back as FOREVER.
NEVER = (1 << 63) - 1
FOREVER = datetime.max.replace(tzinfo=UTC)

# One SQL statement and its parameters.
Statement = tuple[str, tuple[Any, ...]]


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return FOREVER if micros == NEVER else EPOCH + timedelta(microseconds=micros)


def optional_micros(span: timedelta | None) -> int | None:
    return None if span is None else span // timedelta(microseconds=1)


def encode_payload(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def encode_roles(roles: frozenset[str]) -> str:
    return " ".join(sorted(roles))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split())
