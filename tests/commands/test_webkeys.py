"""server/domain/commands/webkeys.py: the schedule of the signing keys, on a real SQLite store and
a clock the test moves: the first key signs at once; the next is published publish_wait before
the rotation is due, and signs from then; the one before stays published until every token it
signed has expired; an IAM_OWNER's activation waits for the JWKS caches; two schedules that run
at once append once."""

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from server.actor import SYSTEM
from server.domain.commands import Commands
from server.domain.commands.webkeys import SigningKeySettings
from server.domain.credentials import SecretHasher
from server.domain.errors import FailedPrecondition
from server.domain.ids import IdGenerator
from server.domain.signing_keys import KeyCipher, KeyRing, KeyTimes, MasterKeyMismatch, active_key, key_state
from server.events.webkey import WebKeyActivated, WebKeyAdded, WebKeyRemoved
from server.store.sqlite import SqliteStore
from tests.commands.table import NOW

TIMES = KeyTimes(jwks_ttl=timedelta(minutes=5), rotation=timedelta(days=30), token_ttl=timedelta(hours=12))


class MovingClock:
    def __init__(self) -> None:
        self.at = NOW

    def now(self) -> datetime:
        return self.at


@pytest.fixture
async def keys(tmp_path: Path) -> AsyncIterator[tuple[Commands, SqliteStore, MovingClock]]:
    clock = MovingClock()
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'keys.db'}", clock)
    commands = Commands(store, SecretHasher(4), IdGenerator(), write_attempts=3, clock=clock)
    commands.signing_keys = SigningKeySettings(KeyCipher(b"k" * 32), TIMES, "ES256")
    yield commands, store, clock
    await store.close()


async def test_the_schedule_makes_rotates_and_retires_keys(
    keys: tuple[Commands, SqliteStore, MovingClock],
) -> None:
    commands, store, clock = keys
    first = await commands.maintain_web_keys()
    assert [type(e.event) for e in first] == [WebKeyAdded, WebKeyActivated]
    assert isinstance(first[1].event, WebKeyActivated)
    assert all(e.actor == SYSTEM for e in first)
    assert await commands.maintain_web_keys() == []  # nothing to do until a rotation is near
    k1 = (await store.webkeys())[0]
    assert active_key(await store.webkeys(), clock.now()) == k1

    # publish_wait before the rotation is due, the next key is published and scheduled.
    clock.at = NOW + TIMES.rotation - TIMES.publish_wait
    second = await commands.maintain_web_keys()
    assert [type(e.event) for e in second] == [WebKeyAdded, WebKeyActivated]
    k2_id = second[0].event.key_id  # type: ignore[attr-defined]
    stored = await store.webkeys()
    assert {k.key_id for k in stored} == {k1.key_id, k2_id}
    k2 = next(k for k in stored if k.key_id == k2_id)
    assert k2.signs_from == NOW + TIMES.rotation
    assert key_state(k2, stored, clock.now()) == "initial"  # published, not signing yet
    assert await commands.maintain_web_keys() == []

    clock.at = NOW + TIMES.rotation
    stored = await store.webkeys()
    assert key_state(k2, stored, clock.now()) == "active"
    assert key_state(k1, stored, clock.now()) == "inactive"

    # The old key stays published until every token it signed has expired.
    clock.at = NOW + TIMES.rotation + TIMES.retire_after - timedelta(seconds=1)
    assert await commands.maintain_web_keys() == []
    clock.at = NOW + TIMES.rotation + TIMES.retire_after
    removed = await commands.maintain_web_keys()
    assert [e.event for e in removed] == [WebKeyRemoved(k1.key_id)]
    assert [k.key_id for k in await store.webkeys()] == [k2_id]


async def test_an_activation_waits_for_the_jwks_caches(
    keys: tuple[Commands, SqliteStore, MovingClock],
) -> None:
    commands, store, clock = keys
    await commands.maintain_web_keys()
    made = await commands.create_web_key(SYSTEM, "RS256")
    signs_from = await commands.activate_web_key(SYSTEM, made.key_id)
    assert signs_from == NOW + TIMES.publish_wait
    stored = await store.webkeys()
    assert key_state(next(k for k in stored if k.key_id == made.key_id), stored, clock.now()) == "initial"
    with pytest.raises(FailedPrecondition):  # scheduled: it must not leave a gap
        await commands.delete_web_key(SYSTEM, made.key_id)
    active = active_key(stored, clock.now())
    assert active is not None
    with pytest.raises(FailedPrecondition):
        await commands.delete_web_key(SYSTEM, active.key_id)
    # A key published long enough ago signs at once.
    later = await commands.create_web_key(SYSTEM, "ES256")
    clock.at = NOW + TIMES.publish_wait * 2
    assert await commands.activate_web_key(SYSTEM, later.key_id) == clock.at
    assert active_key(await store.webkeys(), clock.now()).key_id == later.key_id  # type: ignore[union-attr]


async def test_two_schedules_at_once_make_one_key(keys: tuple[Commands, SqliteStore, MovingClock]) -> None:
    commands, store, _ = keys
    results = await asyncio.gather(commands.maintain_web_keys(), commands.maintain_web_keys())
    assert sorted(len(r) for r in results) == [0, 2]
    assert len(await store.webkeys()) == 1


async def test_the_keyring_signs_with_the_active_key_and_publishes_public_halves(
    keys: tuple[Commands, SqliteStore, MovingClock],
) -> None:
    commands, store, clock = keys
    await commands.maintain_web_keys()
    ring = KeyRing(store, KeyCipher(b"k" * 32), TIMES, clock)
    signer = await ring.signer()
    assert signer is not None
    assert signer.algorithm == "ES256"
    assert b'"d"' not in await ring.jwks()
    # Under another master key: published, but never signing; at start, a refusal.
    wrong = KeyRing(store, KeyCipher(b"w" * 32), TIMES, clock)
    assert await wrong.signer() is None
    assert signer.key_id.encode() in await wrong.jwks()
    with pytest.raises(MasterKeyMismatch, match=signer.key_id):
        await wrong.load(strict=True)
