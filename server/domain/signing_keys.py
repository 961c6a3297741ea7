"""The signing keys of JWT access tokens (ZITADEL's web keys): made, published, rotated and kept
at rest encrypted, the same for every process on one store.

At rest. A private key is stored only encrypted: AES-256-GCM (cryptography's AESGCM) under a key
derived from the master key (HKDF-SHA256, runtime/master_key.py), with a fresh 96-bit nonce, and
the key id as associated data, so that a ciphertext moved to another key's row does not decrypt.
The store, its backups and its events hold no private key in a readable form.

The life of a key, as times every process reads from the store (events/webkey.py):

    added        published in the JWKS (GET /oauth/v2/keys) at once
    signs_from   it signs from this moment; at least `publish_wait` after it was added: one JWKS
                 cache TTL (a resource server that fetched the JWKS just before the key was added
                 has fetched it again by then) plus one refresh interval (every process serves it
                 by then)
    superseded   when the next key's signs_from comes: it signs no more
    removed      once every token it signed has expired: superseded + the access tokens' lifetime
                 + one refresh interval; then it is no longer published

A moment, not a state change, decides which key signs: every process has read the next key's
signs_from long before it comes (it is at least a TTL ahead), so all switch at the same instant
without asking the store at that instant, and none signs with a key that is not yet published.

Decisions (make the first key; publish the next before a rotation is due; remove retired keys)
are appended to one instance-wide aggregate (WEBKEYS_ID) with the expected sequence, by whichever
process decides first; a process that decided at the same time finds its sequence taken, reads
what the other did, and decides again (it then has nothing to do). So two processes racing to
make or rotate keys agree, and there is always one signing key.
"""

import asyncio
import base64
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from server.clock import SYSTEM_CLOCK, Clock
from server.events.base import AGGREGATE_WEBKEYS, NewEvent
from server.store.contract import Store, WebKeyRecord

log = logging.getLogger("machinesecrets")

RS256 = "RS256"
ES256 = "ES256"
ALGORITHMS = (RS256, ES256)
RSA_BITS = 2048
NONCE_BYTES = 12  # AES-GCM's standard nonce
HKDF_INFO = b"machine-secrets webkeys v1"
# How often each process reads the keys again (and runs the schedule), at most.
MAX_REFRESH = timedelta(seconds=30)
JWT_TYPE = "at+jwt"  # RFC 9068 §2.1


class MasterKeyMismatch(Exception):
    """A stored private key does not decrypt under this master key."""


class KeyCipher:
    """Encrypts and decrypts private keys under the master key (the module's docstring says how)."""

    def __init__(self, master_key: bytes) -> None:
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(master_key)
        self._aead = AESGCM(derived)

    def __repr__(self) -> str:
        return "KeyCipher('***')"

    def encrypt(self, key_id: str, private_der: bytes) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, private_der, key_id.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def decrypt(self, key_id: str, stored: str) -> bytes:
        try:
            raw = base64.b64decode(stored, validate=True)
            return self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], key_id.encode())
        except (InvalidTag, ValueError):
            raise MasterKeyMismatch(key_id) from None


@dataclass(frozen=True)
class NewKeyMaterial:
    """A new key pair as the store keeps it: the public JWK and the encrypted private key."""

    key_id: str
    algorithm: str
    public_jwk: str
    private_key: str


def _generate(algorithm: str) -> bytes:
    """A new private key, as PKCS#8 DER (never written anywhere unencrypted)."""
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == ES256:
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _import(algorithm: str, private_der: bytes) -> RSAKey | ECKey:
    return ECKey.import_key(private_der) if algorithm == ES256 else RSAKey.import_key(private_der)


def public_jwk(key_id: str, algorithm: str, key: RSAKey | ECKey) -> dict[str, Any]:
    """The public half alone, as RFC 7517 publishes it (kid, alg, use)."""
    jwk = key.as_dict(private=False)
    return {
        **{k: v for k, v in jwk.items() if k not in ("kid", "alg", "use")},
        "kid": key_id,
        "alg": algorithm,
        "use": "sig",
    }


async def make_key(cipher: KeyCipher, key_id: str, algorithm: str) -> NewKeyMaterial:
    """A new key pair (off the event loop: an RSA key takes 50-130 ms of CPU), encrypted."""
    private_der = await asyncio.to_thread(_generate, algorithm)
    jwk = public_jwk(key_id, algorithm, _import(algorithm, private_der))
    return NewKeyMaterial(
        key_id, algorithm, json.dumps(jwk, sort_keys=True), cipher.encrypt(key_id, private_der)
    )


@dataclass(frozen=True)
class KeyTimes:
    """The schedule: how long a resource server may cache the JWKS, how long a key signs, how long
    a token lives, and how often each process reads the keys again."""

    jwks_ttl: timedelta
    rotation: timedelta
    token_ttl: timedelta

    @property
    def refresh(self) -> timedelta:
        return min(MAX_REFRESH, self.jwks_ttl / 2)

    @property
    def publish_wait(self) -> timedelta:
        """From a key's publication to the first moment it may sign."""
        return self.jwks_ttl + self.refresh

    @property
    def retire_after(self) -> timedelta:
        """From a key's last signature to its removal: every token it signed has expired."""
        return self.token_ttl + self.refresh


def _signs_from_now(keys: Iterable[WebKeyRecord], now: datetime) -> list[WebKeyRecord]:
    """The keys that have signed by now, in the order they took over."""
    started = [k for k in keys if k.signs_from is not None and k.signs_from <= now]
    return sorted(started, key=lambda k: (k.signs_from, k.created_at, k.key_id))


def active_key(keys: Iterable[WebKeyRecord], now: datetime) -> WebKeyRecord | None:
    """The key that signs now: of those whose moment has come, the latest to take over."""
    started = _signs_from_now(keys, now)
    return started[-1] if started else None


def key_state(key: WebKeyRecord, keys: Sequence[WebKeyRecord], now: datetime) -> str:
    """ZITADEL's web key states: "initial" (published, not signing yet), "active", "inactive"
    (it signed, and signs no more; still published)."""
    if key.signs_from is None or key.signs_from > now:
        return "initial"
    active = active_key(keys, now)
    return "active" if active is not None and active.key_id == key.key_id else "inactive"


def superseded_at(key: WebKeyRecord, keys: Sequence[WebKeyRecord], now: datetime) -> datetime | None:
    """When a key that signed stopped signing (the next one took over), if it has."""
    started = _signs_from_now(keys, now)
    ids = [k.key_id for k in started]
    if key.key_id not in ids or ids[-1] == key.key_id:
        return None
    return started[ids.index(key.key_id) + 1].signs_from


@dataclass(frozen=True)
class Signer:
    """The key that signs now: its id, algorithm and private key (decrypted, in memory only)."""

    key_id: str
    algorithm: str
    key: RSAKey | ECKey

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r}, algorithm={self.algorithm!r})"

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": self.algorithm, "kid": self.key_id, "typ": JWT_TYPE}
        return jwt.encode(header, claims, self.key, algorithms=[self.algorithm])


class KeyRing:
    """This process's copy of the keys: read from the store at most `refresh` ago (and at once
    after an append to the keys' aggregate that this process saw), the private keys decrypted once
    each, the JWKS document made once per change."""

    def __init__(self, store: Store, cipher: KeyCipher, times: KeyTimes, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._cipher = cipher
        self._times = times
        self._clock = clock
        self._keys: list[WebKeyRecord] = []
        self._private: dict[str, RSAKey | ECKey] = {}
        self._jwks = b'{"keys":[]}'
        self._read_at: datetime | None = None
        self._reading: asyncio.Lock | None = None
        self._undecryptable: set[str] = set()

    @property
    def times(self) -> KeyTimes:
        return self._times

    def forget_if_keys_changed(self, events: Sequence[NewEvent]) -> None:
        """An append observer: an append to the keys (made here) is read at the next use."""
        if any(e.aggregate_type == AGGREGATE_WEBKEYS for e in events):
            self._read_at = None

    async def load(self, strict: bool = False) -> list[WebKeyRecord]:
        """Reads the keys now and decrypts each private key once. One that does not decrypt
        (another process, with another master key, made it) is published but cannot sign here,
        and the log says so: strict (at start) raises MasterKeyMismatch instead, which stops the
        service, since this master key is not the store's."""
        keys = await self._store.webkeys()
        private: dict[str, RSAKey | ECKey] = {}
        for key in keys:
            if (known := self._private.get(key.key_id)) is not None:
                private[key.key_id] = known
                continue
            try:
                private[key.key_id] = _import(
                    key.algorithm, self._cipher.decrypt(key.key_id, key.private_key)
                )
            except MasterKeyMismatch:
                if strict:
                    raise
                if key.key_id not in self._undecryptable:
                    self._undecryptable.add(key.key_id)
                    log.error("signing key %s does not decrypt under this process's master key", key.key_id)
        published = [json.loads(k.public_jwk) for k in keys]
        self._keys, self._private = keys, private
        self._jwks = json.dumps({"keys": published}, separators=(",", ":")).encode()
        self._read_at = self._clock.now()
        return keys

    async def keys(self) -> list[WebKeyRecord]:
        now = self._clock.now()
        if self._read_at is None or now - self._read_at >= self._times.refresh or now < self._read_at:
            if self._reading is None:
                self._reading = asyncio.Lock()
            async with self._reading:  # one read for the calls that find the copy stale together
                if self._read_at is None or self._clock.now() - self._read_at >= self._times.refresh:
                    await self.load()
        return self._keys

    async def jwks(self) -> bytes:
        """The JWKS document: every key not removed, public halves only."""
        await self.keys()
        return self._jwks

    async def signer(self) -> Signer | None:
        """The key that signs now; None while there is none (before the first key is made)."""
        key = active_key(await self.keys(), self._clock.now())
        if key is None or key.key_id not in self._private:
            return None
        return Signer(key.key_id, key.algorithm, self._private[key.key_id])
