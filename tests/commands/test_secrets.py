"""server/domain/commands/secrets.py: the events each command on client secrets decides on."""

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from server.actor import SYSTEM, Actor, anonymous
from server.domain.credentials import SecretHasher
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from server.domain.model import IssuedSecret
from server.domain.permissions import ORG_OWNER, ORG_USER_MANAGER
from server.domain.secret_format import lookup_key
from server.domain.secret_policy import SecretPolicy
from server.events import secret
from server.events.base import NewEvent
from server.events.org import SecretPolicySet
from tests.commands.table import (
    GENERATED,
    NOW,
    NOW_MICROS,
    ORG,
    Case,
    Refused,
    caller,
    human_added,
    machine_added,
    member_added,
    on_user,
    org_added,
    run,
    table,
)

# Who reported a leak (anonymous, by address), and the exchange a re-hash happens in.
REPORTER = anonymous("10.0.0.1", "r1")
EXCHANGE = Actor("10", "1", "secret", "71", "r2", "10.0.0.9", "oauth")

OWNER = caller({ORG: frozenset({ORG_OWNER})})
MANAGER = caller({ORG: frozenset({ORG_USER_MANAGER})})
HOUR = timedelta(hours=1)
HOUR_MICROS = 3_600_000_000
BOT = [org_added(), machine_added("10")]
# The bot with a secret that expired (70) and a live one (71).
WITH_SECRETS = [
    *BOT,
    on_user("10", 2, secret.SecretAdded("70", "$2b$04$x", "old0", "", NOW_MICROS - 1)),
    on_user("10", 3, secret.SecretAdded("71", "$2b$04$y", "live", "", None)),
]


def policy_set(default_lifetime: int | None = None, max_secrets_per_user: int | None = None) -> NewEvent:
    """The organisation's policy, as its second event."""
    return NewEvent(
        ORG, 2, ORG, SecretPolicySet(None, default_lifetime, max_secrets_per_user, None, None, None)
    )


@table(
    Case(
        "add replaces every other secret",
        WITH_SECRETS,
        lambda c: c.add_secret(OWNER, "10"),
        [on_user("10", 4, secret.SecretSet("101", GENERATED, GENERATED, "", None))],
    ),
    Case(
        "add gets the policy's default lifetime",
        [*BOT, policy_set(default_lifetime=HOUR_MICROS)],
        lambda c: c.add_secret(OWNER, "10"),
        [on_user("10", 2, secret.SecretSet("101", GENERATED, GENERATED, "", NOW_MICROS + HOUR_MICROS))],
    ),
    Case(
        "add is for machine users only",
        [org_added(), human_added("10")],
        lambda c: c.add_secret(OWNER, "10"),
        Refused(FailedPrecondition, "USER_NOT_MACHINE"),
    ),
    Case(
        "add needs a user of the organisation",
        [org_added(), org_added("2"), machine_added("10", org_id="2")],
        lambda c: c.add_secret(OWNER, "10"),
        Refused(NotFound, "USER_NOT_FOUND"),
    ),
    Case(
        "a user manager may not take an owner's power",
        [*BOT, member_added(2, "10", ORG_OWNER)],
        lambda c: c.add_secret(MANAGER, "10"),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "create adds one beside the live ones",
        WITH_SECRETS,
        lambda c: c.create_secret(OWNER, "10", NOW + HOUR, "ci"),
        [on_user("10", 4, secret.SecretAdded("101", GENERATED, GENERATED, "ci", NOW_MICROS + HOUR_MICROS))],
    ),
    Case(
        "create stops at the policy's limit of live secrets",
        [*WITH_SECRETS, policy_set(max_secrets_per_user=1)],
        lambda c: c.create_secret(OWNER, "10", None, ""),
        Refused(FailedPrecondition, "SECRET_LIMIT_REACHED"),
    ),
    Case(
        "create refuses an expiry in the past",
        BOT,
        lambda c: c.create_secret(OWNER, "10", NOW - HOUR, ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "rotate ends the others with the grace period",
        WITH_SECRETS,
        lambda c: c.rotate_secret(OWNER, "10", HOUR, None, ""),
        [
            on_user(
                "10",
                4,
                secret.SecretRotated(
                    "101", GENERATED, GENERATED, "", None, others_expire_at=NOW_MICROS + HOUR_MICROS
                ),
            )
        ],
    ),
    Case(
        "rotate with no grace retires the others, so it fits a limit of one",
        [*WITH_SECRETS, policy_set(max_secrets_per_user=1)],
        lambda c: c.rotate_secret(OWNER, "10", timedelta(0), None, ""),
        [
            on_user(
                "10",
                4,
                secret.SecretRotated("101", GENERATED, GENERATED, "", None, others_expire_at=NOW_MICROS),
            )
        ],
    ),
    Case(
        "rotate needs a grace period",
        WITH_SECRETS,
        lambda c: c.rotate_secret(OWNER, "10", None, None, ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "delete ends one secret",
        WITH_SECRETS,
        lambda c: c.delete_secret(OWNER, "10", "71"),
        [on_user("10", 4, secret.SecretDeleted("71"))],
    ),
    Case(
        "delete needs a secret of the user",
        WITH_SECRETS,
        lambda c: c.delete_secret(OWNER, "10", "72"),
        Refused(NotFound, "SECRET_NOT_FOUND"),
    ),
    Case(
        "remove ends every secret",
        WITH_SECRETS,
        lambda c: c.remove_secret(OWNER, "10"),
        [on_user("10", 4, secret.SecretsRemoved())],
    ),
    Case(
        "remove needs a secret",
        BOT,
        lambda c: c.remove_secret(OWNER, "10"),
        Refused(FailedPrecondition, "SECRET_NOT_FOUND"),
    ),
    Case(
        "a policy is set on the organisation, in microseconds",
        BOT,
        lambda c: c.set_secret_policy(OWNER, SecretPolicy(max_lifetime=HOUR, max_secrets_per_user=3)),
        [NewEvent(ORG, 2, ORG, SecretPolicySet(HOUR_MICROS, None, 3, None, None, None))],
    ),
    Case(
        "a policy within its bounds",
        BOT,
        lambda c: c.set_secret_policy(OWNER, SecretPolicy(max_secrets_per_user=0)),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "a report revokes the secrets it names, and skips those gone",
        WITH_SECRETS,
        lambda c: c.revoke_secrets([("10", "71"), ("10", "72"), ("11", "80")], "10.0.0.1", REPORTER),
        [replace(on_user("10", 4, secret.SecretRevoked("71", "10.0.0.1")), actor=REPORTER)],
    ),
    Case(
        "a re-hash of the current hash",
        WITH_SECRETS,
        lambda c: c.rehash_secret("10", "71", "$2b$04$y", "$2b$10$z", EXCHANGE),
        # The service decides a re-hash: the system acts, in the exchange's request.
        [
            replace(
                on_user("10", 4, secret.SecretRehashed("71", "$2b$10$z")),
                actor=replace(SYSTEM, request_id="r2", transport="oauth"),
            )
        ],
    ),
    Case(
        "a stale re-hash writes nothing",
        WITH_SECRETS,
        lambda c: c.rehash_secret("10", "71", "$2b$04$other", "$2b$10$z", EXCHANGE),
        [],
    ),
)
async def test_secret_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_the_event_holds_the_hash_of_the_secret_answered(tmp_path: Path) -> None:
    """What GENERATED stands for above: the event's hash verifies the secret the caller got, and
    its lookup key is the one that secret carries."""
    new = on_user("10", 2, secret.SecretSet("101", GENERATED, GENERATED, "", None))
    answer, [pushed] = await run(Case("add", BOT, lambda c: c.add_secret(OWNER, "10"), [new]), tmp_path)
    assert isinstance(answer, IssuedSecret)
    assert isinstance(pushed.event, secret.SecretSet)
    assert (answer.secret_id, answer.client_id) == ("101", "bot10")
    assert lookup_key(answer.client_secret) == pushed.event.lookup
    hasher = SecretHasher(4)
    try:
        assert await hasher.verify(answer.client_secret, pushed.event.hash)
    finally:
        hasher.close()
