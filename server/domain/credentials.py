"""Client secrets and bearer tokens: made from a CSPRNG, shown once, stored only as hashes.

Client secrets (their format: secret_format.py) are hashed with bcrypt. Its cost defaults to 4 (as
in ZITADEL): a secret with 256 random bits or more cannot be brute-forced, so the work factor adds
nothing, while every token request pays it. Bearer tokens are looked up by their hash, so they are hashed
with SHA-256: with 256 random bits a slow hash buys nothing either.
"""

import asyncio
import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Protocol

import bcrypt

from server.domain.secret_format import new_secret

TOKEN_BYTES = 32
BCRYPT_MAX_BYTES = 72
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31


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
    """bcrypt at a configured cost, run off the event loop (bcrypt releases the GIL).

    timing: the observer of each operation's seconds by its name, "hash" or "verify" (the
    service's metrics histogram); none by default."""

    def __init__(self, cost: int, timing: Callable[[str], Observer] = lambda _: _Unobserved()) -> None:
        self.cost = cost
        self._hash_time, self._verify_time = timing("hash"), timing("verify")
        # Checked against when there is no hash to check (unknown client, no secret), so that a
        # failed authentication costs the same whatever the reason: no client enumeration.
        self._dummy_hash = self._hash(new_secret().text)

    async def hash(self, secret: str) -> str:
        return await asyncio.to_thread(self._hash, secret)

    def _hash(self, secret: str) -> str:
        started = time.perf_counter()
        hashed = bcrypt.hashpw(secret.encode(), bcrypt.gensalt(self.cost)).decode("ascii")
        self._hash_time.observe(time.perf_counter() - started)
        return hashed

    async def verify(self, secret: str, hashed: str | None) -> bool:
        """Whether secret matches hashed; with no hash, the same work and False."""
        return await asyncio.to_thread(self._verify, secret, hashed)

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


def cost_of(hashed: str) -> int:
    # A bcrypt hash reads $2b$<cost>$<salt and hash>.
    return int(hashed.split("$")[2])
