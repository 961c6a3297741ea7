"""The store contract every backend (SQLite, PostgreSQL) implements.

Events are the source of truth. Each append also updates the read models (users, organisations,
members, tokens) in the same transaction, so whatever a call wrote is visible to the next read and
a failed append leaves nothing behind. The users and organisations read models double as the
aggregates' snapshots: a command loads one row (with its sequence) instead of replaying every
event, so its cost stays flat however many events an aggregate has.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from server.events.base import NewEvent, StoredEvent
from server.events.org import SecretPolicySet

USER_TYPE_MACHINE = "machine"
USER_TYPE_HUMAN = "human"
USER_STATE_ACTIVE = "active"
USER_STATE_INACTIVE = "inactive"
ACCESS_TOKEN_BEARER = "bearer"
ACCESS_TOKEN_JWT = "jwt"


class StoreError(Exception):
    """Base of the errors a store raises; their messages carry no data of the caller's."""


class ConcurrencyConflict(StoreError):
    """Another writer appended the same (aggregate, sequence) first; nothing was written."""

    def __init__(self, key: str = "events") -> None:
        super().__init__(f"sequence taken: {key}")


class UniqueViolation(StoreError):
    """A read model's unique key (e.g. a user name) is taken; nothing was written."""

    def __init__(self, key: str) -> None:
        super().__init__(f"unique key taken: {key}")
        self.key = key


class StoreUnavailable(StoreError):
    """The database cannot be reached or answered with an operational error."""


@dataclass(frozen=True)
class OrgRecord:
    id: str
    name: str
    sequence: int
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class UserRecord:
    id: str
    org_id: str
    user_name: str
    type: str
    sequence: int
    created_at: datetime
    changed_at: datetime
    state: str  # USER_STATE_ACTIVE or USER_STATE_INACTIVE
    # Until when the user has a live client secret: None for none, datetime.max for one that
    # never expires.
    secrets_live_until: datetime | None = None
    # What it was created with: a machine user's name and description, a human user's display
    # name and email ("" where its kind has none).
    name: str = ""
    description: str = ""
    display_name: str = ""
    email: str = ""
    user_name_key: str = ""  # the user name as it is compared (user_names.user_name_key)
    access_token_type: str = "bearer"  # a machine user's: ACCESS_TOKEN_BEARER or ACCESS_TOKEN_JWT

    @property
    def active(self) -> bool:
        return self.state == USER_STATE_ACTIVE

    def has_live_secret(self, now: datetime) -> bool:
        return self.secrets_live_until is not None and self.secrets_live_until > now


@dataclass(frozen=True)
class UserName:
    """A user, by the name people see."""

    id: str
    org_id: str
    user_name: str


@dataclass(frozen=True)
class SecretRecord:
    """A client secret of a machine user. Its hash is for verification only: no answer carries it."""

    secret_id: str
    user_id: str
    lookup: str | None  # the lookup key of the msk_ format; None for a secret issued before it
    hash: str = field(repr=False)  # bcrypt
    description: str
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None  # noted at most once a minute

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class ClientRecord:
    """What the token endpoint needs about a client, read in one query: the user named by the
    client id, if there is one, and its secret with the presented lookup key (or its legacy
    secret), if any."""

    user: UserRecord | None
    secret: SecretRecord | None


@dataclass(frozen=True)
class TokenRecord:
    token_id: str
    user_id: str
    expires_at: datetime | None
    secret_id: str | None  # access tokens: the secret they were issued for; PATs: None
    last_used_at: datetime | None = None  # noted at most once a minute
    # Access tokens earned with a machine key: that key (their secret_id is None); else None.
    key_id: str | None = None
    # Access tokens earned by a workload's platform token: its federated credential; else None.
    credential_id: str | None = None


@dataclass(frozen=True)
class PatRecord:
    """A personal access token as it is listed: never its hash."""

    token_id: str
    created_at: datetime | None  # None only for a token made before migration 4 found no event
    expires_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class MemberRecord:
    """A membership of an organisation: the member's user (of any organisation), and its roles."""

    user: UserRecord
    roles: frozenset[str]


@dataclass(frozen=True)
class MachineKeyRecord:
    """A machine user's key: its public half only (PEM), which verifies its assertions."""

    key_id: str
    user_id: str
    public_key: str = field(repr=False)
    key_type: str  # "RSA" or "EC"
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None  # noted at most once a minute

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class TrustedIssuerRecord:
    """An issuer of workload tokens an organisation trusts (issue 34): its keys inline (jwks, a
    JWKS document of public keys) or fetched (from jwks_uri, or by discovery when that is "")."""

    issuer_id: str
    org_id: str
    issuer: str
    jwks_uri: str
    jwks: str
    description: str
    created_at: datetime


@dataclass(frozen=True)
class FederatedCredentialRecord:
    """What a workload's platform token must say to act as the machine user (issue 34)."""

    credential_id: str
    user_id: str
    issuer: str
    subject: str
    audience: str
    claim_name: str  # "" for no claim condition
    claim_value: str
    description: str
    created_at: datetime
    last_used_at: datetime | None  # noted at most once a minute


@dataclass(frozen=True)
class CallerRecord:
    """What authenticating a bearer token needs, read in one query."""

    token: TokenRecord
    org_id: str
    # An access token's secret (or machine key), if it still exists: until when it is live
    # (datetime.max: never expires). None when it was deleted, replaced or revoked, and for a PAT.
    secret_live_until: datetime | None
    roles: dict[str, frozenset[str]]
    user_active: bool


@dataclass(frozen=True)
class MetadataRecord:
    """One key of a user's metadata: its value as bytes (the store keeps them in base64)."""

    user_id: str
    key: str
    value: bytes
    sequence: int  # the user's sequence when the key was last set
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class ProjectRecord:
    """A project: also its aggregate's snapshot (sequence)."""

    id: str
    org_id: str
    name: str
    sequence: int
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class ProjectRoleRecord:
    project_id: str
    key: str
    display_name: str
    group: str
    sequence: int  # the project's sequence when the role was added
    created_at: datetime


@dataclass(frozen=True)
class AppRecord:
    """An API application of a project. Its secret's hash is for verification only: no answer
    carries it."""

    app_id: str
    project_id: str
    org_id: str
    name: str
    client_id: str
    auth_method: str
    secret_lookup: str
    secret_hash: str = field(repr=False)
    sequence: int  # the project's sequence when the application last changed
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class AppKeyRecord:
    """A key of an API application: its public half only (PEM), which verifies its assertions at
    the introspection endpoint."""

    key_id: str
    app_id: str
    project_id: str
    public_key: str = field(repr=False)
    key_type: str  # "RSA" or "EC"
    created_at: datetime
    expires_at: datetime | None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or self.expires_at > now


@dataclass(frozen=True)
class GrantRecord:
    """A user grant: role keys of one project given to one user. Also its aggregate's snapshot."""

    grant_id: str
    org_id: str
    user_id: str
    project_id: str
    role_keys: frozenset[str]
    sequence: int
    created_at: datetime
    changed_at: datetime


@dataclass(frozen=True)
class WebKeyRecord:
    """A signing key of JWT access tokens: its private key only as the store keeps it, encrypted."""

    key_id: str
    algorithm: str
    public_jwk: str
    private_key: str = field(repr=False)
    created_at: datetime
    signs_from: datetime | None  # None: published, not chosen to sign


@dataclass(frozen=True)
class RevocationReportCount:
    """The reports to the revocation endpoint from one source in one hour (SOURCE_OVERFLOW for
    the sources past the hour's cap): how many, their candidates, and the secrets they ended."""

    hour_start_micros: int
    source: str
    reports: int
    candidates: int
    revoked: int


# The source under which an hour's reports are counted once it has counted its cap of sources.
SOURCE_OVERFLOW = "*"
# No policy set: no limits, and the service's default number of secrets.
NO_SECRET_POLICY = SecretPolicySet(None, None, None, None, None, None)
# Told of every append's events once it has ended, whether it succeeded or failed.
AppendObserver = Callable[[Sequence[NewEvent]], None]


@dataclass(frozen=True)
class EventFilter:
    """Which events a list reads: of one organisation (resource_owner; None: every event of the
    instance), and "" or None for any value of each other filter."""

    resource_owner: str | None = None
    aggregate_type: str = ""
    aggregate_id: str = ""
    actor_user_id: str = ""
    event_type: str = ""
    since_micros: int | None = None  # created at or after
    until_micros: int | None = None  # created before


@dataclass(frozen=True)
class AuditedEvent:
    """An event as the audit reads it: with its position and hashes."""

    position: int
    event: StoredEvent
    chain_hash: str
    head_hash: str


class AuditStore(Protocol):
    """The audit's reads, which every store answers (the Store protocol includes them)."""

    async def audit_events(self, where: EventFilter, after_position: int, limit: int) -> list[AuditedEvent]:
        """At most limit events that match where, after after_position, in position order."""
        ...

    async def user_audit_events(
        self, user_id: str, org_id: str, before_position: int, limit: int
    ) -> list[AuditedEvent]:
        """At most limit events of the user (its aggregate and its access tokens') in its
        organisation org_id, before before_position, newest first."""
        ...

    async def chain_rows(self, after_position: int, limit: int) -> list[Mapping[str, Any]]:
        """At most limit events after after_position in position order, as rows of every column
        the chain covers (server/audit/chain.py reads them)."""
        ...

    async def chain_hash_before(self, aggregate_type: str, aggregate_id: str, sequence: int) -> str:
        """The chain_hash of the aggregate's event before sequence; "" for none."""
        ...

    async def audit_head(self) -> tuple[int, str]:
        """The last position given, and the instance-wide head hash there."""
        ...

    async def event_count(self) -> int:
        """How many events the store holds: those in the chain, and any that were put beside it."""
        ...


class Store(AuditStore, Protocol):
    async def append(self, events: Sequence[NewEvent], *, durable: bool = True) -> list[StoredEvent]:
        """Appends events atomically with one commit time, and updates the read models; returns
        once the commit is on disk. durable=False returns once it is committed, and the caller
        awaits durable() before it acknowledges anything (so that a writer's turn on an aggregate
        need not last until the disk has answered).

        Raises ConcurrencyConflict, UniqueViolation or StoreUnavailable; then nothing is written.
        Either way, each observer (observe_appends) is told of the events once it has ended.
        """
        ...

    def observe_appends(self, observer: AppendObserver) -> None:
        """Tells observer of every later append's events as it ends, also when it failed: a failed
        append may still have been committed (the database's answer was lost), so an observer that
        must not miss a write (the caller cache) treats a failure as a write."""
        ...

    async def durable(self) -> None:
        """Returns once every append this process committed so far is on disk."""
        ...

    async def events(self, aggregate_type: str, aggregate_id: str) -> list[StoredEvent]:
        """All events of one aggregate, in sequence order."""
        ...

    async def sequence_of(self, aggregate_type: str, aggregate_id: str) -> int:
        """The sequence of an aggregate's last event; 0 if it has none."""
        ...

    async def user(self, user_id: str) -> UserRecord | None: ...

    async def orgs_page(self, org_ids: Sequence[str] | None, after_id: str, limit: int) -> list[OrgRecord]:
        """At most limit organisations in the order of their ids, after after_id ("" for the first
        page): all of them (org_ids None), or those among org_ids."""
        ...

    async def users_page(
        self, org_id: str, prefix_key: str, user_type: str, after_key: str, limit: int
    ) -> list[UserRecord]:
        """At most limit users of the organisation, in the order of their user name keys, after
        after_key ("" for the first page): those whose key starts with prefix_key, of user_type
        or ("") any type."""
        ...

    async def user_by_name(self, user_name: str) -> UserRecord | None:
        """The user with this name, compared without case."""
        ...

    async def client(self, user_name: str, lookup: str | None) -> ClientRecord:
        """The user with this name, and its secret with this lookup key (None: its secret issued
        before the msk_ format), if it has one. It reads as much whether the user exists or not,
        and whether it has that secret or not: the time it takes tells neither."""
        ...

    async def secrets(self, user_id: str) -> list[SecretRecord]:
        """The user's client secrets, live and expired, oldest first."""
        ...

    async def secrets_by_lookup(self, lookups: Sequence[str]) -> list[SecretRecord]:
        """The secrets with these lookup keys, of any user."""
        ...

    async def touch_secret(self, secret_id: str, at_micros: int, unless_since_micros: int) -> None:
        """Notes that the secret was used at at_micros, unless a use was noted after unless_since_micros."""
        ...

    async def secret_policy(self, org_id: str) -> SecretPolicySet:
        """The organisation's secret policy as it was last set; NO_SECRET_POLICY if it never was.
        (Its read model holds exactly that event's fields: the domain reads them as SecretPolicy.)"""
        ...

    async def org(self, org_id: str) -> OrgRecord | None: ...

    async def any_org(self) -> bool: ...

    async def member_roles(self, org_id: str, user_id: str) -> frozenset[str] | None: ...

    async def roles_of(self, user_id: str) -> dict[str, frozenset[str]]:
        """The user's roles, by the organisations it is a member of."""
        ...

    async def members_page(
        self, org_id: str, user_id: str, after_id: str, limit: int, offset: int = 0
    ) -> list[MemberRecord]:
        """At most limit members of the organisation in the order of their user ids, after
        after_id ("" for the first page), the first offset of them left out: every member, or
        ("" for every one) the one of user_id."""
        ...

    async def member_count(self, org_id: str, user_id: str) -> int:
        """How many members members_page would list from the start, with no limit."""
        ...

    async def caller(self, token_hash: str) -> CallerRecord | None:
        """The token with this hash, its user's organisation and secret, and the user's roles."""
        ...

    async def sweep_expired_tokens(self, now_micros: int, limit: int) -> int:
        """Forgets at most limit access tokens and PATs that expired at or before now_micros, the
        oldest first; how many it found. They are refused already; their rows only pile up. The
        events that made them stay (each says when it expires). Safe on several processes at once."""
        ...

    async def look_alike_users(self) -> list[tuple[UserName, UserName]]:
        """Pairs of users whose names look alike (one TS #39 skeleton): the one that holds the
        skeleton, and one made before it was unique, that migration 15 kept."""
        ...

    async def active_iam_owners(self) -> set[str]:
        """The ids of the active users who hold IAM_OWNER in some organisation."""
        ...

    async def personal_access_tokens(self, user_id: str) -> list[PatRecord]:
        """The user's personal access tokens, oldest first."""
        ...

    async def touch_token(self, token_hash: str, at_micros: int, unless_since_micros: int) -> None:
        """Notes that the token was used at at_micros, unless a use was noted after unless_since_micros."""
        ...

    async def machine_keys(self, user_id: str) -> list[MachineKeyRecord]:
        """The user's machine keys, live and expired, oldest first."""
        ...

    async def machine_key(self, key_id: str) -> MachineKeyRecord | None:
        """The machine key with this id, of any user."""
        ...

    async def touch_machine_key(self, key_id: str, at_micros: int, unless_since_micros: int) -> None:
        """Notes that the key was used at at_micros, unless a use was noted after unless_since_micros."""
        ...

    async def trusted_issuers(self, org_id: str) -> list[TrustedIssuerRecord]:
        """The organisation's trusted issuers, oldest first."""
        ...

    async def federated_credentials(self, user_id: str) -> list[FederatedCredentialRecord]:
        """The user's federated credentials, oldest first."""
        ...

    async def touch_federated_credential(
        self, credential_id: str, at_micros: int, unless_since_micros: int
    ) -> None:
        """Notes that the credential was used at at_micros, unless a use was noted after
        unless_since_micros."""
        ...

    async def remember_assertion(self, jti_key: str, expires_micros: int, now_micros: int) -> bool:
        """Keeps an assertion's jti key until expires_micros; False if it is kept already (a
        replay), on any process. Forgets the keys that expired by now_micros."""
        ...

    async def record_failure(
        self, keys: tuple[str, str], at_micros: int, after_micros: int, forget_micros: int, count: int = 1
    ) -> dict[str, tuple[int, int]]:
        """Notes count failed authentications under both keys, and forgets failures up to
        forget_micros.

        Answers what recent_failures(keys, after_micros) answered just before, in one step with
        the note: of concurrent failures under one key (on any process), each sees all those
        noted before it, so a burst of them cannot all pass a limit together.
        """
        ...

    async def recent_failures(self, keys: tuple[str, str], after_micros: int) -> dict[str, tuple[int, int]]:
        """Per key with failures after after_micros: how many, and when the oldest of them was."""
        ...

    async def count_revocation_report(
        self, report: RevocationReportCount, max_sources: int, forget_before_micros: int
    ) -> None:
        """Adds report to the count of its hour and source: under
        SOURCE_OVERFLOW once the hour counts max_sources sources already (on PostgreSQL, writers
        racing for the last places may take a few more). Forgets hours that start before
        forget_before_micros."""
        ...

    async def revocation_report_counts(self) -> list[RevocationReportCount]:
        """Every count kept, by hour and source."""
        ...

    async def project(self, project_id: str) -> ProjectRecord | None: ...

    async def projects(self, org_id: str) -> list[ProjectRecord]:
        """The organisation's projects, in the order of their ids."""
        ...

    async def project_roles(self, project_id: str) -> list[ProjectRoleRecord]:
        """The project's roles, in the order of their keys."""
        ...

    async def apps(self, project_id: str) -> list[AppRecord]:
        """The project's applications, in the order of their ids."""
        ...

    async def app_by_client_id(self, client_id: str) -> AppRecord | None:
        """The application with this client id (compared exactly)."""
        ...

    async def app_keys(self, app_id: str) -> list[AppKeyRecord]:
        """The application's keys, live and expired, oldest first."""
        ...

    async def user_grant(self, grant_id: str) -> GrantRecord | None: ...

    async def user_grants(self, org_id: str) -> list[GrantRecord]:
        """The grants of the organisation's projects, in the order of their ids."""
        ...

    async def grants_of_user(self, user_id: str) -> list[GrantRecord]:
        """The user's grants, of any organisation's projects."""
        ...

    async def webkeys(self) -> list[WebKeyRecord]:
        """The signing keys not removed, oldest first."""

    async def user_metadata(self, user_id: str) -> list[MetadataRecord]:
        """The user's metadata, by key (code-point order)."""
        ...

    async def server_key(self, name: str) -> bytes:
        """The service's key of this name: 32 random bytes, made by the first process that asks,
        and the same for every process on the store from then on."""
        ...

    async def close(self) -> None: ...
