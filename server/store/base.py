"""The store contract every backend (SQLite, PostgreSQL) implements.

Events are the source of truth. Each append also updates the read models (users, organisations,
members, tokens) in the same transaction, so whatever a call wrote is visible to the next read and
a failed append leaves nothing behind. The users and organisations read models double as the
aggregates' snapshots: a command loads one row (with its sequence) instead of replaying every
event, so its cost stays flat however many events an aggregate has.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from server.store.events import NewEvent, StoredEvent

USER_TYPE_MACHINE = "machine"
USER_TYPE_HUMAN = "human"
USER_STATE_ACTIVE = "active"
USER_STATE_INACTIVE = "inactive"


class StoreError(Exception):
    """Base of the errors a store raises; their messages carry no data of the caller's."""


class ConcurrencyConflict(StoreError):
    """Another writer appended the same (aggregate, sequence) first; nothing was written."""

    def __init__(self, key: str = "events") -> None:
        super().__init__(f"sequence taken: {key}")


class UniqueViolation(StoreError):
    """A read model's unique key (e.g. a user name) is taken; nothing was written."""

    def __init__(self, key: str) -> None:
        super().__init__(f"unique key taken: {key}")
        self.key = key


class StoreUnavailable(StoreError):
    """The database cannot be reached or answered with an operational error."""


@dataclass(frozen=True)
class OrgRecord:
    id: str
    name: str
    sequence: int
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class UserRecord:
    id: str
    org_id: str
    user_name: str
    type: str
    secret_hash: str | None  # bcrypt
    secret_sequence: int | None  # the sequence of the event that set the current secret
    sequence: int
    created_at: datetime
    changed_at: datetime
    state: str  # USER_STATE_ACTIVE or USER_STATE_INACTIVE

    @property
    def active(self) -> bool:
        return self.state == USER_STATE_ACTIVE


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    user_id: str
    expires_at: datetime | None
    secret_sequence: int | None  # access tokens: the secret they were issued for; PATs: None
    last_used_at: datetime | None = None  # noted at most once a minute


@dataclass(frozen=True)
class PatRecord:
    """A personal access token as it is listed: never its hash."""

    token_id: str
    created_at: datetime | None  # None only for a token made before migration 4 found no event
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class CallerRecord:
    """What authenticating a bearer token needs, read in one query."""

    token: TokenRecord
    org_id: str
    secret_sequence: int | None
    roles: dict[str, frozenset[str]]
    user_active: bool


class Store(Protocol):
    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        """Appends events atomically with one commit time, and updates the read models.

        Raises ConcurrencyConflict, UniqueViolation or StoreUnavailable; then nothing is written.
        """
        ...

    async def events(self, aggregate_type: str, aggregate_id: str) -> list[StoredEvent]:
        """All events of one aggregate, in sequence order."""
        ...

    async def first_event(self, aggregate_type: str, aggregate_id: str) -> StoredEvent | None:
        """The event that created an aggregate (what it was created with), or None."""
        ...

    async def sequence_of(self, aggregate_type: str, aggregate_id: str) -> int:
        """The sequence of an aggregate's last event; 0 if it has none."""
        ...

    async def user(self, user_id: str) -> UserRecord | None: ...

    async def user_by_name(self, user_name: str) -> UserRecord | None:
        """The user with this name, compared without case."""
        ...

    async def org(self, org_id: str) -> OrgRecord | None: ...

    async def any_org(self) -> bool: ...

    async def member_roles(self, org_id: str, user_id: str) -> frozenset[str] | None: ...

    async def roles_of(self, user_id: str) -> dict[str, frozenset[str]]:
        """The user's roles, by the organisations it is a member of."""
        ...

    async def caller(self, token_hash: str) -> CallerRecord | None:
        """The token with this hash, its user's organisation and secret, and the user's roles."""
        ...

    async def active_iam_owners(self) -> set[str]:
        """The ids of the active users who hold IAM_OWNER in some organisation."""
        ...

    async def personal_access_tokens(self, user_id: str) -> list[PatRecord]:
        """The user's personal access tokens, oldest first."""
        ...

    async def touch_token(self, token_hash: str, at_micros: int, unless_since_micros: int) -> None:
        """Notes that the token was used at at_micros, unless a use was noted after unless_since_micros."""
        ...

    async def record_failure(
        self, keys: tuple[str, str], at_micros: int, after_micros: int, forget_micros: int
    ) -> dict[str, tuple[int, int]]:
        """Notes a failed authentication under both keys, and forgets failures up to forget_micros.

        Answers what recent_failures(keys, after_micros) answered just before, in one step with
        the note: of concurrent failures under one key (on any process), each sees all those
        noted before it, so a burst of them cannot all pass a limit together.
        """
        ...

    async def recent_failures(self, keys: tuple[str, str], after_micros: int) -> dict[str, tuple[int, int]]:
        """Per key with failures after after_micros: how many, and when the oldest of them was."""
        ...

    async def close(self) -> None: ...
