"""Events of workload identity federation (issue 34): the issuers an organisation trusts
(aggregate `org`), the federated credentials of its machine users (aggregate `user`), and the
access tokens a workload's platform token earned (aggregate `token`).

A trusted issuer carries the issuer as tokens name it (iss), where its keys are (jwks_uri, or
"" for discovery), or its keys inline (a JWKS document of public keys; "" when fetched). A
federated credential carries the issuer, the exact subject, the audience and an optional claim
that must equal a value. Neither holds anything secret.
"""

from dataclasses import dataclass, field

from server.events.base import AGGREGATE_ORG, AGGREGATE_TOKEN, AGGREGATE_USER, Event


@dataclass(frozen=True)
class TrustedIssuerAdded(
    Event, type_name="org.trusted_issuer.added", aggregate=AGGREGATE_ORG, changes_power=False
):
    """A new issuer: no token was earned through it yet."""

    issuer_id: str
    issuer: str
    jwks_uri: str
    jwks: str
    description: str


@dataclass(frozen=True)
class TrustedIssuerRemoved(
    Event, type_name="org.trusted_issuer.removed", aggregate=AGGREGATE_ORG, changes_power=True
):
    """Its tokens are refused from now on; the organisation's federated credentials that name it
    end with it, and the access tokens they earned, at once."""

    issuer_id: str


@dataclass(frozen=True)
class FederatedCredentialAdded(
    Event, type_name="user.machine.federated_credential.added", aggregate=AGGREGATE_USER, changes_power=False
):
    credential_id: str
    issuer: str
    subject: str
    audience: str
    claim_name: str  # "" for no claim condition
    claim_value: str
    description: str


@dataclass(frozen=True)
class FederatedCredentialRemoved(
    Event, type_name="user.machine.federated_credential.removed", aggregate=AGGREGATE_USER, changes_power=True
):
    """The credential, and every access token it earned, end at once."""

    credential_id: str


@dataclass(frozen=True)
class FederatedAccessTokenAdded(
    Event, type_name="token.access.federated.added", aggregate=AGGREGATE_TOKEN, changes_power=False
):
    """An access token earned by a workload's platform token: valid while the federated
    credential it matched (credential_id) exists. Its SHA-256, never the token."""

    user_id: str
    token_hash: str = field(repr=False)
    expires_at: int  # microseconds since the epoch
    scope: str
    credential_id: str
