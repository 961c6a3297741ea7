"""Who is calling (authentication) and in which organisation they may act (authorisation)."""

from dataclasses import replace
from datetime import datetime, timedelta

from server.actor import KIND_ACCESS_TOKEN, KIND_PAT
from server.clock import SYSTEM_CLOCK, Clock, to_micros
from server.domain import validation as check
from server.domain.caller_cache import CallerCache
from server.domain.credentials import token_hash
from server.domain.errors import PermissionDenied, Unauthenticated, user_not_found
from server.domain.ids import is_id
from server.domain.permissions import USER_READ, CallContext, Principal
from server.limits import MAX_BEARER_TOKEN_LENGTH
from server.store.contract import CallerRecord, Store

# How precisely a credential's last use is known: it is noted when the note is older than this.
LAST_USED_GRANULARITY = timedelta(minutes=1)


def use_to_note(last_used: datetime | None, now: datetime) -> tuple[int, int] | None:
    """For a credential used now: (now, the moment a note after which makes this one needless), in
    microseconds, for the store's conditional touch; None while the last note is recent. Coarse on
    purpose: a write per credential per minute at most, over every process, not one per call."""
    if last_used is not None and now - last_used < LAST_USED_GRANULARITY:
        return None
    return to_micros(now), to_micros(now - LAST_USED_GRANULARITY)


def invalid_token() -> Unauthenticated:
    # One answer for unknown, expired and revoked tokens: a caller learns nothing about a token
    # it does not hold.
    return Unauthenticated("TOKEN_INVALID", "the token is invalid or expired")


def accepted(caller: CallerRecord, now: datetime) -> bool:
    """Whether a caller's token is accepted now: not expired; an access token only while the
    secret, machine key or federated credential that earned it is live (deleted, replaced,
    revoked or expired ends it, checked on every call, so a token never outlives it); nothing of a
    deactivated user. The one rule of this service's API and of the introspection endpoint."""
    token = caller.token
    if token.expires_at is not None and token.expires_at <= now:
        return False
    earned_by = token.secret_id or token.key_id or token.credential_id
    if earned_by is not None and (caller.secret_live_until is None or caller.secret_live_until <= now):
        return False
    return caller.user_active


class Access:
    def __init__(self, store: Store, clock: Clock = SYSTEM_CLOCK, cache: CallerCache | None = None) -> None:
        self._store = store
        self._clock = clock
        # None: every call reads its caller from the store (caller_cache.py says when a cached
        # one may be used).
        self._cache = cache

    async def authenticate(self, bearer_token: str) -> Principal:
        if len(bearer_token) > MAX_BEARER_TOKEN_LENGTH:  # no token is this long: not even hashed
            raise invalid_token()
        hashed = token_hash(bearer_token)
        caller = None if self._cache is None else self._cache.get(hashed)
        if caller is None:
            caller = await self._store.caller(hashed)
            if caller is None:
                raise invalid_token()
            if self._cache is not None:
                self._cache.put(hashed, caller)
        token, now = caller.token, self._clock.now()
        if not accepted(caller, now):
            raise invalid_token()
        earned_by = token.secret_id or token.key_id or token.credential_id
        if (note := use_to_note(token.last_used_at, now)) is not None:
            await self._store.touch_token(hashed, *note)
            if self._cache is not None and (read_at := self._cache.read_at(hashed)) is not None:
                # Noted: the cached copy says so, and is no fresher than it was.
                self._cache.put(hashed, replace(caller, token=replace(token, last_used_at=now)), read_at)
        # A PAT is named by its id; an access token by the secret that earned it (its own id is
        # in no answer, and the secret is what an incident ends).
        credential = (KIND_PAT, token.token_id) if earned_by is None else (KIND_ACCESS_TOKEN, earned_by)
        return Principal(token.user_id, caller.org_id, caller.roles, *credential)

    async def enter_organisation(self, principal: Principal, org_id: str, permission: str) -> CallContext:
        """The context for a call that needs `permission` in `org_id` (empty: the caller's own).

        An organisation the caller holds no permission in is refused the same way whether it
        exists or not, so organisation ids cannot be probed.
        """
        org_id = org_id or principal.org_id
        if not principal.has(permission, org_id):
            raise PermissionDenied(
                "PERMISSION_DENIED", "missing permission in the organisation", {"permission": permission}
            )
        # The caller's own organisation exists: the caller is in it. Any other is looked up, if it
        # is an id at all (is_id looks at the length first: a header of any length costs nothing).
        if org_id != principal.org_id and (not is_id(org_id) or await self._store.org(org_id) is None):
            raise PermissionDenied("ORGANIZATION_NOT_FOUND", "the organisation does not exist")
        return CallContext(principal, org_id)

    async def enter_organisation_of_user(
        self, principal: Principal, user_id: str, permission: str
    ) -> CallContext:
        """The context for a call about a user, in that user's organisation (ZITADEL's v2 API).

        A user the caller may not even read is refused exactly like one that does not exist, so
        user ids cannot be probed across organisations; one it may read but not act on is
        PERMISSION_DENIED.
        """
        check.raise_if_any(check.check_id("user_id", user_id))
        user = await self._store.user(user_id)
        if user is None or not principal.has(USER_READ, user.org_id):
            raise user_not_found()
        return await self.enter_organisation(principal, user.org_id, permission)
