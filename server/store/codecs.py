"""How values are written in the store: times as integers (microseconds since the Unix epoch,
UTC), payloads as compact JSON with sorted keys, roles as one space-separated text."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# One SQL statement and its parameters.
Statement = tuple[str, tuple[Any, ...]]


def to_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def encode_payload(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True)


def encode_roles(roles: frozenset[str]) -> str:
    return " ".join(sorted(roles))


def decode_roles(text: str) -> frozenset[str]:
    return frozenset(text.split())
