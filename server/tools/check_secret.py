"""Checks whether strings are client secrets of this service's format (`msk_…` with a valid CRC32
checksum), offline, as a secret scanner or a pre-commit hook would.

    python -m server.tools.check_secret STRING...      # or one string per line on stdin

Prints one line per string, `ok` or `not a secret: <why>`, never the string itself. Exits 0 when
every string is a well-formed secret, 1 otherwise, 2 on wrong usage.
"""

import re
import sys

from server.domain.secret_format import CHECKSUM_LENGTH, PATTERN, PREFIX, is_well_formed


def verdict(text: str) -> str:
    if not text.startswith(PREFIX):
        return f"not a secret: it does not begin with {PREFIX}"
    if not re.fullmatch(PATTERN, text):
        return "not a secret: wrong length or characters outside [0-9A-Za-z]"
    if not is_well_formed(text):
        return f"not a secret: the checksum (the last {CHECKSUM_LENGTH} characters) does not match"
    return "ok"


def main(argv: list[str]) -> int:
    texts = argv or [line.strip() for line in sys.stdin if line.strip()]
    if not texts:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    verdicts = [verdict(text) for text in texts]
    for number, result in enumerate(verdicts, 1):
        print(f"{number}: {result}" if len(texts) > 1 else result)
    return 0 if all(v == "ok" for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
