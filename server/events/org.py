"""Events of an organisation (aggregate `org`, resource owner: the organisation itself)."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.events.base import AGGREGATE_ORG, Event
from server.events.legacy import SecretPolicySetBeforeKeys


@dataclass(frozen=True)
class OrgAdded(Event, type_name="org.added", aggregate=AGGREGATE_ORG, changes_power=False):
    name: str


@dataclass(frozen=True)
class OrgMemberAdded(Event, type_name="org.member.added", aggregate=AGGREGATE_ORG, changes_power=True):
    """Gives power: a member who holds a token already must see its new roles at once."""

    user_id: str
    roles: tuple[str, ...]  # sorted, each once, as every command writes them

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        return cls(user_id=payload["user_id"], roles=tuple(payload["roles"]))


@dataclass(frozen=True)
class OrgMemberRemoved(Event, type_name="org.member.removed", aggregate=AGGREGATE_ORG, changes_power=True):
    user_id: str


@dataclass(frozen=True)
class SecretPolicySet(Event, type_name="org.secret_policy.set", aggregate=AGGREGATE_ORG, changes_power=False):
    """The organisation's rules for new client secrets and machine keys
    (server/domain/secret_policy.py): spans in microseconds, None for no limit; the counts None for
    the service's default. They apply to credentials made later, so no caller's power changes.
    Written before machine keys (#33) without their two fields (legacy.SecretPolicySetBeforeKeys)."""

    max_lifetime: int | None
    default_lifetime: int | None
    max_secrets_per_user: int | None
    max_grace_period: int | None
    max_key_lifetime: int | None
    max_keys_per_user: int | None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        if "max_keys_per_user" not in payload:
            return SecretPolicySetBeforeKeys(**payload)
        return cls(**payload)
