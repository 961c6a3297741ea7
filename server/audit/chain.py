"""The hash chain over the events: what makes a change to the events table, made directly in the
database, show (SECURITY.md, "Verifying the audit chain", is the same algorithm in prose, for a
verifier written without this code).

Two chains, both of SHA-256 in lower-case hex:
- each aggregate's: an event's `chain_hash` is sha256_hex(the chain_hash of the aggregate's event
  before it, "" for its first, + "\\n" + the event's canonical form), so an edited, removed or
  reordered event breaks the link of the aggregate's next event;
- the instance's: in position order (a global, gapless order: 1, 2, 3, ...), an event's
  `head_hash` is sha256_hex(the head_hash of the event at the position before, "" for position 1,
  + "\\n" + its chain_hash). The last position and head are kept in `audit_head`, so removing the
  last events of the whole store, or an aggregate's whole tail, shows too.

The store computes the canonical form here, in Python, and the hashes inside the append's
transaction (server/store/audit.py: in SQL on PostgreSQL, with these very functions on SQLite); a
verifier computes all of them here again.
"""

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.events.base import AGGREGATE_TOKEN, AGGREGATE_USER

# The fields of an event's canonical form, by their column names in the events table.
ACTOR_FIELDS = (
    "actor_user_id",
    "actor_org_id",
    "credential_kind",
    "credential_id",
    "request_id",
    "peer",
    "transport",
)
CANONICAL_FIELDS = (
    "aggregate_type",
    "aggregate_id",
    "sequence",
    "event_type",
    "resource_owner",
    "payload",
    "created_at",
    *ACTOR_FIELDS,
)


def subject_user(aggregate_type: str, aggregate_id: str, payload: Mapping[str, Any]) -> str:
    """The user an event is about, for a user's history (the events table's subject_user_id, read
    from the event itself, so not hashed but checked): a user's own events, and its access
    tokens' (whose payload names it); "" for any other."""
    if aggregate_type == AGGREGATE_USER:
        return aggregate_id
    if aggregate_type == AGGREGATE_TOKEN:
        return str(payload.get("user_id", ""))
    return ""


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical(fields: Mapping[str, Any]) -> str:
    """The canonical form of an event: a JSON object of exactly CANONICAL_FIELDS (the payload an
    object, given as one or as the JSON text the events table holds; sequence and created_at, in
    microseconds since the epoch, integers), keys sorted, no white space, every character outside
    U+0020..U+007E escaped as \\uXXXX (so the text is ASCII, and its UTF-8 is its bytes): what
    Python's json.dumps(sort_keys=True, separators=(",", ":")) writes."""
    form = {name: fields[name] for name in CANONICAL_FIELDS}
    if isinstance(form["payload"], str):
        form["payload"] = json.loads(form["payload"])
    return json.dumps(form, sort_keys=True, separators=(",", ":"))


def chain_link(previous: str, canonical_form: str) -> str:
    """An event's chain_hash, after the chain_hash of its aggregate's event before it."""
    return sha256_hex(previous + "\n" + canonical_form)


def head_link(previous: str, chain_hash: str) -> str:
    """An event's head_hash, after the head_hash of the event at the position before it."""
    return sha256_hex(previous + "\n" + chain_hash)


@dataclass(frozen=True)
class Break:
    """The first link that does not hold: where, which aggregate, what the chain expected there
    and what the store holds."""

    position: int
    aggregate: str  # "type/id"; "" for the instance-wide chain's own records
    what: str
    expected: str
    found: str

    def __str__(self) -> str:
        return (
            f"position {self.position}, aggregate {self.aggregate or '-'}: {self.what}:"
            f" expected {self.expected}, found {self.found}"
        )


class Verifier:
    """Checks events given one at a time in position order (rows with every column of the events
    table that the chain covers, and position, chain_hash, head_hash), then the head kept in
    audit_head; `broken` is the first link that did not hold, None while all did."""

    def __init__(self) -> None:
        self._chains: dict[tuple[str, str], tuple[int, str]] = {}  # aggregate: (sequence, hash)
        self._position = 0
        self._head = ""
        self.checked = 0
        self.broken: Break | None = None

    def add(self, row: Mapping[str, Any]) -> None:
        if self.broken is not None:
            return
        position = int(row["position"])
        aggregate = (str(row["aggregate_type"]), str(row["aggregate_id"]))
        where = "/".join(aggregate)
        if position != self._position + 1:  # an event removed (or moved) here
            self.broken = Break(self._position + 1, where, "position", str(self._position + 1), str(position))
            return
        sequence, before = self._chains.get(aggregate, (0, ""))
        if int(row["sequence"]) <= sequence:
            # An aggregate's events are chained in sequence order, and positions follow commits.
            self.broken = Break(position, where, "sequence", f"after {sequence}", str(row["sequence"]))
            return
        expected = chain_link(before, canonical(row))
        if row["chain_hash"] != expected:
            self.broken = Break(position, where, "chain_hash", expected, str(row["chain_hash"]))
            return
        payload = json.loads(row["payload"]) if isinstance(row["payload"], str) else row["payload"]
        subject = subject_user(aggregate[0], aggregate[1], payload)
        if row["subject_user_id"] != subject:
            self.broken = Break(position, where, "subject_user_id", subject, str(row["subject_user_id"]))
            return
        head = head_link(self._head, expected)
        if row["head_hash"] != head:
            self.broken = Break(position, where, "head_hash", head, str(row["head_hash"]))
            return
        self._chains[aggregate] = (int(row["sequence"]), expected)
        self._position, self._head = position, head
        self.checked += 1

    def finish(self, kept_position: int, kept_head: str) -> Break | None:
        """The first break, including one between the last event and the head audit_head keeps
        (the last events removed, or the head rewritten)."""
        if self.broken is None and (kept_position, kept_head) != (self._position, self._head):
            self.broken = Break(
                kept_position,
                "",
                "audit_head",
                f"{self._position} {self._head or '-'}",
                f"{kept_position} {kept_head or '-'}",
            )
        return self.broken
