"""The secret generator: `msk_`, then characters of [0-9A-Za-z], every one possible, none
favoured, then a checksum."""

import re
import subprocess
import sys
import zlib
from collections import Counter

from server.domain.secret_format import (
    ALPHABET,
    PATTERN,
    PREFIX,
    checksum,
    hint,
    is_well_formed,
    lookup_key,
    new_secret,
    random_characters,
)

BODY = 55  # the lookup key and the random part


def test_secrets_are_uniform_over_the_whole_alphabet() -> None:
    secrets = [new_secret() for _ in range(10_000)]
    assert all(s.text.startswith(PREFIX) and len(s.text) == 65 for s in secrets)
    bodies = [s.text[len(PREFIX) : len(PREFIX) + BODY] for s in secrets]
    assert all(s.text[len(PREFIX) :].startswith(s.lookup) for s in secrets)
    assert len(set(bodies)) == len(bodies)
    counts = Counter("".join(bodies))
    expected = 10_000 * BODY / len(ALPHABET)  # about 8,871 each
    # A plain `byte % 62` would favour 8 characters (256 % 62) by 25 %. One count's random spread
    # is about 1 % (sqrt of 8,871), so 6 % is about 6 sigma: no false alarms, and that bias shows.
    # Every character, the last one included, must appear.
    assert set(counts) == set(ALPHABET)
    assert max(counts.values()) < expected * 1.06
    assert min(counts.values()) > expected * 0.94


def test_random_characters_are_as_many_as_asked() -> None:
    assert [len(random_characters(n)) for n in (0, 1, 43, 300)] == [0, 1, 43, 300]


def base62(value: int, width: int) -> str:
    """The issue's rule, written out again: digits 0-9A-Za-z, most significant first, padded."""
    digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    text = ""
    while value:
        text = digits[value % 62] + text
        value //= 62
    return text.rjust(width, "0")


def test_the_checksum_is_crc32_in_base62() -> None:
    for secret in (new_secret() for _ in range(200)):
        head, tail = secret.text[:-6], secret.text[-6:]
        assert tail == base62(zlib.crc32(head.encode("ascii")), 6)
        assert re.fullmatch(PATTERN, secret.text)
        assert is_well_formed(secret.text)
        assert lookup_key(secret.text) == secret.lookup
        assert hint(secret.lookup) == secret.text[4:8]
    assert base62(0, 6) == "000000"
    assert checksum("msk_") == base62(zlib.crc32(b"msk_"), 6)


def test_strings_that_are_not_secrets_are_told_apart() -> None:
    secret = new_secret().text
    flipped = secret[:10] + ("a" if secret[10] != "a" else "b") + secret[11:]
    for text in (flipped, secret[:-1], secret + "0", secret.replace("msk_", "msx_"), "msk_" + "0" * 61, ""):
        assert not is_well_formed(text) or len(text) != len(secret), text
        assert lookup_key(text) is None, text
    # Another issuer's length, with a right checksum, is well formed but not one of ours to look up.
    longer = "msk_" + "A" * 50
    longer += checksum(longer)
    assert is_well_formed(longer)
    assert lookup_key(longer) is None


def test_the_check_command_says_which_strings_are_secrets() -> None:
    good, bad = new_secret().text, "msk_" + "0" * 61
    run = [sys.executable, "-m", "server.tools.check_secret"]
    ok = subprocess.run([*run, good], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout.strip()) == (0, "ok")
    mixed = subprocess.run(run, input=f"{good}\n{bad}\nhello\n", capture_output=True, text=True, check=False)
    assert mixed.returncode == 1
    assert mixed.stdout.splitlines() == [
        "1: ok",
        "2: not a secret: the checksum (the last 6 characters) does not match",
        "3: not a secret: it does not begin with msk_",
    ]
    assert good not in mixed.stdout  # never echoes what it checks
    assert subprocess.run(run, input="", capture_output=True, check=False).returncode == 2
