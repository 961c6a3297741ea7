"""Events of a machine user's client secrets (aggregate `user`, resource owner: the user's
organisation).

A new secret carries its id, its bcrypt hash (never the secret), the msk_ format's lookup key
(not secret), a description, and its expiry in microseconds since the epoch (None: never). Events
written before secrets had ids carry the hash only (legacy.py); migration 6 gave those secrets ids.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.events.base import AGGREGATE_USER, Event
from server.events.legacy import SecretRehashedBeforeIds, SecretSetBeforeIds


@dataclass(frozen=True)
class IssuedSecret:
    """The fields every event that makes a new secret carries."""

    secret_id: str
    hash: str = field(repr=False)
    lookup: str | None  # None: a secret made before the msk_ format had lookup keys
    description: str
    expires_at: int | None


@dataclass(frozen=True)
class SecretSet(
    IssuedSecret, Event, type_name="user.machine.secret.set", aggregate=AGGREGATE_USER, changes_power=True
):
    """One new secret that replaces all of the user's others at once (AddSecret, ZITADEL's meaning)."""

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        if "secret_id" not in payload:
            return SecretSetBeforeIds(**payload)
        return cls(**payload)


@dataclass(frozen=True)
class SecretAdded(
    IssuedSecret, Event, type_name="user.machine.secret.added", aggregate=AGGREGATE_USER, changes_power=False
):
    """One new secret beside the live ones (CreateSecret). It ends none: the expired ones it prunes
    were refused already."""


@dataclass(frozen=True)
class SecretRotated(
    IssuedSecret, Event, type_name="user.machine.secret.rotated", aggregate=AGGREGATE_USER, changes_power=True
):
    """One new secret; every other secret of the user that would live longer expires at
    others_expire_at (RotateSecret; its grace period ends then)."""

    others_expire_at: int


@dataclass(frozen=True)
class SecretDeleted(
    Event, type_name="user.machine.secret.deleted", aggregate=AGGREGATE_USER, changes_power=True
):
    secret_id: str


@dataclass(frozen=True)
class SecretRevoked(
    Event, type_name="user.machine.secret.revoked", aggregate=AGGREGATE_USER, changes_power=True
):
    """A leaked secret, revoked by whoever held it, from source (the caller's address)."""

    secret_id: str
    source: str


@dataclass(frozen=True)
class SecretsRemoved(
    Event, type_name="user.machine.secret.removed", aggregate=AGGREGATE_USER, changes_power=True
):
    """Every secret of the user (RemoveSecret)."""


@dataclass(frozen=True)
class SecretRehashed(
    Event, type_name="user.machine.secret.updated", aggregate=AGGREGATE_USER, changes_power=True
):
    """The same secret, hashed again at another bcrypt cost. It changes no one's power, but has
    emptied the caller cache since that cache had a list of harmless events, and a re-hash is rare
    (an operator changed the cost): it errs on the side of forgetting."""

    secret_id: str
    hash: str = field(repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        if "secret_id" not in payload:
            return SecretRehashedBeforeIds(**payload)
        return cls(**payload)
