"""Key pairs made for callers (AddMachineKey, AddKey without a public key): off the event loop, a
few at a time, and never more than a bounded queue of them.

An RSA 2048 key pair costs 50-130 ms of CPU (OpenSSL's search for primes; its time varies from
pair to pair). cryptography releases the GIL meanwhile, so a thread keeps the event loop free; but
a caller with a credential could still ask for pair after pair on many connections at once and
take the CPUs from everyone's token requests. So:

    at once   KEY_GENERATIONS_AT_ONCE pairs are made at once, on threads of their own at the lowest
              CPU priority (as revocation's bcrypt work, SecretHasher.aside): they take at most
              that many CPUs, and, while other work wants the CPUs, almost none of their time.
    waiting   KEY_GENERATIONS_WAITING more callers wait for a thread, in order of arrival: at
              most that many generations ahead of them (about a second on an idle CPU).
    past it   a call is refused at once, before any work: RESOURCE_EXHAUSTED with reason
              KEY_GENERATION_BUSY and a retry_after (429 with Retry-After over HTTP).

A caller that cannot wait uploads a public key instead (the service makes no pair then). A caller
that goes away while it waits gives its place back; one whose pair is being made does so when the
pair is done (the thread cannot be stopped), so at most KEY_GENERATIONS_AT_ONCE pairs more than
the bound are ever under way.

Counters, not locks: the event loop runs one thing at a time, so taking a place is atomic.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from server.domain import machine_key_material as material
from server.domain.credentials import lowest_priority
from server.domain.errors import ResourceExhausted

KEY_GENERATIONS_AT_ONCE = 1  # of the service's CPUs, at most one makes key pairs
KEY_GENERATIONS_WAITING = 8  # about a second of generations queued, at most
RETRY_AFTER_S = 1
THREAD_NAME = "key-generation"


def key_generation_busy() -> ResourceExhausted:
    return ResourceExhausted(
        "KEY_GENERATION_BUSY",
        "the service is making as many key pairs as it will at once; try again, or upload a public key",
        {"retry_after": str(RETRY_AFTER_S)},
    )


class KeyPairs:
    """Makes key pairs (machine_key_material.generate, or what make is) on at_once threads of
    its own, with at most waiting callers queued for them; close() ends the threads."""

    def __init__(
        self,
        at_once: int = KEY_GENERATIONS_AT_ONCE,
        waiting: int = KEY_GENERATIONS_WAITING,
        make: Callable[[], material.KeyPair] = material.generate,
    ) -> None:
        self._bound = at_once + waiting
        self._make = make
        self._under_way = 0  # made or waiting
        self._executor = ThreadPoolExecutor(at_once, THREAD_NAME, initializer=lowest_priority)

    @property
    def under_way(self) -> int:
        return self._under_way

    async def new_pair(self) -> material.KeyPair:
        """A new key pair; ResourceExhausted (KEY_GENERATION_BUSY) at once when the bound is full."""
        if self._under_way >= self._bound:
            raise key_generation_busy()
        self._under_way += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self._make)
        finally:
            self._under_way -= 1

    def close(self) -> None:
        """Ends the threads once the pairs under way are made."""
        self._executor.shutdown(wait=False, cancel_futures=True)
