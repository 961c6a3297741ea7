"""An organisation's rules for new client secrets and machine keys, and what they make of a request:
pure functions over the policy and the time, so that every path that creates a secret (AddSecret,
CreateSecret, RotateSecret, ZITADEL's names for them) or a key (AddKey, AddMachineKey) applies the
same ones.

- A secret asked to expire later than now + max_lifetime is refused; one with no expiry gets
  default_lifetime, or else max_lifetime (a secret that never expires would break that limit).
- A grace period longer than max_grace_period is refused.
- A user has at most max_secrets_per_user live secrets (DEFAULT_MAX_SECRETS when unset).
- A machine key asked to expire later than now + max_key_lifetime is refused; one with no expiry
  gets max_key_lifetime (none when unset: a key never expires unless asked, as in ZITADEL).
- A user has at most max_keys_per_user live keys (DEFAULT_MAX_KEYS when unset).
A changed policy applies to new credentials only: an expiry is fixed when it is made.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from server.clock import optional_micros
from server.domain.errors import FailedPrecondition, FieldViolation
from server.events.org import SecretPolicySet


@dataclass(frozen=True)
class SecretPolicy:
    """An organisation's rules for new client secrets. None: no limit (max_secrets_per_user: the
    service's default)."""

    max_lifetime: timedelta | None = None
    default_lifetime: timedelta | None = None
    max_secrets_per_user: int | None = None
    max_grace_period: timedelta | None = None
    max_key_lifetime: timedelta | None = None
    max_keys_per_user: int | None = None

    @classmethod
    def of(cls, stored: SecretPolicySet) -> "SecretPolicy":
        """The policy an organisation set last (its event, or the store's NO_SECRET_POLICY)."""
        return cls(
            max_lifetime=_span(stored.max_lifetime),
            default_lifetime=_span(stored.default_lifetime),
            max_secrets_per_user=stored.max_secrets_per_user,
            max_grace_period=_span(stored.max_grace_period),
            max_key_lifetime=_span(stored.max_key_lifetime),
            max_keys_per_user=stored.max_keys_per_user,
        )

    def event(self) -> SecretPolicySet:
        """The event that sets this policy."""
        return SecretPolicySet(
            max_lifetime=optional_micros(self.max_lifetime),
            default_lifetime=optional_micros(self.default_lifetime),
            max_secrets_per_user=self.max_secrets_per_user,
            max_grace_period=optional_micros(self.max_grace_period),
            max_key_lifetime=optional_micros(self.max_key_lifetime),
            max_keys_per_user=self.max_keys_per_user,
        )


def _span(micros: int | None) -> timedelta | None:
    return None if micros is None else timedelta(microseconds=micros)


DEFAULT_MAX_SECRETS = 5
MAX_SECRETS_LIMIT = 100  # the largest max_secrets_per_user an organisation may set
DEFAULT_MAX_KEYS = 10
MAX_KEYS_LIMIT = 100  # the largest max_keys_per_user an organisation may set
# The longest span a policy or a grace period may name: far enough, and far from any overflow.
LONGEST = timedelta(days=36525)
MAX_SECRET_DESCRIPTION_LENGTH = 200


def span_in_words(span: timedelta) -> str:
    """A span as a person reads it, e.g. "90 days", "1 day 2:00:00", "3600 seconds"."""
    if span % timedelta(days=1) == timedelta(0):
        days = span.days
        return f"{days} day" if days == 1 else f"{days} days"
    return f"{span.total_seconds():g} seconds"


def expiry(
    policy: SecretPolicy, requested: datetime | None, now: datetime
) -> tuple[datetime | None, list[FieldViolation]]:
    """When a new secret expires, given what the caller asked for (None: nothing)."""
    if requested is None:
        lifetime = policy.default_lifetime or policy.max_lifetime
        return (None if lifetime is None else now + lifetime), []
    if requested <= now:
        return None, [FieldViolation("expiration_date", "must be in the future")]
    if policy.max_lifetime is not None and requested > now + policy.max_lifetime:
        return None, [
            FieldViolation(
                "expiration_date",
                f"must be at most {span_in_words(policy.max_lifetime)} from now:"
                " the organisation's maxLifetime",
            )
        ]
    return requested, []


def key_expiry(
    policy: SecretPolicy, requested: datetime | None, now: datetime
) -> tuple[datetime | None, list[FieldViolation]]:
    """When a new machine key expires, given what the caller asked for (None: nothing)."""
    if requested is None:
        return (None if policy.max_key_lifetime is None else now + policy.max_key_lifetime), []
    if requested <= now:
        return None, [FieldViolation("expiration_date", "must be in the future")]
    if policy.max_key_lifetime is not None and requested > now + policy.max_key_lifetime:
        return None, [
            FieldViolation(
                "expiration_date",
                f"must be at most {span_in_words(policy.max_key_lifetime)} from now:"
                " the organisation's maxKeyLifetime",
            )
        ]
    return requested, []


def max_keys(policy: SecretPolicy) -> int:
    return DEFAULT_MAX_KEYS if policy.max_keys_per_user is None else policy.max_keys_per_user


def check_key_count(policy: SecretPolicy, live_after: int, holder: str = "the machine user") -> None:
    """Refuses a key that would leave a user (or an API application) with more live keys than the
    policy allows."""
    limit = max_keys(policy)
    if live_after > limit:
        raise FailedPrecondition(
            "KEY_LIMIT_REACHED",
            f"{holder} would have more than {limit} live keys: remove one",
            {"limit": str(limit)},
        )


def check_grace(policy: SecretPolicy, grace: timedelta | None) -> list[FieldViolation]:
    if grace is None:
        return [FieldViolation("grace_period", "is required: 0s retires the other secrets at once")]
    if grace < timedelta(0):
        return [FieldViolation("grace_period", "must not be negative")]
    if policy.max_grace_period is not None and grace > policy.max_grace_period:
        return [
            FieldViolation(
                "grace_period",
                f"must be at most {span_in_words(policy.max_grace_period)}:"
                " the organisation's maxGracePeriod",
            )
        ]
    if grace > LONGEST:
        return [FieldViolation("grace_period", f"must be at most {span_in_words(LONGEST)}")]
    return []


def max_secrets(policy: SecretPolicy) -> int:
    return DEFAULT_MAX_SECRETS if policy.max_secrets_per_user is None else policy.max_secrets_per_user


def check_secret_count(policy: SecretPolicy, live_after: int) -> None:
    """Refuses a change that would leave a user with more live secrets than the policy allows."""
    limit = max_secrets(policy)
    if live_after > limit:
        raise FailedPrecondition(
            "SECRET_LIMIT_REACHED",
            f"the machine user would have more than {limit} live secrets: delete one, or rotate",
            {"limit": str(limit)},
        )


def check_policy(policy: SecretPolicy) -> list[FieldViolation]:
    """The violations of a policy an organisation asks for."""
    found: list[FieldViolation] = []
    lifetimes = (
        ("policy.max_lifetime", policy.max_lifetime),
        ("policy.default_lifetime", policy.default_lifetime),
        ("policy.max_key_lifetime", policy.max_key_lifetime),
    )
    for field, span in lifetimes:
        if span is not None and not timedelta(0) < span <= LONGEST:
            found.append(FieldViolation(field, f"must be more than 0s and at most {span_in_words(LONGEST)}"))
    grace = policy.max_grace_period
    if grace is not None and not timedelta(0) <= grace <= LONGEST:
        found.append(FieldViolation("policy.max_grace_period", f"must be 0s to {span_in_words(LONGEST)}"))
    limit = policy.max_secrets_per_user
    if limit is not None and not 1 <= limit <= MAX_SECRETS_LIMIT:
        found.append(FieldViolation("policy.max_secrets_per_user", f"must be 1 to {MAX_SECRETS_LIMIT}"))
    keys = policy.max_keys_per_user
    if keys is not None and not 1 <= keys <= MAX_KEYS_LIMIT:
        found.append(FieldViolation("policy.max_keys_per_user", f"must be 1 to {MAX_KEYS_LIMIT}"))
    if (
        not found
        and policy.default_lifetime is not None
        and policy.max_lifetime is not None
        and policy.default_lifetime > policy.max_lifetime
    ):
        found.append(FieldViolation("policy.default_lifetime", "must not be longer than max_lifetime"))
    return found
