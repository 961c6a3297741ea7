"""Events of a user grant (aggregate `usergrant`, one per grant; resource owner: the organisation
that owns the project): role keys of one project given to one user. The roles are the project's,
asserted in the user's tokens for the project's APIs, not permissions on this service's API."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.events.base import AGGREGATE_USER_GRANT, Event


@dataclass(frozen=True)
class UserGrantAdded(
    Event, type_name="user.grant.added", aggregate=AGGREGATE_USER_GRANT, changes_power=False
):
    user_id: str
    project_id: str
    role_keys: tuple[str, ...]  # sorted, each once

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        return cls(payload["user_id"], payload["project_id"], tuple(payload["role_keys"]))


@dataclass(frozen=True)
class UserGrantRemoved(
    Event, type_name="user.grant.removed", aggregate=AGGREGATE_USER_GRANT, changes_power=True
):
    """The roles are asserted no more."""
