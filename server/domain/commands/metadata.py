"""Commands on a user's metadata (ZITADEL's user metadata): keys set to byte values, and keys
removed, by a caller who may act on the user.

The gate is `_user_in_reach`, as for deactivating a user: metadata grants nothing on this
service's API, but the APIs that read it through introspection may trust it (a tenant, a contract
number), so a caller may write it only for users whose every permission it holds itself."""

import base64
from collections.abc import Sequence

from server.domain import validation as check
from server.domain.commands.writes import Writer
from server.domain.errors import FailedPrecondition, FieldViolation, NotFound
from server.domain.model import Details
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.metadata import UserMetadataRemoved, UserMetadataSet
from server.limits import MAX_METADATA_KEY_LENGTH, MAX_METADATA_KEYS, MAX_METADATA_VALUE_BYTES


def check_key(field: str, key: str) -> list[FieldViolation]:
    return check.check_text(field, key, limit=MAX_METADATA_KEY_LENGTH)


def check_entries(field: str, entries: Sequence[tuple[str, bytes]]) -> list[FieldViolation]:
    if not entries:
        return [FieldViolation(field, "must name at least one key")]
    if len(entries) > MAX_METADATA_KEYS:
        return [FieldViolation(field, f"must name at most {MAX_METADATA_KEYS} keys")]
    violations: list[FieldViolation] = []
    for key, value in entries:
        violations += check_key(f"{field}.key", key)
        if not value:
            violations.append(FieldViolation(f"{field}.value", "must not be empty"))
        elif len(value) > MAX_METADATA_VALUE_BYTES:
            violations.append(
                FieldViolation(f"{field}.value", f"must be at most {MAX_METADATA_VALUE_BYTES} bytes")
            )
    if len({key for key, _ in entries}) != len(entries):
        violations.append(FieldViolation(f"{field}.key", "must name each key once"))
    return violations[:1]


def check_keys(field: str, keys: Sequence[str]) -> list[FieldViolation]:
    if not keys:
        return [FieldViolation(field, "must name at least one key")]
    if len(keys) > MAX_METADATA_KEYS:
        return [FieldViolation(field, f"must name at most {MAX_METADATA_KEYS} keys")]
    return [v for key in keys for v in check_key(field, key)][:1]


class MetadataCommands(Writer):
    async def set_user_metadata(
        self, ctx: CallContext, user_id: str, entries: Sequence[tuple[str, bytes]], field: str = "metadata"
    ) -> Details:
        """Sets each key to its value, in one append: all or none. A key already holding its value
        is left alone; the answer's details are the user's last change then."""
        check.raise_if_any(check.check_id("user_id", user_id) + check_entries(field, entries))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            held = {m.key: m.value for m in await self._store.user_metadata(user_id)}
            if len(held.keys() | {key for key, _ in entries}) > MAX_METADATA_KEYS:
                raise FailedPrecondition(
                    "METADATA_LIMIT", f"a user has at most {MAX_METADATA_KEYS} metadata keys"
                )
            changed = [(key, value) for key, value in entries if held.get(key) != value]
            return [
                NewEvent(
                    user.id,
                    user.sequence + i,
                    user.org_id,
                    UserMetadataSet(key, base64.b64encode(value).decode()),
                )
                for i, (key, value) in enumerate(changed, start=1)
            ]

        stored = await self._write(ctx, user_id, decide)
        if stored:
            return Details.of_change(stored[-1])
        user = await self._user_in_reach(ctx, user_id, machine=False)
        return Details(user.sequence, user.created_at, user.changed_at, user.org_id)

    async def remove_user_metadata(
        self, ctx: CallContext, user_id: str, keys: Sequence[str], field: str = "keys"
    ) -> Details:
        """Removes each key, in one append; NOT_FOUND (and nothing removed) if the user lacks one."""
        check.raise_if_any(check.check_id("user_id", user_id) + check_keys(field, keys))

        async def decide() -> list[NewEvent]:
            user = await self._user_in_reach(ctx, user_id, machine=False)
            held = {m.key for m in await self._store.user_metadata(user_id)}
            if any(key not in held for key in keys):
                raise NotFound("METADATA_NOT_FOUND", "the user has no metadata of this key")
            return [
                NewEvent(user.id, user.sequence + i, user.org_id, UserMetadataRemoved(key))
                for i, key in enumerate(dict.fromkeys(keys), start=1)
            ]

        stored = await self._write(ctx, user_id, decide)
        return Details.of_change(stored[-1])
