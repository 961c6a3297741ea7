"""Assertions signed with a machine key (RFC 7523), as the domain sees them: the JWT profile grant
(§2.1: the assertion is the grant) and private_key_jwt client authentication (§2.2: the assertion
authenticates the client of a client-credentials grant). Either earns an access token, as a
client secret does, which lives while the key does.

What an assertion must be (§3):
- at most MAX_ASSERTION_LENGTH characters, refused before it is parsed;
- a compact JWS signed RS256 by an RSA key or ES256 by an EC P-256 key (no other algorithm: not
  `none`, not HS256 with the public key as its secret), verified by joserfc;
- `kid` the key's id (for private_key_jwt it may be left out: the client's keys are tried);
- `iss` and `sub` both the user's id (the grant, as ZITADEL's SDKs send them), or both the client
  id, its user name (private_key_jwt, as authlib's PrivateKeyJWT sends them);
- `aud` the issuer, as discovery gives it (or that with a slash, or the token endpoint's URL);
- `exp` in the future and at most MAX_ASSERTION_LIFETIME ahead, `iat` present and not in the
  future, `nbf` (if present) passed, each with CLOCK_SKEW of tolerance;
- a `jti`, if it has one, never seen before on any process until the assertion expires (the
  store's replay table). ZITADEL's SDKs send none; their assertions are not replay-checked.
The key must be live, its user an active machine user. Every failure is the same InvalidGrant
(or, authenticating a client, InvalidClient), after a signature verification either way, and
counts towards the failure limits per key (or client) and per source, as a wrong secret does.
"""

import hashlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from server.actor import UNKNOWN, Actor, by_machine_key
from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.domain.access import use_to_note
from server.domain.client_credentials import AccessToken, check_audience
from server.domain.commands import Commands
from server.domain.errors import InvalidClient, InvalidGrant
from server.domain.failure_limits import FailureLimiter
from server.domain.ids import is_id
from server.domain.machine_key_material import KEY_TYPE_EC, KEY_TYPE_RSA
from server.limits import MAX_ASSERTION_LENGTH, MAX_USER_NAME_LENGTH
from server.store.contract import USER_TYPE_MACHINE, MachineKeyRecord, Store, UserRecord

# The algorithm each kind of key signs with: the allow-list.
ALGORITHMS = {"RS256": KEY_TYPE_RSA, "ES256": KEY_TYPE_EC}
# How far clocks may disagree: exp may have passed by this much, iat and nbf be this far ahead.
CLOCK_SKEW = timedelta(seconds=60)
# The longest an assertion may be valid for, from now (ZITADEL's SDKs sign for one hour).
MAX_ASSERTION_LIFETIME = timedelta(hours=1)
MAX_CLAIM_LENGTH = 1000  # a jti, an iss, a sub: no client sends longer ones


class _Refused(Exception):
    """Why an assertion was refused: for no one's eyes but the code's (every refusal is one answer)."""


@dataclass(frozen=True)
class _Proven:
    user: UserRecord
    key: MachineKeyRecord


def _public_key(key: MachineKeyRecord) -> RSAKey | ECKey:
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


class JwtProfile:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        token_ttl: timedelta,
        limiter: FailureLimiter,
        audiences: Callable[[], Collection[str]],
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """audiences: what `aud` may name, asked at each request (the issuers discovery may give,
        and the token endpoint's URLs)."""
        self._store = store
        self._commands = commands
        self._token_ttl = token_ttl
        self._limiter = limiter
        self._audiences = audiences
        self._clock = clock
        # What an assertion whose key is unknown is verified with, so that it costs the same work
        # as one whose key is known (and fails, as no one holds this key's private half).
        stand_in = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        self._stand_in = RSAKey.import_key(
            stand_in.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )

    async def exchange(
        self, assertion: str, scope: str, source: str, origin: Actor = UNKNOWN, issuer: str = ""
    ) -> AccessToken:
        """§2.1: an access token for the machine user whose key signed assertion."""
        if len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidGrant()
        header = self._header(assertion)
        kid = header.get("kid") if header is not None else None
        if not isinstance(kid, str) or not is_id(kid):
            kid = ""
        limit_key = f"key:{kid}"
        await self._limiter.check(limit_key, source)
        key = await self._store.machine_key(kid) if kid else None
        user = await self._store.user(key.user_id) if key is not None else None
        proven = await self._verify(assertion, header, [key] if key else [], user, user.id if user else None)
        if proven is None:
            await self._limiter.failed(limit_key, source)  # TooManyFailures, past a limit
            raise InvalidGrant()
        await self._limiter.check(limit_key, source)
        return await self._issue(proven, scope, origin, issuer)

    async def authenticate_client(
        self,
        client_id: str,
        assertion: str,
        scope: str,
        source: str,
        origin: Actor = UNKNOWN,
        issuer: str = "",
    ) -> AccessToken:
        """§2.2 (private_key_jwt) on the client-credentials grant: an access token for the machine
        user named client_id, whose key signed assertion."""
        proven = await self._prove_client(client_id, assertion, source)
        return await self._issue(proven, scope, origin, issuer)

    async def authenticate(
        self, client_id: str, assertion: str, source: str
    ) -> tuple[UserRecord, MachineKeyRecord]:
        """§2.2 alone: the machine user named client_id and its key that signed assertion, as the
        revocation endpoint authenticates a client (domain/token_revocation.py). InvalidClient
        for every failure, within the failure limits."""
        proven = await self._prove_client(client_id, assertion, source)
        return proven.user, proven.key

    async def _prove_client(self, client_id: str, assertion: str, source: str) -> _Proven:
        if len(client_id) > MAX_USER_NAME_LENGTH or len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        header = self._header(assertion)
        user = await self._store.user_by_name(client_id) if client_id else None
        keys = await self._store.machine_keys(user.id) if user is not None else []
        kid = header.get("kid") if header is not None else None
        # Without a kid, each live key of the client is tried: at most the policy's keys per user.
        now = self._clock.now()
        keys = [k for k in keys if k.live(now) and (kid is None or k.key_id == kid)]
        proven = await self._verify(assertion, header, keys, user, client_id)
        if proven is None:
            await self._limiter.failed(client_id, source)
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        return proven

    @staticmethod
    def _header(assertion: str) -> dict[str, Any] | None:
        """The JWS header, unverified (it names the key that verifies it); None if there is none."""
        try:
            return dict(jws.extract_compact(assertion.encode("ascii")).protected)
        except Exception:
            return None

    async def _verify(
        self,
        assertion: str,
        header: dict[str, Any] | None,
        keys: Sequence[MachineKeyRecord],
        user: UserRecord | None,
        subject: str | None,
    ) -> _Proven | None:
        """The key among keys that signed assertion, if the assertion holds by every rule and the
        key and its user are live; None otherwise, after one verification at least."""
        named = header.get("alg") if header is not None else None
        alg = named if isinstance(named, str) and named in ALGORITHMS else ""
        candidates: list[MachineKeyRecord | None] = [k for k in keys if k.key_type == ALGORITHMS.get(alg)]
        claims: dict[str, Any] | None = None
        signer: MachineKeyRecord | None = None
        for key in candidates or [None]:
            try:
                verifier = self._stand_in if key is None else _public_key(key)
                token = jwt.decode(assertion, verifier, algorithms=[alg or "RS256"])
            except Exception:  # noqa: S112 - a bad signature, or a text joserfc cannot read
                continue
            if key is not None:
                claims, signer = dict(token.claims), key
                break
        if claims is None or signer is None or user is None or subject is None:
            return None
        now = self._clock.now()
        try:
            expires = self._check_claims(claims, subject, now)
        except _Refused:
            return None
        usable = user.type == USER_TYPE_MACHINE and user.active and user.id == signer.user_id
        if not usable or not signer.live(now):
            return None
        jti = claims.get("jti")
        if jti is not None:
            if not isinstance(jti, str) or not jti or len(jti) > MAX_CLAIM_LENGTH:
                return None
            # Kept until the assertion can no longer be accepted: its exp, and the skew after.
            jti_key = hashlib.sha256(f"{signer.key_id}\0{jti}".encode()).hexdigest()
            kept_until = to_micros(expires + CLOCK_SKEW)
            if not await self._store.remember_assertion(jti_key, kept_until, to_micros(now)):
                return None  # a replay
        return _Proven(user, signer)

    def _check_claims(self, claims: dict[str, Any], subject: str, now: datetime) -> datetime:
        """Refuses claims that break a rule; answers the assertion's expiry."""
        if _text(claims, "iss") != subject or _text(claims, "sub") != subject:
            raise _Refused("iss and sub must name the user")
        audience = claims.get("aud")
        named = [audience] if isinstance(audience, str) else audience
        if not isinstance(named, list) or not named or len(named) > 10:
            raise _Refused("aud")
        accepted = set(self._audiences())
        if not any(isinstance(a, str) and a in accepted for a in named):
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

    async def _issue(self, proven: _Proven, scope: str, origin: Actor, issuer: str) -> AccessToken:
        user, key = proven.user, proven.key
        await check_audience(self._store, scope, user.org_id)
        now = self._clock.now()
        if (note := use_to_note(key.last_used_at, now)) is not None:
            await self._store.touch_machine_key(key.key_id, *note)
        # A token never outlives its key's expiry, and dies at once with its removal.
        expires_at = now + self._token_ttl
        if key.expires_at is not None:
            expires_at = min(expires_at, key.expires_at)
        actor = by_machine_key(origin, user.id, user.org_id, key.key_id)
        token = await self._commands.issue_key_access_token(
            user, key.key_id, scope, expires_at, actor, issuer
        )
        return AccessToken(token, int((expires_at - now).total_seconds()), scope, user.id)


def audiences_of(issuers: Collection[str], token_path: str) -> list[str]:
    """What an assertion's aud may name, given the issuers: each, with a slash, and its token
    endpoint."""
    return [a for issuer in issuers for a in (issuer, issuer + "/", issuer + token_path)]
