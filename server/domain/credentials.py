"""Client secrets and bearer tokens: made from a CSPRNG, shown once, stored only as hashes.

Client secrets (their format: secret_format.py) are hashed with bcrypt. Its cost defaults to 4 (as
in ZITADEL): a secret with 256 random bits or more cannot be brute-forced, so the work factor adds
nothing, while every token request pays it. Bearer tokens are looked up by their hash, so they are hashed
with SHA-256: with 256 random bits a slow hash buys nothing either.

The bcrypt work a caller without a credential can ask for (revocation reports) runs apart, on
SecretHasher.aside(): one thread of its own, at the lowest CPU priority, so that it can take
neither the token endpoint's threads nor, while the CPUs are busy, their time.
"""

import asyncio
import copy
import hashlib
import logging
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import bcrypt

from server.domain.secret_format import new_secret

TOKEN_BYTES = 32
BCRYPT_MAX_BYTES = 72
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31
LOWEST_PRIORITY = 19  # the highest nice value: CPU time only when no one else wants it
ASIDE_THREAD_NAME = "bcrypt-aside"

log = logging.getLogger("machinesecrets")
T = TypeVar("T")


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class Observer(Protocol):
    def observe(self, amount: float) -> None: ...


class _Unobserved:
    def observe(self, amount: float) -> None:
        pass


class SecretHasher:
    """bcrypt at a configured cost, run off the event loop (bcrypt releases the GIL), on the
    default executor's threads; aside() gives the same hasher on a thread of its own.

    timing: the observer of each operation's seconds by its name, "hash" or "verify" (the
    service's metrics histogram); none by default."""

    def __init__(self, cost: int, timing: Callable[[str], Observer] = lambda _: _Unobserved()) -> None:
        self.cost = cost
        self._hash_time, self._verify_time = timing("hash"), timing("verify")
        # Checked against when there is no hash to check (unknown client, no secret), so that a
        # failed authentication costs the same whatever the reason: no client enumeration.
        started = time.perf_counter()
        self._dummy_hash = self._hash(new_secret().text)
        # What one check costs here, about (a hash costs what a check does): for callers that
        # bound their queue in time, whatever the cost.
        self.check_seconds = time.perf_counter() - started
        self._executor: ThreadPoolExecutor | None = None  # None: the event loop's default executor

    def aside(self) -> "SecretHasher":
        """This hasher (its cost, its dummy hash, its timing), on one thread of its own at the
        lowest CPU priority: for work that anyone may ask for. One thread, so that such work
        takes one CPU at most, however many ask, and never a thread of the token endpoint; the
        lowest priority, so that while other work wants the CPUs it gets almost none of their
        time (bcrypt releases the GIL, so the thread competes for CPUs only, not for the
        interpreter). Its callers queue on it: they bound their own queue
        (server/domain/revocation.py). close() ends the thread."""
        twin = copy.copy(self)
        twin._executor = ThreadPoolExecutor(1, ASIDE_THREAD_NAME, initializer=lowest_priority)
        return twin

    def close(self) -> None:
        """Ends this hasher's own thread, if it has one, once its queued work is done."""
        if self._executor is not None:
            self._executor.shutdown(wait=False)

    async def _off_loop(self, work: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)

    async def hash(self, secret: str) -> str:
        return await self._off_loop(self._hash, secret)

    def _hash(self, secret: str) -> str:
        started = time.perf_counter()
        hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(self.cost)).decode("ascii")
        self._hash_time.observe(time.perf_counter() - started)
        return hashed

    async def verify(self, secret: str, hashed: str | None) -> bool:
        """Whether secret matches hashed; with no hash, the same work and False."""
        return await self._off_loop(self._verify, secret, hashed)

    def _verify(self, secret: str, hashed: str | None) -> bool:
        started = time.perf_counter()
        try:
            return self._check(secret, hashed)
        finally:
            self._verify_time.observe(time.perf_counter() - started)

    def _check(self, secret: str, hashed: str | None) -> bool:
        raw = secret.encode("utf-8", "surrogatepass")
        # bcrypt 5 raises on more than 72 bytes; no secret of ours is that long, but the check
        # still runs (on a prefix) so that a long secret is refused in the usual time.
        too_long = len(raw) > BCRYPT_MAX_BYTES
        matches = bcrypt.checkpw(raw[:BCRYPT_MAX_BYTES], (hashed or self._dummy_hash).encode("ascii"))
        return matches and hashed is not None and not too_long

    def needs_rehash(self, hashed: str) -> bool:
        """Whether a stored hash was made at another cost than the configured one."""
        return cost_of(hashed) != self.cost


def lowest_priority() -> None:
    """Lowers the calling thread's CPU priority to the lowest (a thread pool's initializer). Linux
    keeps a nice value per thread, and setpriority(PRIO_PROCESS, tid) sets that one thread's
    (setpriority(2), "BUGS"); elsewhere the same call would name a process, so there the thread
    keeps its priority."""
    if sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), LOWEST_PRIORITY)
    except OSError as error:  # a sandbox that forbids it: the one thread is still the bound
        name = threading.current_thread().name
        log.warning("cannot lower the priority of the %s thread: %s", name, error.strerror)


def cost_of(hashed: str) -> int:
    # A bcrypt hash reads $2b$<cost>$<salt and hash>.
    return int(hashed.split("$")[2])
