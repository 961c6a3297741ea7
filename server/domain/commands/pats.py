"""Commands on personal access tokens: a user's bearer tokens, made and ended by a caller who may
act on the user."""

from datetime import datetime

from server.clock import to_micros
from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_user
from server.domain.credentials import new_token, token_hash
from server.domain.errors import FieldViolation, NotFound
from server.domain.model import Details, IssuedToken
from server.domain.permissions import CallContext
from server.events.base import NewEvent
from server.events.user import PatAdded, PatRemoved


class PatCommands(Writer):
    async def add_personal_access_token(
        self, ctx: CallContext, user_id: str, expires_at: datetime | None
    ) -> IssuedToken:
        violations = check.check_id("user_id", user_id)
        if expires_at is not None and expires_at <= self._clock.now():
            violations.append(FieldViolation("expiration_date", "must be in the future"))
        check.raise_if_any(violations)
        token, token_id = new_token(), self._ids.new_id()
        added = PatAdded(token_id, token_hash(token), None if expires_at is None else to_micros(expires_at))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            return [next_of_user(user, added)]

        [stored] = await self._write(ctx, user_id, decide)
        return IssuedToken(token_id, token, Details.of_change(stored))

    async def remove_personal_access_token(self, ctx: CallContext, user_id: str, token_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("token_id", token_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(t.token_id != token_id for t in await self._store.personal_access_tokens(user_id)):
                raise NotFound("TOKEN_NOT_FOUND", "the user has no personal access token with this id")
            return [next_of_user(user, PatRemoved(token_id))]

        [stored] = await self._write(ctx, user_id, decide)
        return Details.of_change(stored)
