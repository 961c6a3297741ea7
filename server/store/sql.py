"""What the SQLite and PostgreSQL stores share: the append plan and every read.

A backend runs the plan in one transaction, and answers reads.
"""

import secrets
from collections.abc import Callable, Sequence
from typing import Any

from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.events.base import NewEvent, StoredEvent
from server.events.org import SecretPolicySet
from server.store import audit, records
from server.store import statements as sql
from server.store.codecs import Statement, decode_roles
from server.store.contract import (
    NO_SECRET_POLICY,
    AppendObserver,
    AppKeyRecord,
    AppRecord,
    AuditedEvent,
    CallerRecord,
    ClientRecord,
    ConcurrencyConflict,
    EventFilter,
    FederatedCredentialRecord,
    GrantRecord,
    MachineKeyRecord,
    MemberRecord,
    MetadataRecord,
    OrgRecord,
    PatRecord,
    ProjectRecord,
    ProjectRoleRecord,
    RevocationReportCount,
    SecretRecord,
    StoreError,
    TrustedIssuerRecord,
    UniqueViolation,
    UserName,
    UserRecord,
    WebKeyRecord,
)
from server.store.projections import projection
from server.store.records import Row
from server.user_names import find_key

SERVER_KEY_BYTES = 32

# Each statement of an append, with the error a unique violation of it means.
Plan = list[tuple[Statement, type[StoreError]]]


# A backend's statements that write one event with its position and hashes (server/store/audit.py).
ChainedInsert = Callable[[StoredEvent, int], list[Statement]]


def append_plan(stored: Sequence[StoredEvent], micros: int, chained_insert: ChainedInsert) -> Plan:
    # The primary key (aggregate, sequence) is the concurrency guard: a taken sequence means
    # another writer appended first. Met first, before any read model's unique key.
    plan: Plan = [
        (statement, ConcurrencyConflict) for event in stored for statement in chained_insert(event, micros)
    ]
    for event in stored:
        plan.extend((statement, UniqueViolation) for statement in projection(event, micros))
    return plan


class SqlStore:
    # The time events are written at: the service's clock (server/clock.py), set by the backend.
    clock: Clock = SYSTEM_CLOCK

    def __init__(self) -> None:
        self._append_observers: list[AppendObserver] = []

    def _chained_insert(self, event: StoredEvent, micros: int) -> list[Statement]:
        """The statements that write event with its position and hashes (server/store/audit.py)."""
        raise NotImplementedError

    async def _run(self, plan: Plan) -> None:
        """Runs every statement of plan in one transaction, or none: a unique violation raises the
        error the plan names for its statement; a database failure raises StoreUnavailable."""
        raise NotImplementedError

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        """Rows of a read, each a mapping by column name; raises StoreUnavailable when the
        database fails."""
        raise NotImplementedError

    async def _read_then_run(self, locks: tuple[str, ...], read: Statement | None, plan: Plan) -> list[Row]:
        """The rows of read, then plan, in one transaction that holds a lock on each name in locks
        until it ends: two such transactions that share a name run one after the other, on every
        process on the store."""
        raise NotImplementedError

    async def append(self, events: Sequence[NewEvent], *, durable: bool = True) -> list[StoredEvent]:
        created_at = self.clock.now()
        stored = [
            StoredEvent(e.aggregate_id, e.sequence, e.resource_owner, e.event, created_at, actor=e.actor)
            for e in events
        ]
        try:
            await self._run(append_plan(stored, to_micros(created_at), self._chained_insert))
            if durable:
                await self.durable()
        finally:  # a failed append may still have been committed (a lost answer): observers hear of it
            for observer in self._append_observers:
                observer(events)
        return stored

    def observe_appends(self, observer: AppendObserver) -> None:
        self._append_observers.append(observer)

    async def durable(self) -> None:
        """PostgreSQL's commit returns once it is on disk (synchronous_commit, on by default). The
        other writes (last use, failed authentications) need not be: a power loss that took them
        would take nothing a client holds."""

    async def events(self, aggregate_type: str, aggregate_id: str) -> list[StoredEvent]:
        return [
            records.stored_event(r)
            for r in await self._fetch(sql.SELECT_EVENTS, (aggregate_type, aggregate_id))
        ]

    async def sequence_of(self, aggregate_type: str, aggregate_id: str) -> int:
        rows = await self._fetch(sql.SELECT_SEQUENCE, (aggregate_type, aggregate_id))
        return int(rows[0]["sequence"])

    async def user(self, user_id: str) -> UserRecord | None:
        rows = await self._fetch(sql.SELECT_USER, (user_id,))
        return records.user_record(rows[0]) if rows else None

    async def users_page(
        self, org_id: str, prefix_key: str, user_type: str, after_key: str, limit: int
    ) -> list[UserRecord]:
        # Python compares str by code points, as both backends compare the keys.
        keys = (max(prefix_key, after_key), prefix_key + sql.PREFIX_END, after_key, limit)
        if user_type:
            rows = await self._fetch(sql.SELECT_USERS_OF_TYPE_PAGE, (org_id, user_type, *keys))
        else:
            rows = await self._fetch(sql.SELECT_USERS_PAGE, (org_id, *keys))
        return [records.user_record(row) for row in rows]

    async def user_by_name(self, user_name: str) -> UserRecord | None:
        if (key := find_key(user_name)) is None:
            return None  # no user can have it
        rows = await self._fetch(sql.SELECT_USER_BY_NAME, (key,))
        return records.user_record(rows[0]) if rows else None

    async def client(self, user_name: str, lookup: str | None) -> ClientRecord:
        # The caller chose the name: looked up by the mapping alone (user_names.find_key).
        if (key := find_key(user_name)) is None:
            return ClientRecord(None, None)  # no user can have it
        statement = sql.SELECT_LEGACY_CLIENT if lookup is None else sql.SELECT_CLIENT
        (row,) = await self._fetch(statement, (key, lookup))  # one row, whether the user exists or not
        user, secret = records.user_record(row), records.secret_record(row)
        # The row's user is the one asked for only if its key is the key asked for (else it is the
        # next one), and its secret was found by lookup key alone: it is only the user's if so.
        found = user.user_name_key == key
        theirs = found and secret is not None and secret.user_id == user.id
        return ClientRecord(user if found else None, secret if theirs else None)

    async def project(self, project_id: str) -> ProjectRecord | None:
        rows = await self._fetch(sql.SELECT_PROJECT, (project_id,))
        return records.project_record(rows[0]) if rows else None

    async def projects(self, org_id: str) -> list[ProjectRecord]:
        return [records.project_record(r) for r in await self._fetch(sql.SELECT_PROJECTS, (org_id,))]

    async def project_roles(self, project_id: str) -> list[ProjectRoleRecord]:
        rows = await self._fetch(sql.SELECT_PROJECT_ROLES, (project_id,))
        return [records.project_role_record(r) for r in rows]

    async def apps(self, project_id: str) -> list[AppRecord]:
        return [records.app_record(r) for r in await self._fetch(sql.SELECT_APPS, (project_id,))]

    async def app_by_client_id(self, client_id: str) -> AppRecord | None:
        rows = await self._fetch(sql.SELECT_APP_BY_CLIENT_ID, (client_id,))
        return records.app_record(rows[0]) if rows else None

    async def app_keys(self, app_id: str) -> list[AppKeyRecord]:
        return [records.app_key_record(r) for r in await self._fetch(sql.SELECT_APP_KEYS, (app_id,))]

    async def user_grant(self, grant_id: str) -> GrantRecord | None:
        rows = await self._fetch(sql.SELECT_GRANT, (grant_id,))
        return records.grant_record(rows[0]) if rows else None

    async def user_grants(self, org_id: str) -> list[GrantRecord]:
        return [records.grant_record(r) for r in await self._fetch(sql.SELECT_GRANTS_OF_ORG, (org_id,))]

    async def grants_of_user(self, user_id: str) -> list[GrantRecord]:
        return [records.grant_record(r) for r in await self._fetch(sql.SELECT_GRANTS_OF_USER, (user_id,))]

    async def webkeys(self) -> list[WebKeyRecord]:
        return [records.webkey_record(r) for r in await self._fetch(sql.SELECT_WEBKEYS, ())]

    async def user_metadata(self, user_id: str) -> list[MetadataRecord]:
        rows = await self._fetch(sql.SELECT_USER_METADATA, (user_id,))
        return sorted((records.metadata_record(r) for r in rows), key=lambda m: m.key)

    async def server_key(self, name: str) -> bytes:
        # Every process that starts offers a key; the first one written stays, and all read it.
        offer = secrets.token_hex(SERVER_KEY_BYTES)
        await self._run([((sql.INSERT_SERVER_KEY, (name, offer)), StoreError)])
        rows = await self._fetch(sql.SELECT_SERVER_KEY, (name,))
        return bytes.fromhex(rows[0]["key_hex"])

    async def secrets(self, user_id: str) -> list[SecretRecord]:
        rows = await self._fetch(sql.SELECT_SECRETS, (user_id,))
        return [secret for secret in map(records.secret_record, rows) if secret is not None]

    async def secrets_by_lookup(self, lookups: Sequence[str]) -> list[SecretRecord]:
        if not lookups:
            return []
        rows = await self._fetch(sql.select_secrets_by_lookup(len(lookups)), tuple(lookups))
        return [secret for secret in map(records.secret_record, rows) if secret is not None]

    async def touch_secret(self, secret_id: str, at_micros: int, unless_since_micros: int) -> None:
        await self._run([((sql.TOUCH_SECRET, (at_micros, secret_id, unless_since_micros)), StoreError)])

    async def secret_policy(self, org_id: str) -> SecretPolicySet:
        rows = await self._fetch(sql.SELECT_SECRET_POLICY, (org_id,))
        return records.secret_policy(rows[0]) if rows else NO_SECRET_POLICY

    async def org(self, org_id: str) -> OrgRecord | None:
        rows = await self._fetch(sql.SELECT_ORG, (org_id,))
        return records.org_record(rows[0]) if rows else None

    async def orgs_page(self, org_ids: Sequence[str] | None, after_id: str, limit: int) -> list[OrgRecord]:
        if org_ids is not None and not org_ids:
            return []
        among = () if org_ids is None else tuple(org_ids)
        statement = sql.select_orgs_page(None if org_ids is None else len(among))
        return [records.org_record(row) for row in await self._fetch(statement, (*among, after_id, limit))]

    async def any_org(self) -> bool:
        return bool(await self._fetch(sql.SELECT_ANY_ORG, ()))

    async def member_roles(self, org_id: str, user_id: str) -> frozenset[str] | None:
        rows = await self._fetch(sql.SELECT_MEMBER_ROLES, (org_id, user_id))
        return decode_roles(rows[0]["roles"]) if rows else None

    async def roles_of(self, user_id: str) -> dict[str, frozenset[str]]:
        rows = await self._fetch(sql.SELECT_ROLES_OF_USER, (user_id,))
        return {r["org_id"]: decode_roles(r["roles"]) for r in rows}

    async def members_page(
        self, org_id: str, user_id: str, after_id: str, limit: int, offset: int = 0
    ) -> list[MemberRecord]:
        parameters = (org_id, user_id, user_id, after_id, limit, offset)
        rows = await self._fetch(sql.SELECT_MEMBERS_PAGE, parameters)
        return [MemberRecord(records.user_record(r), decode_roles(r["member_roles"])) for r in rows]

    async def member_count(self, org_id: str, user_id: str) -> int:
        rows = await self._fetch(sql.SELECT_MEMBER_COUNT, (org_id, user_id, user_id, ""))
        return int(rows[0]["members"])

    async def active_iam_owners(self) -> set[str]:
        rows = await self._fetch(sql.SELECT_ACTIVE_IAM_OWNERS, (sql.IAM_OWNER_ROLE_PATTERN,))
        return {str(r["user_id"]) for r in rows}

    async def personal_access_tokens(self, user_id: str) -> list[PatRecord]:
        return [records.pat_record(r) for r in await self._fetch(sql.SELECT_PATS, (user_id,))]

    async def touch_token(self, token_hash: str, at_micros: int, unless_since_micros: int) -> None:
        await self._run([((sql.TOUCH_TOKEN, (at_micros, token_hash, unless_since_micros)), StoreError)])

    async def machine_keys(self, user_id: str) -> list[MachineKeyRecord]:
        return [records.machine_key_record(r) for r in await self._fetch(sql.SELECT_MACHINE_KEYS, (user_id,))]

    async def machine_key(self, key_id: str) -> MachineKeyRecord | None:
        rows = await self._fetch(sql.SELECT_MACHINE_KEY, (key_id,))
        return records.machine_key_record(rows[0]) if rows else None

    async def touch_machine_key(self, key_id: str, at_micros: int, unless_since_micros: int) -> None:
        await self._run([((sql.TOUCH_MACHINE_KEY, (at_micros, key_id, unless_since_micros)), StoreError)])

    async def trusted_issuers(self, org_id: str) -> list[TrustedIssuerRecord]:
        return [
            records.trusted_issuer_record(r) for r in await self._fetch(sql.SELECT_TRUSTED_ISSUERS, (org_id,))
        ]

    async def federated_credentials(self, user_id: str) -> list[FederatedCredentialRecord]:
        rows = await self._fetch(sql.SELECT_FEDERATED_CREDENTIALS, (user_id,))
        return [records.federated_credential_record(r) for r in rows]

    async def touch_federated_credential(
        self, credential_id: str, at_micros: int, unless_since_micros: int
    ) -> None:
        statement = (sql.TOUCH_FEDERATED_CREDENTIAL, (at_micros, credential_id, unless_since_micros))
        await self._run([(statement, StoreError)])

    async def remember_assertion(self, jti_key: str, expires_micros: int, now_micros: int) -> bool:
        # The primary key decides, on every process: of two inserts of one jti, one fails. The
        # insert comes first: PostgreSQL names the table of a violation, and the plan's first
        # statement on that table says what it means.
        try:
            await self._run(
                [
                    ((sql.INSERT_ASSERTION_JTI, (jti_key, expires_micros)), UniqueViolation),
                    ((sql.DELETE_EXPIRED_ASSERTION_JTIS, (now_micros,)), StoreError),
                ]
            )
        except UniqueViolation:
            return False
        return True

    async def record_failure(
        self, keys: tuple[str, str], at_micros: int, after_micros: int, forget_micros: int, count: int = 1
    ) -> dict[str, tuple[int, int]]:
        plan: Plan = [
            ((sql.INSERT_FAILURE, (key, at_micros)), StoreError) for key in keys for _ in range(count)
        ]
        plan.append(((sql.DELETE_FAILURES_BEFORE, (forget_micros,)), StoreError))
        rows = await self._read_then_run(keys, (sql.SELECT_FAILURES, (*keys, after_micros)), plan)
        return records.failure_counts(rows)

    async def recent_failures(self, keys: tuple[str, str], after_micros: int) -> dict[str, tuple[int, int]]:
        return records.failure_counts(await self._fetch(sql.SELECT_FAILURES, (*keys, after_micros)))

    async def count_revocation_report(
        self, report: RevocationReportCount, max_sources: int, forget_before_micros: int
    ) -> None:
        hour, source = report.hour_start_micros, report.source
        counts = (report.reports, report.candidates, report.revoked)
        plan: Plan = [
            (
                (sql.COUNT_REVOCATION_REPORT, (hour, hour, source, hour, max_sources, source, *counts)),
                StoreError,
            ),
            ((sql.FORGET_REVOCATION_REPORTS, (forget_before_micros,)), StoreError),
        ]
        await self._run(plan)

    async def revocation_report_counts(self) -> list[RevocationReportCount]:
        return [
            records.revocation_report_count(r) for r in await self._fetch(sql.SELECT_REVOCATION_REPORTS, ())
        ]

    async def sweep_expired_tokens(self, now_micros: int, limit: int) -> int:
        rows = await self._fetch(sql.SELECT_EXPIRED_TOKENS, (now_micros, limit))
        hashes = tuple(str(row["token_hash"]) for row in rows)
        if hashes:
            # Another process may sweep the same rows at once: its delete and this one each
            # remove what is still there, and neither fails.
            delete = sql.delete_expired_tokens(len(hashes))
            await self._run([((delete, (*hashes, now_micros)), StoreError)])
        return len(hashes)

    async def look_alike_users(self) -> list[tuple[UserName, UserName]]:
        rows = await self._fetch(sql.SELECT_LOOK_ALIKES, ())
        return [
            (
                UserName(r["holder_id"], r["holder_org_id"], r["holder_user_name"]),
                UserName(r["kept_id"], r["kept_org_id"], r["kept_user_name"]),
            )
            for r in rows
        ]

    async def caller(self, token_hash: str) -> CallerRecord | None:
        rows = await self._fetch(sql.SELECT_CALLER, (token_hash,))
        return records.caller_record(rows) if rows else None

    async def audit_events(self, where: EventFilter, after_position: int, limit: int) -> list[AuditedEvent]:
        statement, params = audit.select_events(where)
        rows = await self._fetch(statement, (*params, after_position, limit))
        return [records.audited_event(r) for r in rows]

    async def user_audit_events(
        self, user_id: str, org_id: str, before_position: int, limit: int
    ) -> list[AuditedEvent]:
        rows = await self._fetch(audit.SELECT_USER_EVENTS, (user_id, org_id, before_position, limit))
        return [records.audited_event(r) for r in rows]

    async def chain_rows(self, after_position: int, limit: int) -> list[Row]:
        return await self._fetch(audit.SELECT_CHAIN, (after_position, limit))

    async def chain_hash_before(self, aggregate_type: str, aggregate_id: str, sequence: int) -> str:
        rows = await self._fetch(audit.SELECT_CHAIN_BEFORE, (aggregate_type, aggregate_id, sequence))
        return str(rows[0]["chain_hash"]) if rows else ""

    async def audit_head(self) -> tuple[int, str]:
        rows = await self._fetch(audit.SELECT_HEAD, ())
        return (int(rows[0]["position"]), str(rows[0]["head_hash"])) if rows else (0, "")

    async def event_count(self) -> int:
        return int((await self._fetch(audit.COUNT_EVENTS, ()))[0]["events"])
