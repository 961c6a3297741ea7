"""Pages of a list: the size a caller may ask for, and the opaque token that resumes a list.

A page token carries the key of the last item given and a fingerprint of the query it belongs
to (organisation, filters), so that a token is refused with a clear error, not misread, when it
is sent with other filters. It grants nothing: the list is read in the caller's context
organisation whatever the token says, so a forged token can only move where a page starts.
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Callable
from typing import TypeVar

from server.domain.errors import FieldViolation
from server.limits import MAX_PAGE_TOKEN_LENGTH

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50


def check_page_size(field: str, value: int) -> list[FieldViolation]:
    if not 0 <= value <= MAX_PAGE_SIZE:
        return [FieldViolation(field, f"must be from 1 to {MAX_PAGE_SIZE} (0: {DEFAULT_PAGE_SIZE})")]
    return []


def page_size(value: int) -> int:
    return value or DEFAULT_PAGE_SIZE


def _fingerprint(query: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(query).encode()).hexdigest()[:16]


def page_token(query: tuple[str, ...], after: str) -> str:
    """The token that resumes the list of query after the item whose key is after."""
    text = json.dumps([_fingerprint(query), after], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def cut(rows: list[T], size: int, query: tuple[str, ...], key: Callable[[T], str]) -> tuple[list[T], str]:
    """The page of rows read with limit page_size(size) + 1, and the token of the next page ("" if
    the extra row did not come: this was the last)."""
    limit = page_size(size)
    page = rows[:limit]
    return page, page_token(query, key(page[-1])) if len(rows) > limit else ""


def resume_after(field: str, token: str, query: tuple[str, ...]) -> tuple[str, list[FieldViolation]]:
    """The key a page token resumes after ("" for no token), or the violation that refuses it."""
    if not token:
        return "", []
    refused = [FieldViolation(field, "is not a page token of this list; start again without one")]
    if len(token) > MAX_PAGE_TOKEN_LENGTH:  # longer than any this service writes: not decoded
        return "", refused
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, ValueError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return "", refused
    match decoded:
        case [str(fingerprint), str(after)] if fingerprint == _fingerprint(query) and after:
            return after, []
    return "", refused
