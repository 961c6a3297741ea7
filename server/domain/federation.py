"""Workload identity federation (issue 34): a workload's platform token (a Kubernetes
service-account token, a GitHub Actions OIDC token) authenticates a machine user at the token
endpoint, in place of a stored credential. The shape Microsoft Entra and Keycloak use: the
client-credentials grant with client_assertion_type jwt-bearer (RFC 7523 §2.2), client_id the
machine user's user name, client_assertion the platform's JWT.

What the token must be:
- at most MAX_ASSERTION_LENGTH characters; a compact JWS signed with one of ALGORITHMS (never
  `none` nor an HMAC: a public key is no secret), by a key of the issuer's JWKS (its `kid`, or,
  without one, one of the first MAX_KEYS_WITHOUT_KID keys of its type);
- `iss` a trusted issuer of the user's organisation (domain/issuer_keys.py finds its keys);
- `sub` exactly the subject of one of the user's federated credentials for that issuer (no
  wildcards), `aud` (a text or a list) containing its audience, and, if it names a claim, that
  claim equal to its value;
- `exp` in the future, `iat` present and not in the future, `nbf` (if present) passed, each
  with CLOCK_SKEW of tolerance, and exp - iat at most MAX_TOKEN_LIFETIME;
- a `jti`, if it has one, never exchanged before (the store's replay table, on every process)
  until the token expires. Without a jti a token may be exchanged again while it is valid, as
  the cloud providers allow: the platform rotates it, and its lifetime bounds the replay.
The user must be an active machine user. Every failure is the same InvalidClient, after one
signature verification at least, and counts towards the failure limits per client and source.
"""

import base64
import binascii
import contextlib
import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws, jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from server.actor import UNKNOWN, Actor, by_federated_credential
from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.domain.access import use_to_note
from server.domain.client_credentials import AccessToken, check_audience
from server.domain.commands import Commands
from server.domain.errors import InvalidClient
from server.domain.failure_limits import FailureLimiter
from server.domain.issuer_keys import IssuerKeys
from server.limits import MAX_ASSERTION_LENGTH, MAX_USER_NAME_LENGTH
from server.store.contract import (
    USER_TYPE_MACHINE,
    FederatedCredentialRecord,
    Store,
    TrustedIssuerRecord,
    UserRecord,
)

# The algorithms a platform token may be signed with, and the key type each needs.
ALGORITHMS = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "ES256": "EC",
    "ES384": "EC",
}
CLOCK_SKEW = timedelta(seconds=60)
# The longest a platform token may be valid for (exp - iat). Kubernetes' projected tokens default
# to one hour and GitHub's to minutes; a day leaves room for a cluster's longer setting.
MAX_TOKEN_LIFETIME = timedelta(hours=24)
MAX_CLAIM_LENGTH = 1000
MAX_AUDIENCES = 10
# Keys tried for a token that names no kid (Kubernetes' and GitHub's tokens always name one).
MAX_KEYS_WITHOUT_KID = 3


def federated_issuer(assertion: str, client_id: str) -> bool:
    """Whether a client assertion is a platform token, not one signed by a machine key: its iss,
    read unverified only to choose the verifier, is a URL, not the client id."""
    issuer = unverified_claims(assertion).get("iss")
    return isinstance(issuer, str) and issuer != client_id and issuer.startswith(("https://", "http://"))


def unverified_claims(assertion: str) -> dict[str, Any]:
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


class _Refused(Exception):
    """Why a token was refused: for no one's eyes but the code's (every refusal is one answer)."""


def _number(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Refused(f"{name} is not a number")
    return float(value)


class Federation:
    def __init__(
        self,
        store: Store,
        commands: Commands,
        keys: IssuerKeys,
        token_ttl: timedelta,
        limiter: FailureLimiter,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._store = store
        self._commands = commands
        self._keys = keys
        self._token_ttl = token_ttl
        self._limiter = limiter
        self._clock = clock
        # What a token of no trusted issuer is verified with, so that it costs the same work as
        # one whose issuer is known (and fails: no one holds this key's private half).
        stand_in = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
        self._stand_in = RSAKey.import_key(
            stand_in.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        # What the stand-in verifies when the token names no usable key or algorithm: an RS256
        # token of another key, so that the refusal costs one RSA verification whatever was sent.
        self._decoy = jwt.encode({"alg": "RS256"}, {"decoy": True}, RSAKey.generate_key(2048))

    async def authenticate_client(
        self,
        client_id: str,
        assertion: str,
        scope: str,
        source: str,
        origin: Actor = UNKNOWN,
        issuer: str = "",
    ) -> AccessToken:
        """An access token for the machine user named client_id, whose federated credential the
        platform token assertion matches."""
        user, credential = await self.authenticate(client_id, assertion, source)
        now = self._clock.now()
        await check_audience(self._store, scope, user.org_id)
        if (note := use_to_note(credential.last_used_at, now)) is not None:
            await self._store.touch_federated_credential(credential.credential_id, *note)
        expires_at = now + self._token_ttl
        actor = by_federated_credential(origin, user.id, user.org_id, credential.credential_id)
        token = await self._commands.issue_federated_access_token(
            user, credential.credential_id, scope, expires_at, actor, issuer
        )
        return AccessToken(token, int((expires_at - now).total_seconds()), scope, user.id)

    async def authenticate(
        self, client_id: str, assertion: str, source: str
    ) -> tuple[UserRecord, FederatedCredentialRecord]:
        """The machine user named client_id and its federated credential that the platform token
        assertion matches, as the revocation endpoint authenticates a client
        (domain/token_revocation.py). InvalidClient for every failure, within the failure limits."""
        if len(client_id) > MAX_USER_NAME_LENGTH or len(assertion) > MAX_ASSERTION_LENGTH:
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        user = await self._store.user_by_name(client_id) if client_id else None
        unverified = unverified_claims(assertion)
        issuer_name = unverified.get("iss")
        trusted: TrustedIssuerRecord | None = None
        credentials: list[FederatedCredentialRecord] = []
        if user is not None and isinstance(issuer_name, str):
            trusted = next(
                (t for t in await self._store.trusted_issuers(user.org_id) if t.issuer == issuer_name), None
            )
        if trusted is not None and user is not None:
            credentials = await self._store.federated_credentials(user.id)
            if not any(_matches(c, trusted, unverified) for c in credentials):
                # No credential that this token could match, once verified: its issuer's keys
                # are not fetched for it (a request with no credential decides no fetch).
                trusted = None
        header = _header(assertion)
        claims = await self._verified_claims(assertion, header, trusted)
        credential: FederatedCredentialRecord | None = None
        now = self._clock.now()
        if claims is not None and trusted is not None and user is not None:
            try:
                expires = _check_times(claims, now)
                credential = next((c for c in credentials if _matches(c, trusted, claims)), None)
                usable = user.type == USER_TYPE_MACHINE and user.active
                if credential is None or not usable:
                    raise _Refused("no credential, or the user cannot act")
                if not await self._fresh(claims, trusted, expires, now):
                    raise _Refused("a replay")
            except _Refused:
                credential = None
        if credential is None or user is None:
            await self._limiter.failed(client_id, source)  # TooManyFailures, past a limit
            raise InvalidClient()
        await self._limiter.check(client_id, source)
        return user, credential

    async def _verified_claims(
        self, assertion: str, header: dict[str, Any] | None, trusted: TrustedIssuerRecord | None
    ) -> dict[str, Any] | None:
        """The token's claims if its signature verifies with a key of the issuer; None otherwise,
        after one verification at least."""
        named = header.get("alg") if header is not None else None
        alg = named if isinstance(named, str) and named in ALGORITHMS else ""
        kid = header.get("kid") if header is not None else None
        kid = kid if isinstance(kid, str) and len(kid) <= MAX_CLAIM_LENGTH else None
        key_set = await self._keys.keys(trusted, kid) if trusted is not None and alg else None
        candidates: list[RSAKey | ECKey] = []
        if key_set is not None:
            candidates = _candidates(key_set, kid, ALGORITHMS[alg])
        if not candidates:
            with contextlib.suppress(Exception):
                jwt.decode(self._decoy, self._stand_in, algorithms=["RS256"])
            return None
        for key in candidates:
            try:
                token = jwt.decode(assertion, key, algorithms=[alg])
            except Exception:  # noqa: S112 - a bad signature, or a text joserfc cannot read
                continue
            return dict(token.claims)
        return None

    async def _fresh(
        self, claims: dict[str, Any], trusted: TrustedIssuerRecord, expires: datetime, now: datetime
    ) -> bool:
        """False for a token whose jti was exchanged before (on any process)."""
        jti = claims.get("jti")
        if jti is None:
            return True
        if not isinstance(jti, str) or not jti or len(jti) > MAX_CLAIM_LENGTH:
            return False
        # Per organisation: another organisation that trusts the same issuer string (with keys of
        # its own) must not be able to use up a jti before this one's workload presents it.
        jti_key = hashlib.sha256(f"federated\0{trusted.org_id}\0{trusted.issuer}\0{jti}".encode()).hexdigest()
        return await self._store.remember_assertion(jti_key, to_micros(expires + CLOCK_SKEW), to_micros(now))


def _header(assertion: str) -> dict[str, Any] | None:
    try:
        return dict(jws.extract_compact(assertion.encode("ascii")).protected)
    except Exception:
        return None


def _candidates(key_set: KeySet, kid: str | None, key_type: str) -> list[RSAKey | ECKey]:
    """The key kid names, or, without a kid, the issuer's first MAX_KEYS_WITHOUT_KID keys of the
    algorithm's type (each one a verification: a token without a kid must not cost twenty)."""
    keys: list[RSAKey | ECKey] = [
        k for k in key_set.keys if isinstance(k, RSAKey | ECKey) and k.key_type == key_type
    ]
    if kid is not None:
        return [k for k in keys if k.kid == kid]
    return keys[:MAX_KEYS_WITHOUT_KID]


def _check_times(claims: dict[str, Any], now: datetime) -> datetime:
    """Refuses a token out of its time; answers its expiry."""
    stamp = now.timestamp()
    skew, longest = CLOCK_SKEW.total_seconds(), MAX_TOKEN_LIFETIME.total_seconds()
    exp, iat = _number(claims, "exp"), _number(claims, "iat")
    nbf = _number(claims, "nbf") if "nbf" in claims else None
    if not stamp - skew < exp <= stamp + longest + skew or exp - iat > longest:
        raise _Refused("exp")
    if iat > stamp + skew or (nbf is not None and nbf > stamp + skew):
        raise _Refused("iat or nbf")
    return datetime.fromtimestamp(exp, now.tzinfo)


def _matches(
    credential: FederatedCredentialRecord, trusted: TrustedIssuerRecord, claims: dict[str, Any]
) -> bool:
    if claims.get("iss") != trusted.issuer or credential.issuer != trusted.issuer:
        return False
    if claims.get("sub") != credential.subject:
        return False
    audience = claims.get("aud")
    named = [audience] if isinstance(audience, str) else audience
    if not isinstance(named, list) or len(named) > MAX_AUDIENCES or credential.audience not in named:
        return False
    return not credential.claim_name or claims.get(credential.claim_name) == credential.claim_value
