"""Queries: reads of the read models, for a caller acting in an organisation."""

import unicodedata
from dataclasses import dataclass, replace

from server.clock import SYSTEM_CLOCK, Clock
from server.domain import paging
from server.domain import validation as check
from server.domain.access import invalid_token
from server.domain.errors import FieldViolation, NotFound, user_not_found, user_not_machine
from server.domain.model import (
    AppKeyView,
    Details,
    GrantView,
    MachineKeyView,
    MetadataView,
    PersonalAccessTokenView,
    SecretView,
    UserProfile,
    UserView,
)
from server.domain.permissions import PERMISSIONS, USER_READ, CallContext
from server.domain.secret_format import hint
from server.domain.secret_policy import SecretPolicy, max_keys, max_secrets
from server.domain.signing_keys import key_state
from server.limits import MAX_USER_NAME_LENGTH
from server.store.contract import (
    USER_TYPE_MACHINE,
    AppRecord,
    FederatedCredentialRecord,
    MemberRecord,
    OrgRecord,
    ProjectRecord,
    ProjectRoleRecord,
    Store,
    TrustedIssuerRecord,
    UserRecord,
    WebKeyRecord,
)
from server.user_names import NotAUserName, user_name_key


@dataclass(frozen=True)
class Me:
    """The caller: its user, its roles and permissions by organisation, and the permissions it
    holds in every organisation (an IAM_OWNER's)."""

    user: UserView
    profile: UserProfile
    memberships: dict[str, tuple[frozenset[str], frozenset[str]]]  # org: (roles, permissions)
    instance_permissions: frozenset[str]

    def permissions_in(self, org_id: str) -> frozenset[str]:
        return self.instance_permissions | self.memberships.get(org_id, (frozenset(), frozenset()))[1]


@dataclass(frozen=True)
class Member:
    user: UserView
    profile: UserProfile
    roles: frozenset[str]


# ZITADEL's v1 lists: how far an offset may reach (a page of 100 beyond it at most).
MAX_MEMBER_OFFSET = 100_000
# A search by a part of a name reads at most this many users of the organisation a call, in the
# order of their user names, and keeps those that match. No index finds a part of a name on both
# backends (SQLite has no trigram index outside FTS5, and PostgreSQL's pg_trgm is an extension an
# operator may not be allowed to install), so the work is bounded instead: a call costs the same
# (one range read of this many rows) whether a search matches every user or none, and a caller
# who wants the whole organisation searched pages on, a bounded call at a time.
SEARCH_SCAN = 1000
SEARCH_WINDOW = 200  # users read by one statement of a search


def _folded(text: str) -> str:
    """Text as a search compares it: compatibility-composed, case folded."""
    return unicodedata.normalize("NFKC", text).casefold()


class Queries:
    def __init__(self, store: Store, page_tokens: paging.PageTokens, clock: Clock = SYSTEM_CLOCK) -> None:
        self._store = store
        self._pages = page_tokens
        self._clock = clock

    async def web_keys(self) -> list[tuple[WebKeyRecord, str]]:
        """The signing keys not removed, oldest first, each with its state now
        (signing_keys.key_state)."""
        keys, now = await self._store.webkeys(), self._clock.now()
        return [(key, key_state(key, keys, now)) for key in keys]

    def _view(self, user: UserRecord) -> UserView:
        details = Details(user.sequence, user.created_at, user.changed_at, user.org_id)
        return UserView(
            user.id,
            user.user_name,
            user.type == USER_TYPE_MACHINE,
            user.active,
            user.has_live_secret(self._clock.now()),
            details,
        )

    async def user_with_profile(self, ctx: CallContext, user_id: str) -> tuple[UserView, UserProfile]:
        """The user, and what it was created with."""
        return self._with_profile(await self._user_of(ctx, user_id))

    def _with_profile(self, user: UserRecord) -> tuple[UserView, UserProfile]:
        return self._view(user), UserProfile(
            user.name, user.description, user.display_name, user.email, user.access_token_type
        )

    async def users(
        self,
        ctx: CallContext,
        user_name_prefix: str,
        user_type: str,
        size: int,
        token: str,
        contains: str = "",
    ) -> tuple[list[tuple[UserView, UserProfile]], str]:
        """A page of the context organisation's users in the order of their user names (user_type
        "" for every type), and the token of the next page ("" after the last).

        With `contains`, only those whose user name or name holds it anywhere, compared without
        case; such a page comes of at most SEARCH_SCAN users read, so it may hold fewer users than
        asked for, or none, and still have a next page."""
        violations = paging.check_page_size("page_size", size)
        violations += check.check_text(
            "user_name_prefix", user_name_prefix, required=False, limit=MAX_USER_NAME_LENGTH
        )
        violations += check.check_text("contains", contains, required=False, limit=MAX_USER_NAME_LENGTH)
        prefix_key = ""
        if user_name_prefix and not violations:
            try:
                prefix_key = user_name_key(user_name_prefix)
            except NotAUserName as refused:
                violations.append(FieldViolation("user_name_prefix", str(refused)))
        query: tuple[str, ...] = (ctx.org_id, prefix_key, user_type)
        if contains:  # a token of one search does not resume another
            query += ("contains", _folded(contains))
        after, bad_token = self._pages.resume_after("page_token", token, query)
        check.raise_if_any(violations + bad_token)
        if contains:
            return await self._search(ctx, prefix_key, user_type, size, after, contains, query)
        users = await self._store.users_page(
            ctx.org_id, prefix_key, user_type, after, paging.page_size(size) + 1
        )
        page, next_token = self._pages.cut(users, size, query, lambda user: user.user_name_key)
        return [self._with_profile(user) for user in page], next_token

    async def _search(
        self,
        ctx: CallContext,
        prefix_key: str,
        user_type: str,
        size: int,
        after: str,
        contains: str,
        query: tuple[str, ...],
    ) -> tuple[list[tuple[UserView, UserProfile]], str]:
        needle = _folded(contains)
        try:  # a user name's key holds the needle's key; text no name can be matches names only
            key_needle: str | None = user_name_key(contains)
        except NotAUserName:
            key_needle = None
        limit = paging.page_size(size)
        found: list[UserRecord] = []
        read, last = 0, after
        # A stretch at a time, so that a search that matches often stops early.
        while len(found) <= limit and read < SEARCH_SCAN:
            stretch = await self._store.users_page(ctx.org_id, prefix_key, user_type, last, SEARCH_WINDOW)
            found += [
                user
                for user in stretch
                if (key_needle is not None and key_needle in user.user_name_key)
                or needle in _folded(user.name)
                or needle in _folded(user.display_name)
            ]
            read += len(stretch)
            if len(stretch) < SEARCH_WINDOW:  # the end of the organisation's users
                if len(found) <= limit:
                    return [self._with_profile(user) for user in found], ""
                break
            last = stretch[-1].user_name_key
        if len(found) > limit:  # more matches than a page: the next starts after the page's last
            found, last = found[:limit], found[limit - 1].user_name_key
        # else the read stopped at SEARCH_SCAN: the next page reads on from where it stopped
        return [self._with_profile(user) for user in found], self._pages.token(query, last)

    async def organizations(
        self, ctx: CallContext, size: int, token: str
    ) -> tuple[list[tuple[OrgRecord, frozenset[str]]], str]:
        """A page of the organisations the caller may act in (every one for an IAM_OWNER; else its
        own and those it is a member of), each with the caller's roles there, and the token of the
        next page ("" after the last)."""
        principal = ctx.principal
        query = ("organizations", principal.user_id)
        after, bad_token = self._pages.resume_after("page_token", token, query)
        check.raise_if_any(paging.check_page_size("page_size", size) + bad_token)
        reach = None if principal.is_iam_owner else sorted({principal.org_id, *principal.roles})
        orgs = await self._store.orgs_page(reach, after, paging.page_size(size) + 1)
        page, next_token = self._pages.cut(orgs, size, query, lambda org: org.id)
        return [(org, principal.roles.get(org.id, frozenset())) for org in page], next_token

    async def me(self, ctx: CallContext) -> Me:
        """The caller itself, as its credential authenticated it (the roles are the credential's
        reading, the same the call's permissions were decided on)."""
        principal = ctx.principal
        user = await self._store.user(principal.user_id)
        if user is None:  # removed since its credential was read: the credential died with it
            raise invalid_token()
        view, profile = self._with_profile(user)
        memberships = {
            org_id: (roles, principal.permissions_in(org_id)) for org_id, roles in principal.roles.items()
        }
        instance = PERMISSIONS if principal.is_iam_owner else frozenset[str]()
        return Me(view, profile, memberships, instance)

    async def members(
        self, ctx: CallContext, user_id: str, size: int, token: str
    ) -> tuple[list[Member], str]:
        """A page of the context organisation's members in the order of their user ids (or the
        one of user_id), and the token of the next page ("" after the last)."""
        violations = paging.check_page_size("page_size", size)
        if user_id:
            violations += check.check_id("user_id", user_id)
        query = ("members", ctx.org_id, user_id)
        after, bad_token = self._pages.resume_after("page_token", token, query)
        check.raise_if_any(violations + bad_token)
        rows = await self._store.members_page(ctx.org_id, user_id, after, paging.page_size(size) + 1)
        page, next_token = self._pages.cut(rows, size, query, lambda member: member.user.id)
        return [self._member(row) for row in page], next_token

    async def members_at(
        self, ctx: CallContext, user_id: str, offset: int, limit: int
    ) -> tuple[list[Member], int]:
        """ZITADEL's v1 paging: limit members (0: the default page) from offset on, in the order
        of their user ids, and how many there are in all."""
        violations = paging.check_page_size("query.limit", limit)
        if offset > MAX_MEMBER_OFFSET:
            violations.append(FieldViolation("query.offset", f"must be at most {MAX_MEMBER_OFFSET}"))
        if user_id:
            violations += check.check_id("queries.user_id_query.user_id", user_id)
        check.raise_if_any(violations)
        rows = await self._store.members_page(ctx.org_id, user_id, "", paging.page_size(limit), offset)
        return [self._member(row) for row in rows], await self._store.member_count(ctx.org_id, user_id)

    def _member(self, row: MemberRecord) -> Member:
        view, profile = self._with_profile(row.user)
        return Member(view, profile, row.roles)

    async def user_metadata(self, ctx: CallContext, user_id: str) -> list[MetadataView]:
        """A user's metadata, by key: at most MAX_METADATA_KEYS of them, so no paging."""
        user = await self._user_of(ctx, user_id)
        return [
            MetadataView(m.key, m.value, Details(m.sequence, m.created_at, m.changed_at, user.org_id))
            for m in await self._store.user_metadata(user_id)
        ]

    async def user_metadata_of_key(self, ctx: CallContext, user_id: str, key: str) -> MetadataView:
        """One key of a user's metadata (NOT_FOUND for a key it does not have)."""
        for metadata in await self.user_metadata(ctx, user_id):
            if metadata.key == key:
                return metadata
        raise NotFound("METADATA_NOT_FOUND", "the user has no metadata of this key")

    async def personal_access_tokens(self, ctx: CallContext, user_id: str) -> list[PersonalAccessTokenView]:
        """A machine user's personal access tokens: their ids and dates, never a token or a hash."""
        user = await self._user_of(ctx, user_id)
        if user.type != USER_TYPE_MACHINE:
            raise user_not_machine()
        return [
            PersonalAccessTokenView(t.token_id, t.created_at, t.expires_at, t.last_used_at)
            for t in await self._store.personal_access_tokens(user_id)
        ]

    async def secrets(self, ctx: CallContext, user_id: str) -> list[SecretView]:
        """A machine user's client secrets, live and expired: their ids, hints and dates, never a
        secret or a hash."""
        user = await self._user_of(ctx, user_id)
        if user.type != USER_TYPE_MACHINE:
            raise user_not_machine()
        now = self._clock.now()
        return [
            SecretView(
                s.secret_id,
                hint(s.lookup),
                s.description,
                s.created_at,
                s.expires_at,
                s.last_used_at,
                s.live(now),
            )
            for s in await self._store.secrets(user_id)
        ]

    async def machine_keys(self, ctx: CallContext, user_id: str) -> list[MachineKeyView]:
        """A machine user's keys, live and expired: their ids, types and dates, never key material."""
        user = await self._user_of(ctx, user_id)
        if user.type != USER_TYPE_MACHINE:
            raise user_not_machine()
        now = self._clock.now()
        return [
            MachineKeyView(
                k.key_id,
                k.user_id,
                user.org_id,
                k.key_type,
                k.created_at,
                k.expires_at,
                k.last_used_at,
                k.live(now),
            )
            for k in await self._store.machine_keys(user_id)
        ]

    async def readable_machine_keys(self, ctx: CallContext, user_id: str) -> list[MachineKeyView]:
        """The keys of a machine user of any organisation where the caller may read users
        (ZITADEL's v2 ListKeys searches the instance); a user it may not read there is as absent
        as one that does not exist."""
        check.raise_if_any(check.check_id("user_id", user_id))
        user = await self._store.user(user_id)
        if user is None or not ctx.principal.has(USER_READ, user.org_id):
            raise user_not_found()
        return await self.machine_keys(CallContext(ctx.principal, user.org_id), user_id)

    async def machine_key(self, ctx: CallContext, user_id: str, key_id: str) -> MachineKeyView:
        """One key of a machine user (NOT_FOUND for a key it does not have)."""
        check.raise_if_any(check.check_id("key_id", key_id))
        for key in await self.machine_keys(ctx, user_id):
            if key.key_id == key_id:
                return key
        raise NotFound("KEY_NOT_FOUND", "the machine user has no key with this id")

    async def trusted_issuers(self, ctx: CallContext) -> list[TrustedIssuerRecord]:
        """The context organisation's trusted issuers (issue 34), oldest first."""
        return await self._store.trusted_issuers(ctx.org_id)

    async def federated_credentials(self, ctx: CallContext, user_id: str) -> list[FederatedCredentialRecord]:
        """A machine user's federated credentials (issue 34), oldest first."""
        user = await self._user_of(ctx, user_id)
        if user.type != USER_TYPE_MACHINE:
            raise user_not_machine()
        return await self._store.federated_credentials(user_id)

    async def secret_policy(self, ctx: CallContext) -> SecretPolicy:
        """The context organisation's rules for new secrets, with the default limit filled in."""
        policy = SecretPolicy.of(await self._store.secret_policy(ctx.org_id))
        return replace(policy, max_secrets_per_user=max_secrets(policy), max_keys_per_user=max_keys(policy))

    async def project(self, ctx: CallContext, project_id: str, field: str = "id") -> ProjectRecord:
        """A project of the context organisation; one of another is as absent as a missing one."""
        check.raise_if_any(check.check_id(field, project_id))
        project = await self._store.project(project_id)
        if project is None or project.org_id != ctx.org_id:
            raise NotFound("PROJECT_NOT_FOUND", "project not found")
        return project

    async def projects(self, ctx: CallContext) -> list[ProjectRecord]:
        """The context organisation's projects, in the order of their ids."""
        return await self._store.projects(ctx.org_id)

    async def project_roles(self, ctx: CallContext, project_id: str) -> list[ProjectRoleRecord]:
        await self.project(ctx, project_id, "project_id")
        return await self._store.project_roles(project_id)

    async def apps(self, ctx: CallContext, project_id: str) -> list[AppRecord]:
        """The project's applications: their client ids, never a secret or its hash."""
        await self.project(ctx, project_id, "project_id")
        return await self._store.apps(project_id)

    async def app_keys(self, ctx: CallContext, project_id: str, app_id: str) -> list[AppKeyView]:
        """An application's keys, live and expired, oldest first: their ids, types and dates,
        never key material."""
        check.raise_if_any(check.check_id("app_id", app_id))
        project = await self.project(ctx, project_id, "project_id")
        if all(app.app_id != app_id for app in await self._store.apps(project.id)):
            raise NotFound("APP_NOT_FOUND", "application not found")
        now = self._clock.now()
        return [
            AppKeyView(
                k.key_id, k.app_id, project.org_id, k.key_type, k.created_at, k.expires_at, k.live(now)
            )
            for k in await self._store.app_keys(app_id)
        ]

    async def app_key(self, ctx: CallContext, project_id: str, app_id: str, key_id: str) -> AppKeyView:
        """One key of an application (NOT_FOUND for a key it does not have)."""
        check.raise_if_any(check.check_id("key_id", key_id))
        for key in await self.app_keys(ctx, project_id, app_id):
            if key.key_id == key_id:
                return key
        raise NotFound("KEY_NOT_FOUND", "the application has no key with this id")

    async def user_grants(self, ctx: CallContext) -> list[GrantView]:
        """The grants of the context organisation's projects, with their names."""
        org = await self._store.org(ctx.org_id)
        org_name = "" if org is None else org.name
        projects = {p.id: p.name for p in await self._store.projects(ctx.org_id)}
        views = []
        for grant in await self._store.user_grants(ctx.org_id):
            user = await self._store.user(grant.user_id)
            details = Details(grant.sequence, grant.created_at, grant.changed_at, grant.org_id)
            views.append(
                GrantView(
                    grant.grant_id,
                    grant.user_id,
                    "" if user is None else user.user_name,
                    grant.project_id,
                    projects.get(grant.project_id, ""),
                    grant.org_id,
                    org_name,
                    sorted(grant.role_keys),
                    details,
                )
            )
        return views

    async def _user_of(self, ctx: CallContext, user_id: str) -> UserRecord:
        """The user of the context organisation; a user of another is as absent as a missing one."""
        check.raise_if_any(check.check_id("user_id", user_id))
        user = await self._store.user(user_id)
        if user is None or user.org_id != ctx.org_id:
            raise user_not_found()
        return user
