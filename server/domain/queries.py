"""Queries: reads of the read models, for a caller acting in an organisation."""

from server.domain import validation as check
from server.domain.errors import user_not_found
from server.domain.model import Details, UserView
from server.domain.permissions import CallContext
from server.domain.store_errors import store_unavailable_is_unavailable
from server.store.base import Store


class Queries:
    def __init__(self, store: Store) -> None:
        self._store = store

    @store_unavailable_is_unavailable
    async def user_by_id(self, ctx: CallContext, user_id: str) -> UserView:
        check.raise_if_any(check.check_id("user_id", user_id))
        user = await self._store.user(user_id)
        if user is None or user.org_id != ctx.org_id:
            raise user_not_found()
        details = Details(user.sequence, user.created_at, user.changed_at, user.org_id)
        return UserView(user.id, user.user_name, user.type, user.secret_hash is not None, details)
