"""Reading the events back: who did what, from where (ListEvents, ListUserEvents, the stream).

Who reads what: an IAM_OWNER every event of the instance; anyone else with `audit.read` in an
organisation (ORG_OWNER) the events that organisation owns, whatever the filters say, so no filter
(another organisation's aggregate, one of its users as the actor) reaches beyond it. A user's
history needs `user.read` in the user's organisation.

What is shown of a payload is decided per event type by PAYLOAD_FIELDS: each field is shown in a
kind of its own, or left out. Fields that hold hashes (bcrypt, SHA-256) or lookup keys are never
shown, and neither is a field the table does not name (a field added later is hidden until it is
named here), nor any field of an event type the table does not know.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.actor import Actor
from server.clock import EPOCH, to_micros
from server.domain import paging
from server.domain import validation as check
from server.domain.errors import FieldViolation, user_not_found
from server.domain.permissions import CallContext
from server.events.federation import (
    FederatedAccessTokenAdded,
    FederatedCredentialAdded,
    FederatedCredentialRemoved,
    TrustedIssuerAdded,
    TrustedIssuerRemoved,
)
from server.events.grant import UserGrantAdded, UserGrantRemoved
from server.events.instance import IamOwnerLeft
from server.events.legacy import RevocationReceived
from server.events.machine_key import MachineKeyAdded, MachineKeyRemoved
from server.events.metadata import UserMetadataRemoved, UserMetadataSet
from server.events.org import OrgAdded, OrgMemberAdded, OrgMemberRemoved, SecretPolicySet
from server.events.project import (
    ApiAppAdded,
    ApiAppAuthMethodChanged,
    ApiAppSecretChanged,
    AppKeyAdded,
    AppKeyRemoved,
    AppRemoved,
    ProjectAdded,
    ProjectRemoved,
    ProjectRoleAdded,
    ProjectRoleRemoved,
)
from server.events.secret import (
    SecretAdded,
    SecretDeleted,
    SecretRehashed,
    SecretRevoked,
    SecretRotated,
    SecretSet,
    SecretsRemoved,
)
from server.events.token import AccessTokenAdded, AccessTokenRevoked, KeyAccessTokenAdded
from server.events.user import (
    HumanUserAdded,
    MachineChanged,
    MachineUserAdded,
    PatAdded,
    PatRemoved,
    UserDeactivated,
    UserReactivated,
    UserRemoved,
)
from server.events.webkey import WebKeyActivated, WebKeyAdded, WebKeyRemoved
from server.limits import MAX_ID_LENGTH
from server.store.contract import AuditedEvent, AuditStore, EventFilter

MAX_TYPE_LENGTH = 100  # an aggregate or event type: "user.machine.secret.rotated" is 27
# The newest first: ListUserEvents reads before a position, from past the last one.
PAST_THE_LAST = (1 << 63) - 1

ShownValue = str | list[str] | None
Shown = Callable[[Any], ShownValue]


def _text(value: Any) -> ShownValue:
    return None if value is None else str(value)


def _texts(values: Any) -> ShownValue:
    return [str(value) for value in values]


def _time(micros: Any) -> ShownValue:
    """Microseconds since the epoch as RFC 3339 text (null stays null: no expiry)."""
    if micros is None:
        return None
    return (EPOCH + timedelta(microseconds=int(micros))).isoformat().replace("+00:00", "Z")


def _duration(micros: Any) -> ShownValue:
    """Microseconds as a google.protobuf.Duration's JSON text, "<seconds>s"."""
    if micros is None:
        return None
    seconds = timedelta(microseconds=int(micros)).total_seconds()
    return f"{seconds:f}".rstrip("0").rstrip(".") + "s"


TEXT: Shown = _text
TEXTS: Shown = _texts
TIME: Shown = _time
DURATION: Shown = _duration
COUNT: Shown = _text  # an integer, as decimal text (as proto3 JSON writes an int64)
HIDDEN = None  # a hash or a lookup key: never shown

_NEW_SECRET: dict[str, Shown | None] = {
    "secret_id": TEXT,
    "hash": HIDDEN,  # bcrypt
    "lookup": HIDDEN,  # the msk_ format's lookup key: it finds the secret's hash
    "description": TEXT,
    "expires_at": TIME,
}
# Every event type this service writes or ever wrote (server/store/events.py), and each field of
# its payload: how it is shown, or HIDDEN. tests/test_audit.py holds it to the event types, and
# every answer to the hidden fields.
PAYLOAD_FIELDS: dict[str, dict[str, Shown | None]] = {
    OrgAdded.TYPE: {"name": TEXT},
    OrgMemberAdded.TYPE: {"user_id": TEXT, "roles": TEXTS},
    OrgMemberRemoved.TYPE: {"user_id": TEXT},
    SecretPolicySet.TYPE: {
        "max_lifetime": DURATION,
        "default_lifetime": DURATION,
        "max_grace_period": DURATION,
        "max_secrets_per_user": COUNT,
        "max_key_lifetime": DURATION,  # not in a policy set before machine keys
        "max_keys_per_user": COUNT,
    },
    MachineUserAdded.TYPE: {"user_name": TEXT, "name": TEXT, "description": TEXT},
    HumanUserAdded.TYPE: {"user_name": TEXT, "display_name": TEXT, "email": TEXT},
    SecretSet.TYPE: _NEW_SECRET,
    SecretAdded.TYPE: _NEW_SECRET,
    SecretRotated.TYPE: {**_NEW_SECRET, "others_expire_at": TIME},
    SecretDeleted.TYPE: {"secret_id": TEXT},
    SecretRevoked.TYPE: {"secret_id": TEXT, "source": TEXT},
    SecretsRemoved.TYPE: {},
    SecretRehashed.TYPE: {"secret_id": TEXT, "hash": HIDDEN},
    PatAdded.TYPE: {"token_id": TEXT, "token_hash": HIDDEN, "expires_at": TIME},
    PatRemoved.TYPE: {"token_id": TEXT},
    UserDeactivated.TYPE: {},
    UserReactivated.TYPE: {},
    UserRemoved.TYPE: {},
    ProjectAdded.TYPE: {"name": TEXT},
    ProjectRemoved.TYPE: {},
    ProjectRoleAdded.TYPE: {"role_key": TEXT, "display_name": TEXT, "group": TEXT},
    ProjectRoleRemoved.TYPE: {"role_key": TEXT},
    # An application's secret is a credential of the project: its hash and lookup key are hidden.
    ApiAppAdded.TYPE: {
        "app_id": TEXT,
        "name": TEXT,
        "client_id": TEXT,
        "auth_method": TEXT,
        "secret_lookup": HIDDEN,
        "secret_hash": HIDDEN,
    },
    ApiAppSecretChanged.TYPE: {"app_id": TEXT, "secret_lookup": HIDDEN, "secret_hash": HIDDEN},
    ApiAppAuthMethodChanged.TYPE: {"app_id": TEXT, "auth_method": TEXT},
    AppRemoved.TYPE: {"app_id": TEXT},
    # An application's key, as a machine key: which key, not the key.
    AppKeyAdded.TYPE: {
        "app_id": TEXT,
        "key_id": TEXT,
        "public_key": HIDDEN,
        "key_type": TEXT,
        "expires_at": TIME,
    },
    AppKeyRemoved.TYPE: {"app_id": TEXT, "key_id": TEXT},
    UserGrantAdded.TYPE: {"user_id": TEXT, "project_id": TEXT, "role_keys": TEXTS},
    UserGrantRemoved.TYPE: {},
    AccessTokenAdded.TYPE: {
        "user_id": TEXT,
        "token_hash": HIDDEN,  # SHA-256 of the token: it authenticates whoever holds the token
        "expires_at": TIME,
        "scope": TEXT,
        "secret_id": TEXT,
        "secret_sequence": COUNT,  # before migration 6, instead of secret_id
    },
    KeyAccessTokenAdded.TYPE: {
        "user_id": TEXT,
        "token_hash": HIDDEN,
        "expires_at": TIME,
        "scope": TEXT,
        "key_id": TEXT,
    },
    AccessTokenRevoked.TYPE: {"user_id": TEXT},
    # A user's metadata: what the caller set, which anyone who may read the user may list.
    UserMetadataSet.TYPE: {"key": TEXT, "value": TEXT},  # base64
    UserMetadataRemoved.TYPE: {"key": TEXT},
    # A public key is no secret, but it is key material: the audit shows which key, not the key.
    MachineKeyAdded.TYPE: {"key_id": TEXT, "public_key": HIDDEN, "key_type": TEXT, "expires_at": TIME},
    MachineKeyRemoved.TYPE: {"key_id": TEXT},
    # Workload identity federation (issue 34): nothing in these is secret but a token's hash; the
    # inline JWKS is public key material, shown as whether there is one, like a machine key.
    TrustedIssuerAdded.TYPE: {
        "issuer_id": TEXT,
        "issuer": TEXT,
        "jwks_uri": TEXT,
        "jwks": HIDDEN,
        "description": TEXT,
    },
    TrustedIssuerRemoved.TYPE: {"issuer_id": TEXT},
    FederatedCredentialAdded.TYPE: {
        "credential_id": TEXT,
        "issuer": TEXT,
        "subject": TEXT,
        "audience": TEXT,
        "claim_name": TEXT,
        "claim_value": TEXT,
        "description": TEXT,
    },
    FederatedCredentialRemoved.TYPE: {"credential_id": TEXT},
    FederatedAccessTokenAdded.TYPE: {
        "user_id": TEXT,
        "token_hash": HIDDEN,
        "expires_at": TIME,
        "scope": TEXT,
        "credential_id": TEXT,
    },
    IamOwnerLeft.TYPE: {"user_id": TEXT},
    MachineChanged.TYPE: {"name": TEXT, "description": TEXT, "access_token_type": TEXT},
    # A signing key's private half is encrypted, and hidden all the same; its public half is
    # served at /oauth/v2/keys.
    WebKeyAdded.TYPE: {"key_id": TEXT, "algorithm": TEXT, "public_jwk": HIDDEN, "private_key": HIDDEN},
    WebKeyActivated.TYPE: {"key_id": TEXT, "signs_from": TIME},
    WebKeyRemoved.TYPE: {"key_id": TEXT},
    RevocationReceived.TYPE: {"source": TEXT, "candidates": COUNT},  # none left (migration 11)
}


def shown_payload(event_type: str, payload: Mapping[str, Any]) -> dict[str, ShownValue]:
    """What a reader sees of a payload: the fields PAYLOAD_FIELDS shows for its type."""
    fields = PAYLOAD_FIELDS.get(event_type, {})
    return {
        name: show(payload[name]) for name, show in fields.items() if show is not None and name in payload
    }


@dataclass(frozen=True)
class EventView:
    """An event as a reader sees it: its payload as shown_payload shows it."""

    position: int
    aggregate_type: str
    aggregate_id: str
    sequence: int
    event_type: str
    resource_owner: str
    created_at: datetime
    payload: dict[str, ShownValue]
    actor: Actor


def view(audited: AuditedEvent) -> EventView:
    event = audited.event
    return EventView(
        audited.position,
        event.aggregate_type,
        event.aggregate_id,
        event.sequence,
        event.type,
        event.resource_owner,
        event.created_at,
        shown_payload(event.type, event.event.payload()),
        event.actor,
    )


@dataclass(frozen=True)
class EventQuery:
    """ListEvents' filters, as a caller gives them ("" and None: any)."""

    aggregate_type: str = ""
    aggregate_id: str = ""
    actor_user_id: str = ""
    event_type: str = ""
    since: datetime | None = None
    until: datetime | None = None
    after_position: int = 0


class AuditQueries:
    def __init__(self, store: AuditStore, page_tokens: paging.PageTokens) -> None:
        self._store = store
        self._pages = page_tokens

    async def events(
        self, ctx: CallContext, query: EventQuery, size: int, token: str
    ) -> tuple[list[EventView], str]:
        """A page of the events the caller may read that match query, in position order, and the
        token of the next page ("" after the last)."""
        violations = paging.check_page_size("page_size", size) + _check(query)
        # An IAM_OWNER reads the instance's events; anyone else its context organisation's.
        owner = None if ctx.principal.is_iam_owner else ctx.org_id
        since = None if query.since is None else to_micros(query.since)
        until = None if query.until is None else to_micros(query.until)
        key = (
            "events",
            "*" if owner is None else owner,
            query.aggregate_type,
            query.aggregate_id,
            query.actor_user_id,
            query.event_type,
            str(since),
            str(until),
            str(query.after_position),
        )
        after, bad_token = self._pages.resume_after("page_token", token, key)
        check.raise_if_any(violations + bad_token)
        where = EventFilter(
            owner,
            query.aggregate_type,
            query.aggregate_id,
            query.actor_user_id,
            query.event_type,
            since,
            until,
        )
        start = int(after) if after else query.after_position
        found = await self._store.audit_events(where, start, paging.page_size(size) + 1)
        page, next_token = self._pages.cut(found, size, key, lambda e: str(e.position))
        return [view(e) for e in page], next_token

    async def user_events(
        self, ctx: CallContext, user_id: str, size: int, token: str
    ) -> tuple[list[EventView], str]:
        """A page of a user's history, newest first: its events and its access tokens', in the
        context organisation. A user of another organisation is as absent as one that never was;
        a removed one still has its history."""
        violations = check.check_id("user_id", user_id) + paging.check_page_size("page_size", size)
        key = ("user-events", ctx.org_id, user_id)
        before, bad_token = self._pages.resume_after("page_token", token, key)
        check.raise_if_any(violations + bad_token)
        start = int(before) if before else PAST_THE_LAST
        found = await self._store.user_audit_events(user_id, ctx.org_id, start, paging.page_size(size) + 1)
        if not found and not before:
            raise user_not_found()  # every user has its first event, in its organisation
        page, next_token = self._pages.cut(found, size, key, lambda e: str(e.position))
        return [view(e) for e in page], next_token


def _check(query: EventQuery) -> list[FieldViolation]:
    violations = check.check_text(
        "aggregate_type", query.aggregate_type, required=False, limit=MAX_TYPE_LENGTH
    )
    violations += check.check_text("aggregate_id", query.aggregate_id, required=False, limit=MAX_ID_LENGTH)
    if query.aggregate_id and not query.aggregate_type:
        violations.append(FieldViolation("aggregate_id", "needs aggregate_type"))
    if query.actor_user_id:
        violations += check.check_id("actor_user_id", query.actor_user_id)
    violations += check.check_text("event_type", query.event_type, required=False, limit=MAX_TYPE_LENGTH)
    if query.since is not None and query.until is not None and query.until <= query.since:
        violations.append(FieldViolation("until", "must be after since"))
    if query.after_position < 0:
        violations.append(FieldViolation("after_position", "must not be negative"))
    return violations
