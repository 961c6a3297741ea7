"""The format of client secrets: `msk_` + B + C, which secret scanners can find and check offline.

- B is a lookup key of LOOKUP_LENGTH characters, then RANDOM_LENGTH characters, all [0-9A-Za-z]
  from the OS's CSPRNG, without modulo bias. The random part alone carries 43 * log2(62) = 256.03
  bits. The lookup key is not secret: it finds the one stored hash to check (the token endpoint
  runs one bcrypt verification however many secrets a client has), and its first HINT_LENGTH
  characters are the hint that lists show.
- C is the CRC32 (IEEE, as zlib.crc32) of the ASCII bytes of `msk_` + B, in base 62 with the
  alphabet 0-9A-Za-z, most significant digit first, left-padded with 0 to 6 characters. It lets a
  scanner tell a secret of ours from a random string without asking anyone, and lets the
  revocation endpoint skip strings that are not secrets at all.

A scanner matches `msk_[0-9A-Za-z]{49,}` and checks the last six characters (docs/leaks.md,
"Secret format, for scanners"; SECURITY.md).
Secrets issued before this format are 64 characters of [A-Za-z0-9] with no prefix; they keep
working, and have no lookup key.
"""

import secrets
import string
import zlib
from dataclasses import dataclass

PREFIX = "msk_"
ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase  # base 62, in this order
LOOKUP_LENGTH = 12
RANDOM_LENGTH = 43
CHECKSUM_LENGTH = 6
HINT_LENGTH = 4
MIN_BODY_LENGTH = 43  # the format's rule for B; ours is LOOKUP_LENGTH + RANDOM_LENGTH
SECRET_LENGTH = len(PREFIX) + LOOKUP_LENGTH + RANDOM_LENGTH + CHECKSUM_LENGTH
PATTERN = r"msk_[0-9A-Za-z]{49,}"  # B (at least 43) and C (6)

# The largest multiple of 62 that fits in a byte: bytes at or above it are dropped, so that
# `byte % 62` is uniform.
_UNBIASED_BELOW = 256 - 256 % len(ALPHABET)
_DIGITS = frozenset(ALPHABET)


@dataclass(frozen=True)
class NewSecret:
    text: str
    lookup: str

    def __repr__(self) -> str:  # never the secret, whatever logs a repr
        return f"NewSecret(text='***', lookup={self.lookup!r})"


def random_characters(count: int) -> str:
    """count characters of [0-9A-Za-z], uniform, from the OS's CSPRNG."""
    chars: list[str] = []
    while len(chars) < count:
        chars += [ALPHABET[b % len(ALPHABET)] for b in secrets.token_bytes(count + 16) if b < _UNBIASED_BELOW]
    return "".join(chars[:count])


def checksum(prefix_and_body: str) -> str:
    value = zlib.crc32(prefix_and_body.encode("ascii"))
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, len(ALPHABET))
        digits.append(ALPHABET[digit])
    return "".join(reversed(digits))


def new_secret() -> NewSecret:
    body = random_characters(LOOKUP_LENGTH + RANDOM_LENGTH)
    head = PREFIX + body
    return NewSecret(head + checksum(head), body[:LOOKUP_LENGTH])


def is_well_formed(text: str) -> bool:
    """Whether text is a secret in this format with a right checksum (of any issuer's length)."""
    if not text.startswith(PREFIX) or len(text) < len(PREFIX) + MIN_BODY_LENGTH + CHECKSUM_LENGTH:
        return False
    rest = text[len(PREFIX) :]
    if not set(rest) <= _DIGITS:
        return False
    head, tail = text[:-CHECKSUM_LENGTH], text[-CHECKSUM_LENGTH:]
    return checksum(head) == tail


def lookup_key(text: str) -> str | None:
    """The lookup key of one of this service's secrets; None for anything else (a legacy secret,
    a bad checksum, another length)."""
    if len(text) != SECRET_LENGTH or not is_well_formed(text):
        return None
    return text[len(PREFIX) : len(PREFIX) + LOOKUP_LENGTH]


def hint(lookup: str | None) -> str:
    """What lists show of a secret: its first characters after the prefix, never more; nothing for
    a secret issued before this format (its text is not kept)."""
    return "" if lookup is None else lookup[:HINT_LENGTH]
