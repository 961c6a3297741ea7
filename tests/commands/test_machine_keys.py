"""server/domain/commands/machine_keys.py: the events each command on machine keys decides on."""

import json
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from server.domain.commands.machine_keys import IssuedKey
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from server.domain.permissions import ORG_OWNER, ORG_USER_MANAGER
from server.domain.secret_policy import DEFAULT_MAX_KEYS
from server.events.base import NewEvent
from server.events.machine_key import MachineKeyAdded, MachineKeyRemoved
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

OWNER = caller({ORG: frozenset({ORG_OWNER})})
MANAGER = caller({ORG: frozenset({ORG_USER_MANAGER})})
BOT = [org_added(), machine_added("10")]
DAY = timedelta(days=1)
DAY_MICROS = 86_400_000_000


def spki(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


RSA_PUBLIC = spki(rsa.generate_private_key(public_exponent=65537, key_size=2048))
EC_PUBLIC = spki(ec.generate_private_key(ec.SECP256R1()))
SMALL_RSA = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - refused on purpose
PRIVATE_PEM = SMALL_RSA.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)


def refused_key(public_key: bytes) -> Case:
    return Case(
        f"refused: {public_key[:30]!r}",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", None, public_key),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    )


@table(
    Case(
        "an uploaded RSA public key",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", None, RSA_PUBLIC),
        [on_user("10", 2, MachineKeyAdded("101", RSA_PUBLIC.decode(), "RSA", None))],
    ),
    Case(
        "an uploaded EC P-256 public key, with an expiry",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", NOW + DAY, EC_PUBLIC),
        [on_user("10", 2, MachineKeyAdded("101", EC_PUBLIC.decode(), "EC", NOW_MICROS + DAY_MICROS))],
    ),
    Case(
        "a generated key pair: its public half only",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", None, b""),
        [on_user("10", 2, MachineKeyAdded("101", GENERATED, "RSA", None))],
    ),
    refused_key(PRIVATE_PEM),
    refused_key(spki(SMALL_RSA)),
    refused_key(spki(ec.generate_private_key(ec.SECP384R1()))),
    refused_key(spki(ed25519.Ed25519PrivateKey.generate())),
    refused_key(b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"),
    refused_key(b"garbage"),
    Case(
        "not one that expired already",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", NOW, RSA_PUBLIC),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not beyond the organisation's max key lifetime",
        [*BOT, NewEvent(ORG, 2, ORG, SecretPolicySet(None, None, None, None, DAY_MICROS, None))],
        lambda c: c.add_machine_key(OWNER, "10", NOW + 2 * DAY, RSA_PUBLIC),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "with no expiry asked, the organisation's max key lifetime",
        [*BOT, NewEvent(ORG, 2, ORG, SecretPolicySet(None, None, None, None, DAY_MICROS, None))],
        lambda c: c.add_machine_key(OWNER, "10", None, RSA_PUBLIC),
        [on_user("10", 2, MachineKeyAdded("101", RSA_PUBLIC.decode(), "RSA", NOW_MICROS + DAY_MICROS))],
    ),
    Case(
        "for machine users only",
        [org_added(), human_added("10")],
        lambda c: c.add_machine_key(OWNER, "10", None, RSA_PUBLIC),
        Refused(FailedPrecondition, "USER_NOT_MACHINE"),
    ),
    Case(
        "not for a user who holds more than the caller (the escalation rule)",
        [*BOT, member_added(2, "10", ORG_OWNER)],
        lambda c: c.add_machine_key(MANAGER, "10", None, RSA_PUBLIC),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "not beyond the limit of live keys",
        [
            *BOT,
            *(
                on_user("10", 2 + i, MachineKeyAdded(str(50 + i), RSA_PUBLIC.decode(), "RSA", None))
                for i in range(DEFAULT_MAX_KEYS)
            ),
        ],
        lambda c: c.add_machine_key(OWNER, "10", None, RSA_PUBLIC),
        Refused(FailedPrecondition, "KEY_LIMIT_REACHED"),
    ),
    Case(
        "the secrets' lifetime does not bound keys",
        [*BOT, NewEvent(ORG, 2, ORG, SecretPolicySet(DAY_MICROS, None, None, None, None, None))],
        lambda c: c.add_machine_key(OWNER, "10", NOW + 2 * DAY, RSA_PUBLIC),
        [on_user("10", 2, MachineKeyAdded("101", RSA_PUBLIC.decode(), "RSA", NOW_MICROS + 2 * DAY_MICROS))],
    ),
    Case(
        "not beyond the organisation's limit of keys",
        [
            *BOT,
            NewEvent(ORG, 2, ORG, SecretPolicySet(None, None, None, None, None, 1)),
            on_user("10", 2, MachineKeyAdded("5", RSA_PUBLIC.decode(), "RSA", None)),
        ],
        lambda c: c.add_machine_key(OWNER, "10", None, RSA_PUBLIC),
        Refused(FailedPrecondition, "KEY_LIMIT_REACHED"),
    ),
    Case(
        "remove one",
        [*BOT, on_user("10", 2, MachineKeyAdded("5", RSA_PUBLIC.decode(), "RSA", None))],
        lambda c: c.remove_machine_key(OWNER, "10", "5"),
        [on_user("10", 3, MachineKeyRemoved("5"))],
    ),
    Case(
        "remove only a key of the user",
        [*BOT, on_user("10", 2, MachineKeyAdded("5", RSA_PUBLIC.decode(), "RSA", None))],
        lambda c: c.remove_machine_key(OWNER, "10", "6"),
        Refused(NotFound, "KEY_NOT_FOUND"),
    ),
)
async def test_machine_key_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_a_generated_pair_answers_zitadels_key_file_once_and_keeps_its_public_half(
    tmp_path: Path,
) -> None:
    case = Case(
        "generate",
        BOT,
        lambda c: c.add_machine_key(OWNER, "10", None, b""),
        [on_user("10", 2, MachineKeyAdded("101", GENERATED, "RSA", None))],
    )
    answer, [pushed] = await run(case, tmp_path)
    assert isinstance(answer, IssuedKey)
    assert answer.key_file is not None
    assert "***" in repr(answer)
    assert "PRIVATE" not in repr(answer)
    content = json.loads(answer.key_file)
    assert set(content) == {"type", "keyId", "key", "userId"}
    assert (content["type"], content["keyId"], content["userId"]) == ("serviceaccount", "101", "10")
    private = serialization.load_pem_private_key(content["key"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert private.key_size == 2048
    assert isinstance(pushed.event, MachineKeyAdded)
    assert pushed.event.public_key == spki(private).decode()
    assert "PRIVATE" not in pushed.event.public_key
