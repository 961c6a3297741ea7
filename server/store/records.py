"""Rows of the read models decoded into records, every column by its name."""

import base64
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from server.actor import Actor
from server.audit.chain import ACTOR_FIELDS
from server.events.base import StoredEvent, decode_payload
from server.events.org import SecretPolicySet
from server.store.codecs import decode_roles, from_micros
from server.store.contract import (
    USER_STATE_ACTIVE,
    AppKeyRecord,
    AppRecord,
    AuditedEvent,
    CallerRecord,
    FederatedCredentialRecord,
    GrantRecord,
    MachineKeyRecord,
    MetadataRecord,
    OrgRecord,
    PatRecord,
    ProjectRecord,
    ProjectRoleRecord,
    RevocationReportCount,
    SecretRecord,
    TokenRecord,
    TrustedIssuerRecord,
    UserRecord,
    WebKeyRecord,
)

Row = Mapping[str, Any]


def moment(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def stored_event(r: Row) -> StoredEvent:
    return StoredEvent(
        aggregate_id=r["aggregate_id"],
        sequence=r["sequence"],
        resource_owner=r["resource_owner"],
        event=decode_payload(r["event_type"], r["payload"]),
        created_at=from_micros(r["created_at"]),
        actor=actor(r),
    )


def audited_event(r: Row) -> AuditedEvent:
    return AuditedEvent(int(r["position"]), stored_event(r), r["chain_hash"], r["head_hash"])


def actor(r: Row) -> Actor:
    """The actor columns of an event's row (migration 16)."""
    return Actor(*(r[column] for column in ACTOR_FIELDS))


def user_record(r: Row) -> UserRecord:
    return UserRecord(
        id=r["id"],
        org_id=r["org_id"],
        user_name=r["user_name"],
        type=r["type"],
        sequence=r["sequence"],
        created_at=from_micros(r["created_at"]),
        changed_at=from_micros(r["changed_at"]),
        state=r["state"],
        secrets_live_until=moment(r["secrets_live_until"]),
        name=r["name"],
        description=r["description"],
        display_name=r["display_name"],
        email=r["email"],
        user_name_key=r["user_name_key"],
        access_token_type=r["access_token_type"],
    )


def secret_record(r: Row) -> SecretRecord | None:
    """The secret columns of a row (statements.SECRET_COLUMNS); None where a join found none."""
    if r["secret_id"] is None:
        return None
    return SecretRecord(
        secret_id=r["secret_id"],
        user_id=r["secret_user_id"],
        lookup=r["secret_lookup"],
        hash=r["secret_hash"],
        description=r["secret_description"],
        created_at=from_micros(r["secret_created_at"]),
        expires_at=moment(r["secret_expires_at"]),
        last_used_at=moment(r["secret_last_used_at"]),
    )


def secret_policy(r: Row) -> SecretPolicySet:
    return SecretPolicySet(
        max_lifetime=r["max_lifetime"],
        default_lifetime=r["default_lifetime"],
        max_secrets_per_user=r["max_secrets_per_user"],
        max_grace_period=r["max_grace_period"],
        max_key_lifetime=r["max_key_lifetime"],
        max_keys_per_user=r["max_keys_per_user"],
    )


def org_record(r: Row) -> OrgRecord:
    return OrgRecord(
        r["id"], r["name"], r["sequence"], from_micros(r["created_at"]), from_micros(r["changed_at"])
    )


def pat_record(r: Row) -> PatRecord:
    return PatRecord(
        r["token_id"], moment(r["created_at"]), moment(r["expires_at"]), moment(r["last_used_at"])
    )


def caller_record(rows: Sequence[Row]) -> CallerRecord:
    """From one row per membership of the token's user (one row, with no member, for none)."""
    r = rows[0]
    token = TokenRecord(
        r["token_id"],
        r["user_id"],
        moment(r["expires_at"]),
        r["secret_id"],
        moment(r["last_used_at"]),
        key_id=r["key_id"],
        credential_id=r["credential_id"],
    )
    roles = {row["member_org_id"]: decode_roles(row["member_roles"]) for row in rows if row["member_org_id"]}
    if r["credential_id"] is not None:  # a federated credential does not expire
        live_until = datetime.max.replace(tzinfo=UTC) if r["live_credential_id"] is not None else None
    elif r["key_id"] is not None:
        live_until = from_micros(r["key_live_until"]) if r["live_key_id"] is not None else None
    else:
        live_until = from_micros(r["secret_live_until"]) if r["live_secret_id"] is not None else None
    return CallerRecord(token, r["user_org_id"], live_until, roles, r["user_state"] == USER_STATE_ACTIVE)


def failure_counts(rows: Sequence[Row]) -> dict[str, tuple[int, int]]:
    """Per failure key: how many failures, and the oldest of them."""
    return {r["failure_key"]: (int(r["failures"]), int(r["oldest"])) for r in rows}


def revocation_report_count(r: Row) -> RevocationReportCount:
    return RevocationReportCount(
        int(r["hour_start"]), r["source"], int(r["reports"]), int(r["candidates"]), int(r["revoked"])
    )


def machine_key_record(r: Row) -> MachineKeyRecord:
    return MachineKeyRecord(
        r["key_id"],
        r["user_id"],
        r["public_key"],
        r["key_type"],
        from_micros(r["created_at"]),
        moment(r["expires_at"]),
        moment(r["last_used_at"]),
    )


def project_record(r: Row) -> ProjectRecord:
    return ProjectRecord(
        r["id"],
        r["org_id"],
        r["name"],
        r["sequence"],
        from_micros(r["created_at"]),
        from_micros(r["changed_at"]),
    )


def project_role_record(r: Row) -> ProjectRoleRecord:
    return ProjectRoleRecord(
        r["project_id"],
        r["role_key"],
        r["display_name"],
        r["role_group"],
        r["sequence"],
        from_micros(r["created_at"]),
    )


def app_record(r: Row) -> AppRecord:
    return AppRecord(
        app_id=r["app_id"],
        project_id=r["project_id"],
        org_id=r["org_id"],
        name=r["name"],
        client_id=r["client_id"],
        auth_method=r["auth_method"],
        secret_lookup=r["secret_lookup"],
        secret_hash=r["secret_hash"],
        sequence=r["sequence"],
        created_at=from_micros(r["created_at"]),
        changed_at=from_micros(r["changed_at"]),
    )


def app_key_record(r: Row) -> AppKeyRecord:
    return AppKeyRecord(
        key_id=r["key_id"],
        app_id=r["app_id"],
        project_id=r["project_id"],
        public_key=r["public_key"],
        key_type=r["key_type"],
        created_at=from_micros(r["created_at"]),
        expires_at=moment(r["expires_at"]),
    )


def grant_record(r: Row) -> GrantRecord:
    return GrantRecord(
        grant_id=r["grant_id"],
        org_id=r["org_id"],
        user_id=r["user_id"],
        project_id=r["project_id"],
        role_keys=decode_roles(r["role_keys"]),
        sequence=r["sequence"],
        created_at=from_micros(r["created_at"]),
        changed_at=from_micros(r["changed_at"]),
    )


def trusted_issuer_record(r: Row) -> TrustedIssuerRecord:
    return TrustedIssuerRecord(
        r["issuer_id"],
        r["org_id"],
        r["issuer"],
        r["jwks_uri"],
        r["jwks"],
        r["description"],
        from_micros(r["created_at"]),
    )


def federated_credential_record(r: Row) -> FederatedCredentialRecord:
    return FederatedCredentialRecord(
        r["credential_id"],
        r["user_id"],
        r["issuer"],
        r["subject"],
        r["audience"],
        r["claim_name"],
        r["claim_value"],
        r["description"],
        from_micros(r["created_at"]),
        moment(r["last_used_at"]),
    )


def webkey_record(r: Row) -> WebKeyRecord:
    return WebKeyRecord(
        key_id=r["key_id"],
        algorithm=r["algorithm"],
        public_jwk=r["public_jwk"],
        private_key=r["private_key"],
        created_at=from_micros(r["created_at"]),
        signs_from=moment(r["signs_from"]),
    )


def metadata_record(r: Row) -> MetadataRecord:
    return MetadataRecord(
        user_id=r["user_id"],
        key=r["key"],
        value=base64.b64decode(r["value"]),
        sequence=r["sequence"],
        created_at=from_micros(r["created_at"]),
        changed_at=from_micros(r["changed_at"]),
    )
