"""The per-process cache of authenticated callers (server/domain/caller_cache.py), on a real
store: bounded in size, never holding an unknown token, emptied by a write that may take power
away and kept by one that cannot. Its bound across processes is tested with two processes in
tests/test_scale_out.py."""

from pathlib import Path

import pytest

from server.domain.access import Access
from server.domain.caller_cache import CALLER_CACHE_TTL_S, CallerCache
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher, token_hash
from server.domain.errors import Unauthenticated
from server.domain.ids import IdGenerator
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.token import AccessTokenRevoked
from server.events.user import UserDeactivated
from server.store.contract import CallerRecord, TokenRecord
from server.store.sqlite import SqliteStore


async def test_the_cache_is_bounded_and_holds_only_callers_that_authenticated(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'ms.db'}")
    cache = CallerCache(max_entries=3)
    store.observe_appends(cache.forget_if_power_changed)
    try:
        commands = Commands(store, SecretHasher(4), IdGenerator(), 3)
        admin = await commands.set_up_instance("org", "admin")
        assert admin is not None
        access = Access(store, cache=cache)
        for _ in range(20):  # made-up tokens: refused, and not kept
            with pytest.raises(Unauthenticated):
                await access.authenticate("made-up")
        assert len(cache) == 0
        principal = await access.authenticate(admin)
        assert len(cache) == 1
        admin_id = principal.user_id
        tokens = [
            (
                await commands.add_personal_access_token(
                    CallContext(principal, principal.org_id), admin_id, None
                )
            ).token
            for _ in range(5)
        ]
        for token in tokens:
            await access.authenticate(token)
        assert len(cache) == 3  # the oldest went
    finally:
        await store.close()


async def test_a_cached_caller_is_read_again_once_it_is_older_than_the_bound(tmp_path: Path) -> None:
    """The bound on other processes (docs/rotation.md: 1 s): an entry is used until it is CALLER_CACHE_TTL_S
    old on the cache's clock, then read from the store again. The clock is moved, not waited for
    (test_scale_out.py shows the same across two processes, with ten times the bound)."""
    raw = await SqliteStore.open(f"sqlite:///{tmp_path / 'ms.db'}")
    now = [1000.0]
    cache = CallerCache(monotonic=lambda: now[0])
    try:
        admin = await Commands(raw, SecretHasher(4), IdGenerator(), 3).set_up_instance("org", "admin")
        assert admin is not None
        await Access(raw, cache=cache).authenticate(admin)
        cached = token_hash(admin)
        assert cache.get(cached) is not None
        now[0] += CALLER_CACHE_TTL_S  # exactly the bound: still used
        assert cache.get(cached) is not None
        now[0] += 0.001  # past it: gone, to be read again
        assert cache.get(cached) is None
        assert len(cache) == 0
    finally:
        await raw.close()


def test_a_revoked_token_leaves_the_other_callers_cached() -> None:
    """Any client may revoke its own tokens, as often as it earns them: a revocation forgets that
    token's entry, not every caller's (which would turn the cache off for everyone). Any other
    write that may change power still empties it."""
    cache = CallerCache()

    def caller(token_id: str) -> CallerRecord:
        return CallerRecord(TokenRecord(token_id, "u", None, "s"), "o", None, {}, True)

    for token_id in ("t1", "t2", "t3"):
        cache.put(f"hash-{token_id}", caller(token_id))
    cache.forget_if_power_changed([NewEvent("t2", 2, "o", AccessTokenRevoked("u"))])
    assert [cache.get(f"hash-{t}") is not None for t in ("t1", "t2", "t3")] == [True, False, True]
    cache.forget_if_power_changed([NewEvent("u", 9, "o", UserDeactivated())])
    assert len(cache) == 0
