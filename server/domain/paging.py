"""Pages of a list: the size a caller may ask for, and the opaque token that resumes a list.

A page token carries the key of the last item given, and a MAC (HMAC-SHA256, RFC 2104, under a
key of the service's own) of that key and of the query it belongs to (organisation, filters).
So a token is refused with a clear error, not misread, when it is sent with other filters or in
another organisation, and a caller cannot make one up: a position of its own choosing (a lone
surrogate, which SQLite cannot encode; a NUL, which PostgreSQL refuses in text; any text at all)
never reaches the store. It grants nothing either way: the list is read in the caller's context
organisation whatever the token says.

The key is the same for every process on one store (Store.server_key), so a token one worker
gave is read by any other; a token from before the key, or from another store, is refused, and
the caller starts the list again.
"""

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import TypeVar

from server.domain.errors import FieldViolation
from server.limits import MAX_PAGE_TOKEN_LENGTH

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
MAC_BYTES = 16  # HMAC-SHA256 cut to 128 bits (RFC 2104 §5)
_PURPOSE = b"machinesecrets page token v1\0"


def check_page_size(field: str, value: int) -> list[FieldViolation]:
    if not 0 <= value <= MAX_PAGE_SIZE:
        return [FieldViolation(field, f"must be from 1 to {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE})")]
    return []


def page_size(value: int) -> int:
    return value or DEFAULT_PAGE_SIZE


class PageTokens:
    """Makes and reads page tokens under the service's key."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, query: tuple[str, ...], after: bytes) -> bytes:
        # The query as JSON (ASCII only, no NUL in it) then NUL: no two (query, position) pairs
        # give one message.
        message = _PURPOSE + json.dumps(query).encode("ascii") + b"\0" + after
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]

    def token(self, query: tuple[str, ...], after: str) -> str:
        """The token that resumes the list of query after the item whose key is after."""
        position = after.encode("utf-8")
        return base64.urlsafe_b64encode(self._mac(query, position) + position).decode().rstrip("=")

    def cut(
        self, rows: list[T], size: int, query: tuple[str, ...], key: Callable[[T], str]
    ) -> tuple[list[T], str]:
        """The page of rows read with limit page_size(size) + 1, and the token of the next page
        ("" if the extra row did not come: this was the last)."""
        limit = page_size(size)
        page = rows[:limit]
        return page, self.token(query, key(page[-1])) if len(rows) > limit else ""

    def resume_after(
        self, field: str, token: str, query: tuple[str, ...]
    ) -> tuple[str, list[FieldViolation]]:
        """The key a page token resumes after ("" for no token), or the violation that refuses it:
        a token this service did not make for this very query, or whose position is no key."""
        if not token:
            return "", []
        if len(token) > MAX_PAGE_TOKEN_LENGTH:
            return "", [FieldViolation(field, f"must be at most {MAX_PAGE_TOKEN_LENGTH} characters")]
        refused = [FieldViolation(field, "is not a page token of this list; start again without one")]
        try:
            raw = base64.urlsafe_b64decode(token.encode("ascii") + b"=" * (-len(token) % 4))
        except (binascii.Error, ValueError):  # UnicodeEncodeError is a ValueError
            return "", refused
        mac, position = raw[:MAC_BYTES], raw[MAC_BYTES:]
        if len(mac) != MAC_BYTES or not hmac.compare_digest(mac, self._mac(query, position)):
            return "", refused
        # Only this service makes a token that verifies, from a key it read: the checks below
        # hold should the key ever leak.
        try:
            after = position.decode("utf-8")  # strict: no lone surrogates
        except UnicodeDecodeError:
            return "", refused
        if not after or any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in after):
            return "", refused
        return after, []
