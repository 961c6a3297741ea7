"""KeyPairs (server/domain/key_generation.py): pairs are made on a thread of their own at the lowest
CPU priority, at most at_once at a time with at most waiting callers queued; past that a caller is
refused at once, and one that goes away while it waits gives its place back. The same bound seen
through every transport: tests/test_machine_keys.py."""

import asyncio
import os
import sys
import threading

import pytest

from server.domain import machine_key_material as material
from server.domain.credentials import LOWEST_PRIORITY
from server.domain.errors import ResourceExhausted
from server.domain.key_generation import THREAD_NAME, KeyPairs


class HeldMaker:
    """A key pair maker that waits until released, and notes where it ran."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.threads: list[tuple[str, int]] = []
        self._pair = material.generate()

    def __call__(self) -> material.KeyPair:
        thread = threading.current_thread()
        priority = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.threads.append((thread.name, priority))
        assert self.release.wait(10)
        return self._pair


async def test_past_the_bound_a_caller_is_refused_at_once_and_the_queue_drains() -> None:
    maker = HeldMaker()
    pairs = KeyPairs(at_once=1, waiting=2, make=maker)
    try:
        held = [asyncio.create_task(pairs.new_pair()) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert pairs.under_way == 3
        with pytest.raises(ResourceExhausted) as refused:
            await pairs.new_pair()
        assert (refused.value.reason, refused.value.metadata) == ("KEY_GENERATION_BUSY", {"retry_after": "1"})
        maker.release.set()
        assert len({id(pair) for pair in await asyncio.gather(*held)}) == 1
        assert pairs.under_way == 0
        await pairs.new_pair()  # room again
        assert all(name.startswith(THREAD_NAME) for name, _ in maker.threads)
        if sys.platform == "linux":
            assert {priority for _, priority in maker.threads} == {LOWEST_PRIORITY}
    finally:
        maker.release.set()
        pairs.close()


async def test_a_caller_that_goes_away_while_it_waits_gives_its_place_back() -> None:
    maker = HeldMaker()
    pairs = KeyPairs(at_once=1, waiting=1, make=maker)
    try:
        making = asyncio.create_task(pairs.new_pair())
        waiting = asyncio.create_task(pairs.new_pair())
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert pairs.under_way == 1
        third = asyncio.create_task(pairs.new_pair())
        await asyncio.sleep(0.05)
        assert pairs.under_way == 2
        maker.release.set()
        await asyncio.gather(making, third)
        assert len(maker.threads) == 2  # the cancelled caller's pair was never made
    finally:
        maker.release.set()
        pairs.close()


async def test_the_default_maker_makes_a_real_rsa_pair() -> None:
    pairs = KeyPairs()
    try:
        pair = await pairs.new_pair()
        assert pair.public.key_type == material.KEY_TYPE_RSA
        assert "PRIVATE" in pair.private_pem
    finally:
        pairs.close()
