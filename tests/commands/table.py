"""The commands' tests as tables, in the style of ZITADEL's command tests (expectFilter: the events
found; expectPush: the events appended): each Case gives the events the store holds, the command,
and the events it must append, or the error it must raise with nothing written.

On a real SQLite store, and no transport: the given events are appended through the store (so its
read models hold what the command reads), and what the command appends is seen by an observer of
the store's appends (Store.observe_appends). Ids and time are fixed, so that the expected events
are written out whole; what is random (a secret's hash and lookup key, a token's hash) is
GENERATED.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.clock import to_micros
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.errors import DomainError
from server.domain.ids import IdGenerator
from server.domain.key_generation import KeyPairs
from server.domain.permissions import CallContext, Principal
from server.events.base import Event, NewEvent
from server.events.org import OrgAdded, OrgMemberAdded
from server.events.user import HumanUserAdded, MachineUserAdded
from server.store.sqlite import SqliteStore

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NOW_MICROS = to_micros(NOW)
ORG = "1"
CALLER = "9"  # the caller's own user id; the store need not hold it


class _Generated:
    """Equal to any text that is not empty: a value the command made at random."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and bool(other)

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "GENERATED"


GENERATED: Any = _Generated()


class FixedClock:
    def now(self) -> datetime:
        return NOW


class CountingIds(IdGenerator):
    """Ids 101, 102, ... in the order the command asks for them."""

    def __init__(self) -> None:
        super().__init__()
        self._next = 100

    def new_id(self) -> str:
        self._next += 1
        return str(self._next)


def caller(roles: dict[str, frozenset[str]], org_id: str = ORG) -> CallContext:
    """A call by a user of org_id holding roles (by organisation), acting in org_id."""
    return CallContext(Principal(CALLER, org_id, roles), org_id)


def org_added(org_id: str = ORG) -> NewEvent:
    return NewEvent(org_id, 1, org_id, OrgAdded(f"org {org_id}"))


def member_added(sequence: int, user_id: str, *roles: str, org_id: str = ORG) -> NewEvent:
    return NewEvent(org_id, sequence, org_id, OrgMemberAdded(user_id, tuple(sorted(roles))))


def machine_added(user_id: str, org_id: str = ORG) -> NewEvent:
    return NewEvent(user_id, 1, org_id, MachineUserAdded(f"bot{user_id}", "n", ""))


def human_added(user_id: str, org_id: str = ORG) -> NewEvent:
    return NewEvent(user_id, 1, org_id, HumanUserAdded(f"human{user_id}", "d", f"{user_id}@example.com"))


def on_user(user_id: str, sequence: int, event: Event, org_id: str = ORG) -> NewEvent:
    return NewEvent(user_id, sequence, org_id, event)


@dataclass(frozen=True)
class Refused:
    """The error a command must raise: its kind and its reason."""

    kind: type[DomainError]
    reason: str


@dataclass(frozen=True)
class Case:
    name: str
    given: Sequence[NewEvent]
    when: Callable[[Commands], Awaitable[object]]
    then: Sequence[NewEvent] | Refused


def table(*cases: Case) -> pytest.MarkDecorator:
    """The cases as pytest parameters, each named."""
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


async def run(case: Case, folder: Path, key_pairs: KeyPairs | None = None) -> tuple[object, list[NewEvent]]:
    """Runs one case on a new store in folder; answers what the command answered (None when it
    was refused), and the events it appended. key_pairs: where key pairs are made (the default's
    threads otherwise)."""
    store = await SqliteStore.open(f"sqlite:///{folder / 'commands.db'}")
    try:
        if case.given:
            await store.append(case.given)
        pushed: list[NewEvent] = []
        store.observe_appends(pushed.extend)
        commands = Commands(
            store, SecretHasher(4), CountingIds(), write_attempts=3, clock=FixedClock(), key_pairs=key_pairs
        )
        if isinstance(case.then, Refused):
            with pytest.raises(case.then.kind) as raised:
                await case.when(commands)
            assert raised.value.reason == case.then.reason
            for tried in pushed:  # a store may refuse an append (a name taken): none of it stays
                assert await store.sequence_of(tried.aggregate_type, tried.aggregate_id) < tried.sequence
            return None, []
        answer = await case.when(commands)
        assert pushed == list(case.then)
        return answer, pushed
    finally:
        await store.close()
