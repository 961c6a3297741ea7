"""The key material of machine keys and of API applications' keys: a key pair made for a caller,
or a public key it uploads.

Only public keys are kept. A generated pair's private half goes to the caller once, in ZITADEL's
key file (`{"type":"serviceaccount","keyId","key","expirationDate","userId"}`, `key` the PEM of
the private key; an application's is `{"type":"application","keyId","key","appId","clientId"}`),
and is forgotten. An upload must be the PEM of a public key
(SubjectPublicKeyInfo): RSA of at least 2048 bits, or EC on P-256 (the curve of ES256). A private
key, a certificate, another curve or anything unreadable is refused, with one message that
repeats none of it.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.domain.errors import FieldViolation

KEY_TYPE_RSA = "RSA"
KEY_TYPE_EC = "EC"
GENERATED_RSA_BITS = 2048
MIN_RSA_BITS = 2048
# Verifying costs grow with the size: a bound on what a caller can ask of the CPU (4096 bits: four
# times 2048's, about 0.2 ms a verification).
MAX_RSA_BITS = 4096
RSA_EXPONENT = 65537
# The most an uploaded PEM may hold: an 8192-bit RSA public key is about 1.4 kB.
MAX_PUBLIC_KEY_BYTES = 4096
_PEM_PUBLIC_HEADER = b"-----BEGIN PUBLIC KEY-----"
# What ZITADEL writes as the expiration date of a key made without one, and so what its clients
# read back (internal/domain/expiration.go, defaultExpDate): in its key file and in every answer
# that shows a key's expiration date under its names. The service keeps no date for such a key.
NO_EXPIRY_SHOWN = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


@dataclass(frozen=True)
class PublicKey:
    pem: str  # SubjectPublicKeyInfo, as the service writes it
    key_type: str  # KEY_TYPE_RSA or KEY_TYPE_EC


@dataclass(frozen=True)
class KeyPair:
    public: PublicKey
    private_pem: str

    def __repr__(self) -> str:  # the private key must never reach a log through a repr
        return f"KeyPair(public={self.public!r}, private_pem='***')"


def _public(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey, key_type: str) -> PublicKey:
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return PublicKey(pem.decode("ascii"), key_type)


def generate() -> KeyPair:
    """A new RSA key pair of GENERATED_RSA_BITS (ZITADEL's default)."""
    private = rsa.generate_private_key(public_exponent=RSA_EXPONENT, key_size=GENERATED_RSA_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")
    return KeyPair(_public(private.public_key(), KEY_TYPE_RSA), private_pem)


def acceptable_rsa(key: rsa.RSAPublicKey) -> bool:
    """An RSA public key whose signatures cost what a normal one's do: MIN_RSA_BITS to
    MAX_RSA_BITS, and the public exponent 65537. OpenSSL accepts an exponent almost as large as the
    modulus, and one such key made a verification 150 times dearer (7.9 ms against 0.05 ms): a key
    its uploader chose to make every refused assertion cost the event loop that much."""
    return MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS and key.public_numbers().e == RSA_EXPONENT


def _refused() -> list[FieldViolation]:
    return [
        FieldViolation(
            "public_key",
            "must be the PEM of a public key (BEGIN PUBLIC KEY): RSA of at least"
            f" {MIN_RSA_BITS} bits, or EC on P-256",
        )
    ]


def read_public_key(data: bytes) -> tuple[PublicKey | None, list[FieldViolation]]:
    """The uploaded public key, or the violation. Only a SubjectPublicKeyInfo PEM is read, so a
    private key (of any encoding) is refused before it is parsed."""
    text = data.strip()
    if len(data) > MAX_PUBLIC_KEY_BYTES or not text.startswith(_PEM_PUBLIC_HEADER):
        return None, _refused()
    try:
        key = serialization.load_pem_public_key(text)
    except (ValueError, TypeError):
        return None, _refused()
    if isinstance(key, rsa.RSAPublicKey) and acceptable_rsa(key):
        return _public(key, KEY_TYPE_RSA), []
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return _public(key, KEY_TYPE_EC), []
    return None, _refused()


def key_file(key_id: str, user_id: str, private_pem: str, expires_at: datetime | None) -> bytes:
    """ZITADEL's key file of a machine user, as its SDKs read it, in its order of fields."""
    content = {
        "type": "serviceaccount",
        "keyId": key_id,
        "key": private_pem,
        "expirationDate": go_time(NO_EXPIRY_SHOWN if expires_at is None else expires_at),
        "userId": user_id,
    }
    return json.dumps(content).encode("utf-8")


def app_key_file(key_id: str, app_id: str, client_id: str, private_pem: str) -> bytes:
    """ZITADEL's key file of an API application, as its clients read it (@zitadel/node's
    Application, passport-zitadel), in its order of fields."""
    content = {
        "type": "application",
        "keyId": key_id,
        "key": private_pem,
        "appId": app_id,
        "clientId": client_id,
    }
    return json.dumps(content).encode("utf-8")


def go_time(moment: datetime) -> str:
    """A moment as Go writes a time.Time in JSON, as ZITADEL's key file has it: RFC 3339 in UTC,
    with a fraction of a second only if there is one, without its trailing zeros."""
    moment = moment.astimezone(UTC)
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"
