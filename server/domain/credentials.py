"""Client secrets and bearer tokens: made from a CSPRNG, shown once, stored only as hashes.

Client secrets are hashed with bcrypt. Its cost defaults to 4 (as in ZITADEL): a secret of 64
characters from 62 has 381 bits of entropy, so the work factor adds nothing against brute force,
while every token request pays it. Bearer tokens are looked up by their hash, so they are hashed
with SHA-256: with 256 random bits a slow hash buys nothing either.
"""

import asyncio
import hashlib
import secrets
import string

import bcrypt

SECRET_ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 64
TOKEN_BYTES = 32
BCRYPT_MAX_BYTES = 72
MIN_BCRYPT_COST = 4
MAX_BCRYPT_COST = 31


# The largest multiple of the alphabet's size that fits in a byte: bytes at or above it are
# dropped, so that `byte % 62` is uniform (no modulo bias, every character possible).
_UNBIASED_BELOW = 256 - 256 % len(SECRET_ALPHABET)


def new_client_secret() -> str:
    """64 characters of [A-Za-z0-9], uniform, from the OS's CSPRNG, in one or two reads of it
    (64 calls of secrets.choice cost a tenth of a whole AddSecret)."""
    chars: list[str] = []
    while len(chars) < SECRET_LENGTH:
        chars += [
            SECRET_ALPHABET[b % len(SECRET_ALPHABET)] for b in secrets.token_bytes(80) if b < _UNBIASED_BELOW
        ]
    return "".join(chars[:SECRET_LENGTH])


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class SecretHasher:
    """bcrypt at a configured cost, run off the event loop (bcrypt releases the GIL)."""

    def __init__(self, cost: int) -> None:
        self.cost = cost
        # Checked against when there is no hash to check (unknown client, no secret), so that a
        # failed authentication costs the same whatever the reason: no client enumeration.
        self._dummy_hash = self._hash(new_client_secret())

    async def hash(self, secret: str) -> str:
        return await asyncio.to_thread(self._hash, secret)

    def _hash(self, secret: str) -> str:
        return bcrypt.hashpw(secret.encode(), bcrypt.gensalt(self.cost)).decode("ascii")

    async def verify(self, secret: str, hashed: str | None) -> bool:
        """Whether secret matches hashed; with no hash, the same work and False."""
        return await asyncio.to_thread(self._verify, secret, hashed)

    def _verify(self, secret: str, hashed: str | None) -> bool:
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
