"""What the SQLite and PostgreSQL stores share: the append plan and every read.

A backend runs the plan in one transaction, and answers reads.
"""

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from server.store import schema
from server.store.base import (
    USER_STATE_ACTIVE,
    CallerRecord,
    ConcurrencyConflict,
    OrgRecord,
    PatRecord,
    StoreError,
    TokenRecord,
    UniqueViolation,
    UserRecord,
)
from server.store.events import NewEvent, StoredEvent
from server.store.user_names import NotAUserName, user_name_key

# Each statement of an append, with the error a unique violation of it means.
Plan = list[tuple[schema.Statement, type[StoreError]]]


def append_plan(stored: Sequence[StoredEvent], micros: int) -> Plan:
    plan: Plan = []
    for event in stored:
        # The primary key (aggregate, sequence) is the concurrency guard: a taken sequence means
        # another writer appended first.
        plan.append(((schema.INSERT_EVENT, schema.event_row(event, micros)), ConcurrencyConflict))
        plan.extend((statement, UniqueViolation) for statement in schema.projection(event, micros))
    return plan


class SqlStore:
    async def _run(self, plan: Plan) -> None:
        """Runs every statement of plan in one transaction, or none: a unique violation raises the
        error the plan names for its statement; a database failure raises StoreUnavailable."""
        raise NotImplementedError

    async def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[Any]:
        """Rows of a read; raises StoreUnavailable when the database fails."""
        raise NotImplementedError

    async def _read_then_run(
        self, locks: tuple[str, ...], read: schema.Statement | None, plan: Plan
    ) -> list[Any]:
        """The rows of read, then plan, in one transaction that holds a lock on each name in locks
        until it ends: two such transactions that share a name run one after the other, on every
        process on the store."""
        raise NotImplementedError

    async def append(self, events: Sequence[NewEvent]) -> list[StoredEvent]:
        created_at = datetime.now(UTC)
        stored = [
            StoredEvent(
                e.aggregate_type, e.aggregate_id, e.sequence, e.type, e.resource_owner, e.payload, created_at
            )
            for e in events
        ]
        await self._run(append_plan(stored, schema.to_micros(created_at)))
        return stored

    async def events(self, aggregate_type: str, aggregate_id: str) -> list[StoredEvent]:
        rows = await self._fetch(schema.SELECT_EVENTS, (aggregate_type, aggregate_id))
        return [
            StoredEvent(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), schema.from_micros(r[6]))
            for r in rows
        ]

    async def sequence_of(self, aggregate_type: str, aggregate_id: str) -> int:
        rows = await self._fetch(schema.SELECT_SEQUENCE, (aggregate_type, aggregate_id))
        return int(rows[0][0])

    async def user(self, user_id: str) -> UserRecord | None:
        return schema.user_record(await self._fetch(schema.SELECT_USER, (user_id,)))

    async def user_by_name(self, user_name: str) -> UserRecord | None:
        try:
            key = user_name_key(user_name)
        except NotAUserName:
            return None  # no user can have it
        return schema.user_record(await self._fetch(schema.SELECT_USER_BY_NAME, (key,)))

    async def org(self, org_id: str) -> OrgRecord | None:
        rows = await self._fetch(schema.SELECT_ORG, (org_id,))
        if not rows:
            return None
        r = rows[0]
        return OrgRecord(r[0], r[1], r[2], schema.from_micros(r[3]), schema.from_micros(r[4]))

    async def any_org(self) -> bool:
        return bool(await self._fetch(schema.SELECT_ANY_ORG, ()))

    async def member_roles(self, org_id: str, user_id: str) -> frozenset[str] | None:
        rows = await self._fetch(schema.SELECT_MEMBER_ROLES, (org_id, user_id))
        return schema.decode_roles(rows[0][0]) if rows else None

    async def roles_of(self, user_id: str) -> dict[str, frozenset[str]]:
        rows = await self._fetch(schema.SELECT_ROLES_OF_USER, (user_id,))
        return {r[0]: schema.decode_roles(r[1]) for r in rows}

    async def active_iam_owners(self) -> set[str]:
        rows = await self._fetch(schema.SELECT_ACTIVE_IAM_OWNERS, (schema.IAM_OWNER_ROLE_PATTERN,))
        return {str(r[0]) for r in rows}

    async def personal_access_tokens(self, user_id: str) -> list[PatRecord]:
        rows = await self._fetch(schema.SELECT_PATS, (user_id,))
        return [PatRecord(r[0], _moment(r[1]), _moment(r[2]), _moment(r[3])) for r in rows]

    async def touch_token(self, token_hash: str, at_micros: int, unless_since_micros: int) -> None:
        await self._run([((schema.TOUCH_TOKEN, (at_micros, token_hash, unless_since_micros)), StoreError)])

    async def record_failure(
        self, keys: tuple[str, str], at_micros: int, after_micros: int, forget_micros: int
    ) -> dict[str, tuple[int, int]]:
        plan: Plan = [((schema.INSERT_FAILURE, (key, at_micros)), StoreError) for key in keys]
        plan.append(((schema.DELETE_FAILURES_BEFORE, (forget_micros,)), StoreError))
        rows = await self._read_then_run(keys, (schema.SELECT_FAILURES, (*keys, after_micros)), plan)
        return _failure_counts(rows)

    async def recent_failures(self, keys: tuple[str, str], after_micros: int) -> dict[str, tuple[int, int]]:
        return _failure_counts(await self._fetch(schema.SELECT_FAILURES, (*keys, after_micros)))

    async def caller(self, token_hash: str) -> CallerRecord | None:
        rows = await self._fetch(schema.SELECT_CALLER, (token_hash,))
        if not rows:
            return None
        r = rows[0]
        token = TokenRecord(r[0], r[1], _moment(r[2]), r[3], _moment(r[9]))
        roles = {row[6]: schema.decode_roles(row[7]) for row in rows if row[6] is not None}
        return CallerRecord(token, r[4], r[5], roles, r[8] == USER_STATE_ACTIVE)


def _failure_counts(rows: list[Any]) -> dict[str, tuple[int, int]]:
    return {r[0]: (int(r[1]), int(r[2])) for r in rows}


def _moment(micros: int | None) -> datetime | None:
    return None if micros is None else schema.from_micros(micros)
