"""server/domain/commands/federation.py: the events each command of workload identity federation
decides on (issue 34)."""

import json
from pathlib import Path

from joserfc.jwk import RSAKey

from server.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from server.domain.permissions import ORG_OWNER, ORG_USER_MANAGER
from server.events.base import NewEvent
from server.events.federation import (
    FederatedCredentialAdded,
    FederatedCredentialRemoved,
    TrustedIssuerAdded,
    TrustedIssuerRemoved,
)
from tests.commands.table import (
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
ISSUER = "https://token.actions.githubusercontent.com"
SUBJECT = "repo:acme/app:ref:refs/heads/main"
PUBLIC_JWKS = json.dumps(
    {"keys": [RSAKey.generate_key(2048, parameters={"kid": "k1"}).as_dict(private=False)]}
)
PRIVATE_JWKS = json.dumps(
    {"keys": [RSAKey.generate_key(2048, parameters={"kid": "k1"}).as_dict(private=True)]}
)
TRUSTED = [org_added(), NewEvent(ORG, 2, ORG, TrustedIssuerAdded("5", ISSUER, "", "", "GitHub"))]
BOT = [*TRUSTED, machine_added("10")]
CREDENTIAL = FederatedCredentialAdded("7", ISSUER, SUBJECT, "https://secrets.example.com", "", "", "")


@table(
    Case(
        "trust an issuer found by discovery",
        [org_added()],
        lambda c: c.add_trusted_issuer(OWNER, ISSUER, "", "", "GitHub"),
        [NewEvent(ORG, 2, ORG, TrustedIssuerAdded("101", ISSUER, "", "", "GitHub"))],
    ),
    Case(
        "trust an issuer with inline keys",
        [org_added()],
        lambda c: c.add_trusted_issuer(OWNER, "https://k8s.example.com", "", PUBLIC_JWKS, ""),
        [NewEvent(ORG, 2, ORG, TrustedIssuerAdded("101", "https://k8s.example.com", "", PUBLIC_JWKS, ""))],
    ),
    Case(
        "not a private key inline",
        [org_added()],
        lambda c: c.add_trusted_issuer(OWNER, "https://k8s.example.com", "", PRIVATE_JWKS, ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not over plain http",
        [org_added()],
        lambda c: c.add_trusted_issuer(OWNER, "http://k8s.example.com", "", "", ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not a jwks uri over http",
        [org_added()],
        lambda c: c.add_trusted_issuer(OWNER, ISSUER, "http://169.254.169.254/jwks", "", ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "one issuer once",
        TRUSTED,
        lambda c: c.add_trusted_issuer(OWNER, ISSUER, "", "", ""),
        Refused(AlreadyExists, "TRUSTED_ISSUER_EXISTS"),
    ),
    Case(
        "stop trusting an issuer",
        TRUSTED,
        lambda c: c.remove_trusted_issuer(OWNER, "5"),
        [NewEvent(ORG, 3, ORG, TrustedIssuerRemoved("5"))],
    ),
    Case(
        "only an issuer the organisation trusts",
        TRUSTED,
        lambda c: c.remove_trusted_issuer(OWNER, "6"),
        Refused(NotFound, "TRUSTED_ISSUER_NOT_FOUND"),
    ),
    Case(
        "a federated credential",
        BOT,
        lambda c: c.add_federated_credential(OWNER, "10", ISSUER, SUBJECT, "https://secrets.example.com", ""),
        [
            on_user(
                "10",
                2,
                FederatedCredentialAdded("101", ISSUER, SUBJECT, "https://secrets.example.com", "", "", ""),
            )
        ],
    ),
    Case(
        "with a claim condition, by a user manager",
        BOT,
        lambda c: c.add_federated_credential(
            MANAGER, "10", ISSUER, SUBJECT, "aud", "", ("environment", "prod")
        ),
        [
            on_user(
                "10", 2, FederatedCredentialAdded("101", ISSUER, SUBJECT, "aud", "environment", "prod", "")
            )
        ],
    ),
    Case(
        "not of an issuer the organisation does not trust",
        BOT,
        lambda c: c.add_federated_credential(OWNER, "10", "https://other.example.com", SUBJECT, "aud", ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not a claim value without its name",
        BOT,
        lambda c: c.add_federated_credential(OWNER, "10", ISSUER, SUBJECT, "aud", "", ("", "prod")),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not a registered claim as the condition",
        BOT,
        lambda c: c.add_federated_credential(OWNER, "10", ISSUER, SUBJECT, "aud", "", ("sub", "x")),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "not for a human",
        [*TRUSTED, human_added("10")],
        lambda c: c.add_federated_credential(OWNER, "10", ISSUER, SUBJECT, "aud", ""),
        Refused(FailedPrecondition, "USER_NOT_MACHINE"),
    ),
    Case(
        "not for a user who holds more than the caller (the escalation rule)",
        [*BOT, member_added(3, "10", ORG_OWNER)],
        lambda c: c.add_federated_credential(MANAGER, "10", ISSUER, SUBJECT, "aud", ""),
        Refused(PermissionDenied, "PERMISSION_DENIED"),
    ),
    Case(
        "remove one",
        [*BOT, on_user("10", 2, CREDENTIAL)],
        lambda c: c.remove_federated_credential(OWNER, "10", "7"),
        [on_user("10", 3, FederatedCredentialRemoved("7"))],
    ),
    Case(
        "remove only a credential of the user",
        [*BOT, on_user("10", 2, CREDENTIAL)],
        lambda c: c.remove_federated_credential(OWNER, "10", "8"),
        Refused(NotFound, "FEDERATED_CREDENTIAL_NOT_FOUND"),
    ),
)
async def test_federation_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)
