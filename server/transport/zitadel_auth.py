"""ZITADEL's authentication API (zitadel.auth.v1), the subset about the caller itself: a thin
mapping onto the query of the native GetMe, under ZITADEL's names."""

from zitadel.auth.v1 import auth_pb2

from server.domain.permissions import CallContext
from server.domain.queries import Queries
from server.transport.zitadel_management import zitadel_user


class AuthService:
    def __init__(self, queries: Queries) -> None:
        self._queries = queries

    async def GetMyUser(
        self, request: auth_pb2.GetMyUserRequest, ctx: CallContext
    ) -> auth_pb2.GetMyUserResponse:
        me = await self._queries.me(ctx)
        return auth_pb2.GetMyUserResponse(user=zitadel_user(me.user, me.profile))

    async def ListMyZitadelPermissions(
        self, request: auth_pb2.ListMyZitadelPermissionsRequest, ctx: CallContext
    ) -> auth_pb2.ListMyZitadelPermissionsResponse:
        # The caller's own organisation: ANY_CALLER methods read no x-zitadel-orgid.
        me = await self._queries.me(ctx)
        return auth_pb2.ListMyZitadelPermissionsResponse(result=sorted(me.permissions_in(ctx.org_id)))
