"""Events of a user's life and of its personal access tokens (aggregate `user`, resource owner:
the user's organisation). Its client secrets' events are in secret.py."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.events.base import AGGREGATE_USER, Event


@dataclass(frozen=True)
class MachineUserAdded(Event, type_name="user.machine.added", aggregate=AGGREGATE_USER, changes_power=False):
    user_name: str
    name: str
    description: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        # Read with "" when absent, as the projection and migration 7 always read it.
        return cls(payload["user_name"], payload["name"], payload.get("description", ""))


@dataclass(frozen=True)
class HumanUserAdded(Event, type_name="user.human.added", aggregate=AGGREGATE_USER, changes_power=False):
    user_name: str
    display_name: str
    email: str


@dataclass(frozen=True)
class UserDeactivated(Event, type_name="user.deactivated", aggregate=AGGREGATE_USER, changes_power=True):
    """No credential of a deactivated user is accepted."""


@dataclass(frozen=True)
class UserReactivated(Event, type_name="user.reactivated", aggregate=AGGREGATE_USER, changes_power=True):
    """Its credentials are accepted again: gives power back, which a cached caller must see."""


@dataclass(frozen=True)
class UserRemoved(Event, type_name="user.removed", aggregate=AGGREGATE_USER, changes_power=True):
    """The user's credentials and memberships end, and its user name is free; its events stay."""


@dataclass(frozen=True)
class PatAdded(Event, type_name="user.pat.added", aggregate=AGGREGATE_USER, changes_power=False):
    """A personal access token: its SHA-256, never the token. A new token is in no cache."""

    token_id: str
    token_hash: str = field(repr=False)
    expires_at: int | None  # microseconds since the epoch; None: never


@dataclass(frozen=True)
class PatRemoved(Event, type_name="user.pat.removed", aggregate=AGGREGATE_USER, changes_power=True):
    token_id: str


@dataclass(frozen=True)
class MachineChanged(Event, type_name="user.machine.changed", aggregate=AGGREGATE_USER, changes_power=False):
    """A machine user's name, description and access token type as they are from now on
    (ZITADEL's UpdateMachine; also right after MachineUserAdded, for a user created with JWT
    access tokens). access_token_type: "bearer" (opaque, checked only by this service) or "jwt"
    (signed, RFC 9068, verifiable with the JWKS). Tokens issued before keep their form: no one's
    power changes."""

    name: str
    description: str
    access_token_type: str
