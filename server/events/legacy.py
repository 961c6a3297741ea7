"""Events as they were stored once and are no longer written: earlier payload shapes of a type
that is still written (decoded by its current class, which tells them by their fields), and types
no longer written at all. The store never appends them; reading an aggregate's events may return
them.
"""

from dataclasses import dataclass, field

from server.events.base import AGGREGATE_ORG, AGGREGATE_REVOCATION, AGGREGATE_TOKEN, AGGREGATE_USER, Event


@dataclass(frozen=True)
class SecretSetBeforeIds(
    Event,
    type_name="user.machine.secret.set",
    aggregate=AGGREGATE_USER,
    changes_power=True,
    earlier_shape=True,
):
    """A secret.set written before secrets had ids: the hash alone. Migration 6 made a secret of the
    last one (migrations.legacy_secret_id)."""

    hash: str = field(repr=False)


@dataclass(frozen=True)
class SecretRehashedBeforeIds(
    Event,
    type_name="user.machine.secret.updated",
    aggregate=AGGREGATE_USER,
    changes_power=True,
    earlier_shape=True,
):
    """A re-hash of the user's one secret, written before secrets had ids."""

    hash: str = field(repr=False)


@dataclass(frozen=True)
class AccessTokenAddedBeforeSecretIds(
    Event, type_name="token.access.added", aggregate=AGGREGATE_TOKEN, changes_power=False, earlier_shape=True
):
    """An access token written before secrets had ids: it named the sequence of the user's event
    that set the secret it was issued for. Migration 6 gave the live ones the secret's id."""

    user_id: str
    token_hash: str = field(repr=False)
    expires_at: int
    scope: str
    secret_sequence: int | None


@dataclass(frozen=True)
class RevocationReceived(
    Event, type_name="revocation.received", aggregate=AGGREGATE_REVOCATION, changes_power=False
):
    """A request to the revocation endpoint, whatever it matched: its source and how many
    candidates it named. No longer written: reports are counted per hour and source
    (revocation_reports), and migration 11 moved the ones written before into those counts."""

    source: str
    candidates: int


@dataclass(frozen=True)
class SecretPolicySetBeforeKeys(
    Event,
    type_name="org.secret_policy.set",
    aggregate=AGGREGATE_ORG,
    changes_power=False,
    earlier_shape=True,
):
    """A secret policy set before machine keys had rules of their own (migration 17 gave its row
    the keys' defaults: no limit on their lifetime, the default count)."""

    max_lifetime: int | None
    default_lifetime: int | None
    max_secrets_per_user: int | None
    max_grace_period: int | None
