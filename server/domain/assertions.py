"""Assertions signed with a key the service holds the public half of (RFC 7523 §3): what a
machine key signs for the JWT profile grant and private_key_jwt (jwt_profile.py), and what an API
application's key signs for private_key_jwt at the introspection endpoint (introspection.py). One
verification for both, so that both hold to the same rules:

- at most MAX_ASSERTION_LENGTH characters (the callers refuse longer ones before parsing);
- a compact JWS signed RS256 by an RSA key or ES256 by an EC P-256 key (no other algorithm: not
  `none`, not HS256 with the public key as its secret), verified by joserfc, by one of the keys
  the caller names (the key the `kid` names, or each live key of the client without one);
- `iss` and `sub` both the subject the caller names (a user id, a client id);
- `aud` one of the audiences the caller names (the issuer, with or without a slash, an endpoint);
- `exp` in the future and at most MAX_ASSERTION_LIFETIME ahead, `iat` present and not in the
  future, `nbf` (if present) passed, each with CLOCK_SKEW of tolerance;
- the key live (not expired);
- a `jti`, if it has one, never seen before on any process until the assertion expires (the
  store's replay table; first_use). ZITADEL's clients send none; their assertions are not
  replay-checked.
Every refusal is one None, after one signature verification at least: with no key to try, a
stand-in key's, so that an unknown key or client costs what a known one does.
"""

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.domain.machine_key_material import KEY_TYPE_EC, KEY_TYPE_RSA
from server.store.contract import Store

# The algorithm each kind of key signs with: the allow-list.
ALGORITHMS = {"RS256": KEY_TYPE_RSA, "ES256": KEY_TYPE_EC}
# How far clocks may disagree: exp may have passed by this much, iat and nbf be this far ahead.
CLOCK_SKEW = timedelta(seconds=60)
# The longest an assertion may be valid for, from now (ZITADEL's SDKs sign for one hour).
MAX_ASSERTION_LIFETIME = timedelta(hours=1)
MAX_CLAIM_LENGTH = 1000  # a jti, an iss, a sub: no client sends longer ones
MAX_AUDIENCES = 10
# Keys tried for an assertion that names no kid (the federation's platform tokens have the same cap).
MAX_KEYS_WITHOUT_KID = 3


class SigningKey(Protocol):
    """The public half of a key that signs assertions: a machine key, an application's key."""

    @property
    def key_id(self) -> str: ...

    @property
    def key_type(self) -> str: ...

    @property
    def public_key(self) -> str: ...

    def live(self, now: datetime) -> bool: ...


K = TypeVar("K", bound=SigningKey)


@dataclass(frozen=True)
class Verified(Generic[K]):
    """An assertion that holds by every rule but the replay check (first_use)."""

    key: K
    jti: str | None
    expires: datetime


class _Refused(Exception):
    """Why an assertion was refused: for no one's eyes but the code's (every refusal is one answer)."""


def _public_key(key: SigningKey) -> RSAKey | ECKey:
    if key.key_type == KEY_TYPE_RSA:
        return RSAKey.import_key(key.public_key)
    return ECKey.import_key(key.public_key)


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"{name} is not a number")
    return float(value)


def _text(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_LENGTH:
        raise _Refused(f"{name} is not a text")
    return value


def header_of(assertion: str) -> dict[str, Any] | None:
    """The JWS header, unverified (it names the key that verifies it); None if there is none."""
    try:
        return dict(jws.extract_compact(assertion.encode("ascii")).protected)
    except Exception:
        return None


class AssertionVerifier:
    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._clock = clock
        # What an assertion with no key to try is verified with, so that it costs the same work
        # as one whose key is known (and fails, as no one holds this key's private half).
        stand_in = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        self._stand_in = RSAKey.import_key(
            stand_in.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    def verified(
        self,
        assertion: str,
        header: dict[str, Any] | None,
        keys: Sequence[K],
        subject: str | None,
        audiences: Collection[str],
    ) -> Verified[K] | None:
        """The key among keys that signed assertion, if the assertion holds by every rule but the
        replay check and the key is live; None otherwise (also with no subject), after one
        signature verification at least."""
        named = header.get("alg") if header is not None else None
        alg = named if isinstance(named, str) and named in ALGORITHMS else ""
        candidates: list[K | None] = [k for k in keys if k.key_type == ALGORITHMS.get(alg)]
        if header is None or header.get("kid") is None:
            # Each candidate is a signature verification: without a kid, a few of the client's
            # keys, not every one its policy allows (ZITADEL's key files and SDKs name the kid).
            candidates = candidates[:MAX_KEYS_WITHOUT_KID]
        claims: dict[str, Any] | None = None
        signer: K | None = None
        for key in candidates or [None]:
            try:
                verifier = self._stand_in if key is None else _public_key(key)
                token = jwt.decode(assertion, verifier, algorithms=[alg or "RS256"])
            except Exception:  # noqa: S112 - a bad signature, or a text joserfc cannot read
                continue
            if key is not None:
                claims, signer = dict(token.claims), key
                break
        if claims is None or signer is None or subject is None:
            return None
        now = self._clock.now()
        try:
            expires = self._check_claims(claims, subject, audiences, now)
        except _Refused:
            return None
        if not signer.live(now):
            return None
        jti = claims.get("jti")
        if jti is not None and (not isinstance(jti, str) or not jti or len(jti) > MAX_CLAIM_LENGTH):
            return None
        return Verified(signer, jti, expires)

    async def first_use(self, verified: Verified[K]) -> bool:
        """False if the assertion's jti was seen before, on any process, while it could be
        accepted (a replay); an assertion without a jti is not checked."""
        if verified.jti is None:
            return True
        # Kept until the assertion can no longer be accepted: its exp, and the skew after.
        jti_key = hashlib.sha256(f"{verified.key.key_id}\0{verified.jti}".encode()).hexdigest()
        kept_until = to_micros(verified.expires + CLOCK_SKEW)
        return await self._store.remember_assertion(jti_key, kept_until, to_micros(self._clock.now()))

    @staticmethod
    def _check_claims(
        claims: dict[str, Any], subject: str, audiences: Collection[str], now: datetime
    ) -> datetime:
        """Refuses claims that break a rule; answers the assertion's expiry."""
        if _text(claims, "iss") != subject or _text(claims, "sub") != subject:
            raise _Refused("iss and sub must name the subject")
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not named or len(named) > MAX_AUDIENCES:
            raise _Refused("aud")
        if not any(isinstance(a, str) and a in audiences for a in named):
            raise _Refused("aud")
        stamp = now.timestamp()
        skew, longest = CLOCK_SKEW.total_seconds(), MAX_ASSERTION_LIFETIME.total_seconds()
        exp, iat = _number(claims, "exp"), _number(claims, "iat")
        nbf = _number(claims, "nbf") if "nbf" in claims else None
        if not stamp - skew < exp <= stamp + longest + skew:
            raise _Refused("exp")
        if iat > stamp + skew or (nbf is not None and nbf > stamp + skew):
            raise _Refused("iat or nbf")
        return datetime.fromtimestamp(exp, now.tzinfo)
