"""The typed events (server/events/) read and write exactly the payloads the store holds: every
event the fixtures of earlier schema versions hold decodes, losing nothing, and every type's
payload, as the commands write it, goes back to the same bytes."""

import contextlib
import json
import sqlite3
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

from server.events.base import (
    AGGREGATE_USER,
    Event,
    decode_payload,
    encode_payload,
    event_class,
    event_classes,
)
from server.events.legacy import (
    AccessTokenAddedBeforeSecretIds,
    SecretPolicySetBeforeKeys,
    SecretRehashedBeforeIds,
    SecretSetBeforeIds,
)
from server.events.secret import SecretSet
from server.store.migrations import MIGRATIONS
from tests.test_store_contract import REPORTS_OF_VERSION_10, ROWS_OF_VERSION, store_at

# Each stored type name, with a payload as the commands write it: compact JSON, keys sorted. The
# names are forever: none of these may go (a new event type may add its line).
WRITTEN = {
    "instance.iam_owner.left": '{"user_id":"10"}',
    "org.added": '{"name":"default"}',
    "org.member.added": '{"roles":["IAM_OWNER","ORG_OWNER"],"user_id":"10"}',
    "org.member.removed": '{"user_id":"10"}',
    "org.secret_policy.set": (
        '{"default_lifetime":null,"max_grace_period":3600000000,"max_key_lifetime":null,'
        '"max_keys_per_user":2,"max_lifetime":7776000000000,"max_secrets_per_user":3}'
    ),
    "revocation.received": '{"candidates":3,"source":"10.0.0.1"}',
    "token.access.added": (
        '{"expires_at":1700000000000000,"scope":"openid","secret_id":"71","token_hash":"ab12","user_id":"10"}'
    ),
    "user.deactivated": "{}",
    "user.human.added": '{"display_name":"Ada","email":"ada@example.com","user_name":"ada"}',
    "user.machine.added": '{"description":"","name":"n","user_name":"bot"}',
    "user.machine.secret.added": (
        '{"description":"ci","expires_at":null,"hash":"$2b$04$h","lookup":"abcd1234","secret_id":"71"}'
    ),
    "user.machine.secret.deleted": '{"secret_id":"71"}',
    "user.machine.secret.removed": "{}",
    "user.machine.secret.revoked": '{"secret_id":"71","source":"::1"}',
    "user.machine.secret.rotated": (
        '{"description":"","expires_at":1700000000000000,"hash":"$2b$04$h","lookup":"abcd1234",'
        '"others_expire_at":1690000000000000,"secret_id":"72"}'
    ),
    "user.machine.secret.set": (
        '{"description":"","expires_at":null,"hash":"$2b$04$h","lookup":"abcd1234","secret_id":"71"}'
    ),
    "user.machine.secret.updated": '{"hash":"$2b$10$h","secret_id":"71"}',
    "user.pat.added": '{"expires_at":null,"token_hash":"ab12","token_id":"5"}',
    "user.pat.removed": '{"token_id":"5"}',
    "user.reactivated": "{}",
    "user.removed": "{}",
    "user.machine.key.added": (
        '{"expires_at":null,"key_id":"72","key_type":"EC","public_key":"-----BEGIN PUBLIC KEY-----\\n"}'
    ),
    "user.machine.key.removed": '{"key_id":"72"}',
    "token.access.key.added": (
        '{"expires_at":1600000000000000,"key_id":"72","scope":"api","token_hash":"ab12","user_id":"10"}'
    ),
    "token.access.revoked": '{"user_id":"10"}',
    "user.metadata.set": '{"key":"tenant","value":"YWNtZQ=="}',
    "user.metadata.removed": '{"key":"tenant"}',
    "org.trusted_issuer.added": (
        '{"description":"lab","issuer":"https://oidc.example.com","issuer_id":"73","jwks":"","jwks_uri":""}'
    ),
    "org.trusted_issuer.removed": '{"issuer_id":"73"}',
    "user.machine.federated_credential.added": (
        '{"audience":"https://secrets.example.com","claim_name":"environment","claim_value":"prod",'
        '"credential_id":"74","description":"","issuer":"https://oidc.example.com",'
        '"subject":"system:serviceaccount:ci:deployer"}'
    ),
    "user.machine.federated_credential.removed": '{"credential_id":"74"}',
    "token.access.federated.added": (
        '{"credential_id":"74","expires_at":1600000000000000,"scope":"api","token_hash":"ab12","user_id":"10"}'
    ),
}
# Shapes written once and no longer, with the class each decodes to (the current one, where only a
# value differs).
EARLIER = [
    ("user.machine.secret.set", '{"hash":"$2b$04$a"}', SecretSetBeforeIds),
    ("user.machine.secret.updated", '{"hash":"$2b$10$a"}', SecretRehashedBeforeIds),
    (
        "token.access.added",
        '{"expires_at":1600000000000000,"scope":"","secret_sequence":4,"token_hash":"ab12","user_id":"10"}',
        AccessTokenAddedBeforeSecretIds,
    ),
    # A secret policy set before machine keys had rules of their own.
    (
        "org.secret_policy.set",
        '{"default_lifetime":null,"max_grace_period":3600000000,"max_lifetime":7776000000000,'
        '"max_secrets_per_user":3}',
        SecretPolicySetBeforeKeys,
    ),
    # A secret of the format before msk_ (no lookup key), with an id.
    (
        "user.machine.secret.set",
        '{"description":"","expires_at":null,"hash":"$2b$04$a","lookup":null,"secret_id":"71"}',
        SecretSet,
    ),
]


def test_no_stored_type_name_goes_away() -> None:
    assert set(WRITTEN) <= {cls.TYPE for cls in event_classes()}


@pytest.mark.parametrize("cls", event_classes(), ids=lambda cls: cls.TYPE)
def test_every_event_class_reads_back_what_it_writes(cls: type[Event]) -> None:
    """For a type added later too, with a value of each field's type: nothing is lost on the way."""
    examples: dict[object, object] = {
        str: "x",
        str | None: "y",
        int: 7,
        int | None: 8,
        tuple[str, ...]: ("A", "B"),
    }
    event = cls(**{f.name: examples[f.type] for f in fields(cls)})
    assert decode_payload(cls.TYPE, encode_payload(event)) == event


@pytest.mark.parametrize(("type_name", "text"), WRITTEN.items(), ids=list(WRITTEN))
def test_each_type_goes_back_to_the_same_bytes(type_name: str, text: str) -> None:
    event = decode_payload(type_name, text)
    assert type(event) is event_class(type_name)
    assert encode_payload(event) == text


@pytest.mark.parametrize(("type_name", "text", "shape"), EARLIER)
def test_earlier_shapes_decode_to_their_own_classes_and_back(
    type_name: str, text: str, shape: type[Event]
) -> None:
    event = decode_payload(type_name, text)
    assert type(event) is shape
    assert (event.TYPE, encode_payload(event)) == (type_name, text)


def fixture_events() -> list[tuple[str, str]]:
    """(type, payload) of every event the fixtures of earlier schema versions hold, read from a
    database each builds as test_store_contract.store_at does."""
    found = [(row[3], row[4]) for row in REPORTS_OF_VERSION_10]
    for version, statements in ROWS_OF_VERSION.items():
        with contextlib.closing(sqlite3.connect(":memory:")) as db:
            for _, steps in MIGRATIONS[:version]:
                for step in steps:
                    db.execute(step)
            for statement in statements:
                db.execute(statement)
            found += db.execute("SELECT event_type, payload FROM events ORDER BY rowid").fetchall()
    return found


@pytest.mark.parametrize(("type_name", "text"), fixture_events())
def test_every_event_of_an_earlier_version_decodes_and_loses_nothing(type_name: str, text: str) -> None:
    event = decode_payload(type_name, text)
    stored, again = json.loads(text), json.loads(encode_payload(event))
    assert {key: again[key] for key in stored} == stored  # every stored field, with its value


async def test_an_upgraded_store_reads_its_old_events_typed(tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        store = await store_at(stack, "sqlite", tmp_path, 1, ROWS_OF_VERSION[1])
        try:
            events = [e.event for e in await store.events(AGGREGATE_USER, "10")]
        finally:
            await store.close()
    assert [type(e).__name__ for e in events] == [
        "MachineUserAdded",
        "SecretSetBeforeIds",
        "PatAdded",
        "SecretSetBeforeIds",
    ]
    assert events[-1] == SecretSetBeforeIds("$2b$04$b")


def test_a_field_no_class_knows_is_refused_not_dropped() -> None:
    with pytest.raises((TypeError, ValueError)):
        decode_payload("org.added", '{"name":"o","motto":"x"}')
    with pytest.raises(ValueError, match="no event class"):
        decode_payload("org.renamed", "{}")


def test_an_event_class_must_say_whether_it_changes_power() -> None:
    """No default: an event type added later cannot be taken for harmless by leaving it out (and
    mypy refuses the class statement too)."""
    with pytest.raises(TypeError, match="changes_power"):

        @dataclass(frozen=True)
        class Forgetful(Event, type_name="test.forgetful", aggregate=AGGREGATE_USER):  # type: ignore[call-arg]
            pass

    with pytest.raises(TypeError, match="two event classes"):

        @dataclass(frozen=True)
        class Twin(Event, type_name="org.added", aggregate=AGGREGATE_USER, changes_power=False):
            pass
