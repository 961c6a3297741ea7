"""Input checks. Each returns the violations it finds, so one error can name every bad field."""

import re

from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.ids import is_id
from server.domain.permissions import ROLES
from server.limits import MAX_ID_LENGTH, MAX_USER_NAME_LENGTH
from server.user_names import NotAUserName, check_scripts, user_name_key

MAX_NAME_LENGTH = 200  # names people read: a display name, an organisation's name, an e-mail address
MAX_DESCRIPTION_LENGTH = 500


def raise_if_any(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument(violations)


def check_id(field: str, value: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "must not be empty")]
    if len(value) > MAX_ID_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_ID_LENGTH} characters")]
    if not is_id(value):
        return [FieldViolation(field, "must be an id: decimal digits")]
    return []


def check_text(
    field: str, value: str, *, required: bool = True, limit: int = MAX_NAME_LENGTH
) -> list[FieldViolation]:
    if required and not value.strip():
        return [FieldViolation(field, "must not be empty")]
    if len(value) > limit:
        return [FieldViolation(field, f"must be at most {limit} characters")]
    if any(not ch.isprintable() and ch not in "\t\n" for ch in value):
        return [FieldViolation(field, "must not contain control characters")]
    return []


def check_user_name(field: str, value: str) -> list[FieldViolation]:
    # A user name is an OAuth2 client id: printable, no white space, so it survives every
    # encoding a client may use (HTTP Basic, form fields).
    if not value:
        return [FieldViolation(field, "must not be empty")]
    if len(value) > MAX_USER_NAME_LENGTH:
        return [FieldViolation(field, f"must be at most {MAX_USER_NAME_LENGTH} characters")]
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return [FieldViolation(field, "must not contain white space or control characters")]
    try:
        user_name_key(value)  # RFC 8265: look-alikes share a key, and are one name
        check_scripts(value)
    except NotAUserName as refused:
        return [FieldViolation(field, str(refused))]
    return []


def check_email(field: str, value: str) -> list[FieldViolation]:
    found = check_text(field, value)
    if found:
        return found
    local, at, domain = value.partition("@")
    if not at or not local or "." not in domain or any(ch.isspace() for ch in value):
        return [FieldViolation(field, "must be an e-mail address")]
    return []


def check_roles(field: str, roles: list[str]) -> list[FieldViolation]:
    if not roles:
        return [FieldViolation(field, "must name at least one role")]
    unknown = sorted(set(roles) - ROLES)
    if unknown:
        return [FieldViolation(field, f"unknown roles; known roles are {', '.join(sorted(ROLES))}")]
    return []


# A project role's key: it travels in scopes (space-separated) and claims, so no white space;
# the characters ZITADEL's consoles and SDKs use in keys.
ROLE_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,200}")
MAX_ROLE_KEYS = 100  # in one grant


def check_role_key(field: str, value: str) -> list[FieldViolation]:
    if not value:
        return [FieldViolation(field, "must not be empty")]
    if not ROLE_KEY.fullmatch(value):
        return [FieldViolation(field, "must be 1 to 200 of A-Z, a-z, 0-9, _ . : -")]
    return []


def check_role_keys(field: str, values: list[str]) -> list[FieldViolation]:
    if not values:
        return [FieldViolation(field, "must name at least one role")]
    if len(values) > MAX_ROLE_KEYS:
        return [FieldViolation(field, f"must name at most {MAX_ROLE_KEYS} roles")]
    return [violation for value in values for violation in check_role_key(field, value)][:1]
