"""What an event is, and the envelopes it is appended and read in.

An event class is one stored event type: its stored type name, its aggregate, its payload fields,
and whether it may change the power of a caller who is authenticated already. The stored type
names and payload field names are forever: old events are never rewritten, so a change to a
payload needs a new event type (or, for events already stored, a class for their earlier shape,
as legacy.py keeps), not an edit.

Every concrete event class must say, in its class statement, whether it changes power: there is
no default, so an event type added later cannot be taken for harmless by omission (the caller
cache, server/domain/caller_cache.py, keeps its callers only across events that say they do not).

The domain and the store both speak events (the domain decides on them, the store keeps and
projects them), so this package imports neither: only the standard library.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, ClassVar

from server.actor import UNKNOWN, Actor

AGGREGATE_ORG = "org"
AGGREGATE_USER = "user"
AGGREGATE_TOKEN = "token"  # one per access token: issuing tokens never contends on the user
AGGREGATE_PROJECT = "project"  # a project, its roles and its applications
AGGREGATE_USER_GRANT = "usergrant"  # one per grant of a project's roles to a user
# One aggregate for the whole instance, whose sequence orders the changes that take an IAM_OWNER
# away, so that two of them cannot both pass the last-owner check.
AGGREGATE_INSTANCE = "instance"
INSTANCE_ID = "instance"
# Reports to the revocation endpoint were one aggregate each until migration 11 (legacy.py).
AGGREGATE_REVOCATION = "revocation"
# The signing keys of JWT access tokens: one aggregate for the whole instance (WEBKEYS_ID), so
# that of two processes that decide at once to make, activate or remove a key, one appends and
# the other decides again on what it did (domain/signing_keys.py).
AGGREGATE_WEBKEYS = "webkeys"
WEBKEYS_ID = "webkeys"

# The class that decodes each stored type name (its current shape; it knows its earlier ones).
_BY_TYPE: dict[str, type["Event"]] = {}


@dataclass(frozen=True)
class Event:
    """One event's meaning. A subclass is a frozen dataclass whose fields are its payload's, by
    the same names, declared with

        class OrgAdded(Event, type_name="org.added", aggregate=AGGREGATE_ORG, changes_power=False)

    changes_power: True when appending the event may change what a caller who is authenticated
    already may do. Above all when it takes power away (a credential ended, a role removed, a user
    deactivated or removed); also when it gives power to someone who may hold a credential already
    (a member added, a user reactivated), which a cached caller would otherwise miss for up to the
    cache's bound. False only for events that touch no one's existing credential or roles.
    """

    TYPE: ClassVar[str]
    AGGREGATE: ClassVar[str]
    CHANGES_POWER: ClassVar[bool]

    def __init_subclass__(
        cls,
        *,
        type_name: str,
        aggregate: str,
        changes_power: bool,
        earlier_shape: bool = False,
        **kwargs: Any,
    ) -> None:
        """earlier_shape: a payload shape that is no longer written, decoded by the current class
        of the same type name (which knows when a stored payload has it)."""
        super().__init_subclass__(**kwargs)
        cls.TYPE, cls.AGGREGATE, cls.CHANGES_POWER = type_name, aggregate, changes_power
        if earlier_shape:
            return
        if type_name in _BY_TYPE:
            raise TypeError(f"two event classes are stored as {type_name}")
        _BY_TYPE[type_name] = cls

    def payload(self) -> dict[str, Any]:
        """The stored payload: every field by its name."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "Event":
        """The event a stored payload of this type holds. A class whose type was stored in other
        shapes before answers with the class of the shape found."""
        return cls(**payload)


def event_class(type_name: str) -> type[Event]:
    """The class of a stored type name; ValueError for a name no event class has."""
    try:
        return _BY_TYPE[type_name]
    except KeyError:
        raise ValueError(f"no event class is stored as {type_name}") from None


def event_classes() -> list[type[Event]]:
    """Every current event class, by its stored type name."""
    return [_BY_TYPE[name] for name in sorted(_BY_TYPE)]


def encode_payload(event: Event) -> str:
    """The payload as it is stored: compact JSON with sorted keys (migration 4's LIKE on a token
    id relies on that exact text)."""
    return json.dumps(event.payload(), separators=(",", ":"), sort_keys=True)


def decode_payload(type_name: str, text: str) -> Event:
    """The event a stored row holds. Refuses a payload with a field its class does not know, so
    that nothing stored is lost by reading it."""
    payload = json.loads(text)
    event = event_class(type_name).from_payload(payload)
    unknown = payload.keys() - {f.name for f in fields(event)}
    if unknown:
        raise ValueError(f"{type_name} has no field {sorted(unknown)[0]!r}")
    return event


@dataclass(frozen=True)
class NewEvent:
    """An event a command wants to append to its aggregate.

    `sequence` is the aggregate's current sequence plus one: if another writer appended that
    sequence first, the append fails with ConcurrencyConflict and nothing is written.
    """

    aggregate_id: str
    sequence: int
    resource_owner: str
    event: Event
    # Who made the change (server/actor.py), recorded with the event and chained with it. Keyword
    # only, so that StoredEvent's fields may follow it.
    actor: Actor = field(default=UNKNOWN, kw_only=True)

    @property
    def aggregate_type(self) -> str:
        return self.event.AGGREGATE

    @property
    def type(self) -> str:
        return self.event.TYPE


@dataclass(frozen=True)
class StoredEvent(NewEvent):
    """An event as the store keeps it: appended, with the time of its commit."""

    created_at: datetime
