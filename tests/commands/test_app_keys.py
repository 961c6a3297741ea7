"""server/domain/commands/app_keys.py: the events each command on API applications' keys decides
on."""

import json
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from server.domain.commands.app_keys import IssuedAppKey
from server.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from server.domain.permissions import ORG_OWNER, PROJECT_OWNER
from server.domain.secret_policy import DEFAULT_MAX_KEYS
from server.events.base import Event, NewEvent
from server.events.org import SecretPolicySet
from server.events.project import (
    ApiAppAdded,
    ApiAppAuthMethodChanged,
    AppKeyAdded,
    AppKeyRemoved,
    AppRemoved,
    ProjectAdded,
    ProjectRemoved,
)
from server.store.sqlite import SqliteStore
from tests.commands.table import GENERATED, NOW, NOW_MICROS, ORG, Case, Refused, caller, org_added, run, table
from tests.commands.test_machine_keys import EC_PUBLIC, PRIVATE_PEM, RSA_PUBLIC, spki

OWNER = caller({ORG: frozenset({ORG_OWNER})})
PROJECT_OWNER_CALL = caller({ORG: frozenset({PROJECT_OWNER})})
DAY = timedelta(days=1)
DAY_MICROS = 86_400_000_000


def on_project(sequence: int, event: Event, project_id: str = "20", org_id: str = ORG) -> NewEvent:
    return NewEvent(project_id, sequence, org_id, event)


PROJECT = [org_added(), on_project(1, ProjectAdded("shop"))]
KEYED_APP = [*PROJECT, on_project(2, ApiAppAdded("30", "api", "30@20", "private_key_jwt", "", ""))]
BASIC_APP = [*PROJECT, on_project(2, ApiAppAdded("30", "api", "30@20", "basic", "lookup", "hash"))]
WITH_KEY = [*KEYED_APP, on_project(3, AppKeyAdded("30", "5", RSA_PUBLIC.decode(), "RSA", None))]


@table(
    Case(
        "an uploaded RSA public key",
        KEYED_APP,
        lambda c: c.add_app_key(PROJECT_OWNER_CALL, "20", "30", None, RSA_PUBLIC),
        [on_project(3, AppKeyAdded("30", "101", RSA_PUBLIC.decode(), "RSA", None))],
    ),
    Case(
        "an uploaded EC P-256 public key, with an expiry",
        KEYED_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", NOW + DAY, EC_PUBLIC),
        [on_project(3, AppKeyAdded("30", "101", EC_PUBLIC.decode(), "EC", NOW_MICROS + DAY_MICROS))],
    ),
    Case(
        "a generated key pair: its public half only",
        KEYED_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", None, b""),
        [on_project(3, AppKeyAdded("30", "101", GENERATED, "RSA", None))],
    ),
    Case(
        "no private key",
        KEYED_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", None, PRIVATE_PEM),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not one that expired already",
        KEYED_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", NOW, RSA_PUBLIC),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not beyond the organisation's max key lifetime",
        [*KEYED_APP, NewEvent(ORG, 2, ORG, SecretPolicySet(None, None, None, None, DAY_MICROS, None))],
        lambda c: c.add_app_key(OWNER, "20", "30", NOW + 2 * DAY, RSA_PUBLIC),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not for an application that authenticates with a secret",
        BASIC_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", None, RSA_PUBLIC),
        Refused(FailedPrecondition, "APP_AUTH_METHOD_NOT_PRIVATE_KEY_JWT"),
    ),
    Case(
        "for it, once its auth method changed",
        [*BASIC_APP, on_project(3, ApiAppAuthMethodChanged("30", "private_key_jwt"))],
        lambda c: c.add_app_key(OWNER, "20", "30", None, RSA_PUBLIC),
        [on_project(4, AppKeyAdded("30", "101", RSA_PUBLIC.decode(), "RSA", None))],
    ),
    Case(
        "not for an application of another project",
        [*KEYED_APP, on_project(1, ProjectAdded("other"), "21")],
        lambda c: c.add_app_key(OWNER, "21", "30", None, RSA_PUBLIC),
        Refused(NotFound, "APP_NOT_FOUND"),
    ),
    Case(
        "not for another organisation's project",
        [*KEYED_APP, org_added("2")],
        lambda c: c.add_app_key(caller({"2": frozenset({ORG_OWNER})}, "2"), "20", "30", None, RSA_PUBLIC),
        Refused(NotFound, "PROJECT_NOT_FOUND"),
    ),
    Case(
        "not beyond the limit of live keys",
        [
            *KEYED_APP,
            *(
                on_project(3 + i, AppKeyAdded("30", str(50 + i), RSA_PUBLIC.decode(), "RSA", None))
                for i in range(DEFAULT_MAX_KEYS)
            ),
        ],
        lambda c: c.add_app_key(OWNER, "20", "30", None, RSA_PUBLIC),
        Refused(FailedPrecondition, "KEY_LIMIT_REACHED"),
    ),
    Case(
        "remove one",
        WITH_KEY,
        lambda c: c.remove_app_key(OWNER, "20", "30", "5"),
        [on_project(4, AppKeyRemoved("30", "5"))],
    ),
    Case(
        "remove only a key of the application",
        WITH_KEY,
        lambda c: c.remove_app_key(OWNER, "20", "30", "6"),
        Refused(NotFound, "KEY_NOT_FOUND"),
    ),
)
async def test_app_key_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_a_generated_pair_answers_zitadels_application_key_file_once(tmp_path: Path) -> None:
    case = Case(
        "generate",
        KEYED_APP,
        lambda c: c.add_app_key(OWNER, "20", "30", None, b""),
        [on_project(3, AppKeyAdded("30", "101", GENERATED, "RSA", None))],
    )
    answer, [pushed] = await run(case, tmp_path)
    assert isinstance(answer, IssuedAppKey)
    assert answer.key_file is not None
    assert "PRIVATE" not in repr(answer)
    content = json.loads(answer.key_file)
    assert list(content) == ["type", "keyId", "key", "appId", "clientId"]  # ZITADEL's
    assert (content["type"], content["keyId"], content["appId"], content["clientId"]) == (
        "application",
        "101",
        "30",
        "30@20",
    )
    private = serialization.load_pem_private_key(content["key"].encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    assert isinstance(pushed.event, AppKeyAdded)
    assert pushed.event.public_key == spki(private).decode()


async def test_keys_end_with_their_application_and_their_project(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'k.db'}")
    try:
        await store.append(WITH_KEY)
        await store.append([on_project(4, ApiAppAdded("31", "b", "31@20", "private_key_jwt", "", ""))])
        await store.append([on_project(5, AppKeyAdded("31", "6", RSA_PUBLIC.decode(), "RSA", None))])
        assert [k.key_id for k in await store.app_keys("30")] == ["5"]
        await store.append([on_project(6, AppRemoved("30"))])
        assert await store.app_keys("30") == []
        assert [k.key_id for k in await store.app_keys("31")] == ["6"]
        await store.append([on_project(7, ProjectRemoved())])
        assert await store.app_keys("31") == []
    finally:
        await store.close()
