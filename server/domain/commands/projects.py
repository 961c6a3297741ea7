"""Commands on projects: a project, its roles, its API applications (resource servers, each with
a client secret), and user grants (roles of a project given to a user).

Every command acts on a project of the context organisation; one of another organisation is as
absent as one that does not exist. The permission each needs (project.write, project.grant.write)
is the method's, checked in that organisation before the command runs, so a grant can only give
roles of a project the caller may manage there.

An API application's client secret is a credential of the project: it reads the project's tokens
at the introspection endpoint. It is made as a machine user's is (secret_format.py, hashed with
bcrypt outside the project's turn), shown once, and stored only as its hash. An application with
private_key_jwt has no secret: it authenticates with its keys instead (app_keys.py).
"""

from server.domain import validation as check
from server.domain.commands.writes import Writer
from server.domain.errors import AlreadyExists, FailedPrecondition, FieldViolation, NotFound, user_not_found
from server.domain.model import Created, Details, IssuedAppSecret
from server.domain.permissions import CallContext
from server.domain.secret_format import new_secret
from server.events.base import Event, NewEvent
from server.events.grant import UserGrantAdded, UserGrantRemoved
from server.events.project import (
    ApiAppAdded,
    ApiAppAuthMethodChanged,
    ApiAppSecretChanged,
    AppRemoved,
    ProjectAdded,
    ProjectRemoved,
    ProjectRoleAdded,
    ProjectRoleRemoved,
)
from server.store.contract import AppRecord, GrantRecord, ProjectRecord

AUTH_METHOD_BASIC = "basic"  # client_secret_basic: ZITADEL's API_AUTH_METHOD_TYPE_BASIC
# private_key_jwt (RFC 7523 §2.2) with the application's keys: API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT
AUTH_METHOD_PRIVATE_KEY_JWT = "private_key_jwt"
AUTH_METHODS = (AUTH_METHOD_BASIC, AUTH_METHOD_PRIVATE_KEY_JWT)


def project_not_found() -> NotFound:
    return NotFound("PROJECT_NOT_FOUND", "project not found")


def app_not_found() -> NotFound:
    return NotFound("APP_NOT_FOUND", "application not found")


def next_of_project(project: ProjectRecord, event: Event) -> NewEvent:
    """The project's next event, on the snapshot it was decided on."""
    return NewEvent(project.id, project.sequence + 1, project.org_id, event)


def check_auth_method(auth_method: str) -> list[FieldViolation]:
    if auth_method in AUTH_METHODS:
        return []
    return [
        FieldViolation(
            "auth_method_type",
            "must be API_AUTH_METHOD_TYPE_BASIC or API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT",
        )
    ]


def client_id_of(app_id: str, project_id: str) -> str:
    """An API application's client id: its id at its project's, as ZITADEL's are `{app}@{project}`."""
    return f"{app_id}@{project_id}"


class ProjectCommands(Writer):
    async def _project_in_reach(self, ctx: CallContext, project_id: str) -> ProjectRecord:
        project = await self._store.project(project_id)
        if project is None or project.org_id != ctx.org_id:
            raise project_not_found()
        return project

    async def _app_of(self, project: ProjectRecord, app_id: str) -> AppRecord:
        found = [app for app in await self._store.apps(project.id) if app.app_id == app_id]
        if not found:
            raise app_not_found()
        return found[0]

    async def add_project(self, ctx: CallContext, name: str) -> Created:
        check.raise_if_any(check.check_text("name", name))
        project_id = self._ids.new_id()
        [stored] = await self._append(ctx, [NewEvent(project_id, 1, ctx.org_id, ProjectAdded(name))])
        return Created(project_id, Details.of_change(stored))

    async def remove_project(self, ctx: CallContext, project_id: str) -> Details:
        """The project, with its roles, applications (their secrets end at once) and grants."""
        check.raise_if_any(check.check_id("id", project_id))

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            return [next_of_project(project, ProjectRemoved())]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)

    async def add_project_role(
        self, ctx: CallContext, project_id: str, role_key: str, display_name: str, group: str
    ) -> Details:
        check.raise_if_any(
            check.check_id("project_id", project_id)
            + check.check_role_key("role_key", role_key)
            + check.check_text("display_name", display_name, required=False)
            + check.check_text("group", group, required=False)
        )

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            if any(role.key == role_key for role in await self._store.project_roles(project_id)):
                raise AlreadyExists("ROLE_ALREADY_EXISTS", "the project has a role with this key")
            return [next_of_project(project, ProjectRoleAdded(role_key, display_name, group))]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)

    async def remove_project_role(self, ctx: CallContext, project_id: str, role_key: str) -> Details:
        """The role; no grant asserts it from then on."""
        check.raise_if_any(
            check.check_id("project_id", project_id) + check.check_role_key("role_key", role_key)
        )

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            if all(role.key != role_key for role in await self._store.project_roles(project_id)):
                raise NotFound("ROLE_NOT_FOUND", "the project has no role with this key")
            return [next_of_project(project, ProjectRoleRemoved(role_key))]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)

    async def add_api_app(
        self, ctx: CallContext, project_id: str, name: str, auth_method: str
    ) -> IssuedAppSecret:
        """An API application: with client_secret_basic, its client id and secret, shown once;
        with private_key_jwt, its client id and no secret (its keys are added with add_app_key)."""
        check.raise_if_any(
            check.check_id("project_id", project_id)
            + check.check_text("name", name)
            + check_auth_method(auth_method)
        )
        app_id = self._ids.new_id()
        text = lookup = hashed = ""
        if auth_method == AUTH_METHOD_BASIC:
            secret = new_secret()
            text, lookup = secret.text, secret.lookup
            hashed = await self._hasher.hash(secret.text)  # outside the turn: bcrypt is the slow part
        client_id = client_id_of(app_id, project_id)

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            added = ApiAppAdded(app_id, name, client_id, auth_method, lookup, hashed)
            return [next_of_project(project, added)]

        [stored] = await self._write(ctx, project_id, decide)
        return IssuedAppSecret(app_id, client_id, text, Details.of_change(stored))

    async def change_api_auth_method(
        self, ctx: CallContext, project_id: str, app_id: str, auth_method: str
    ) -> Details:
        """How the application authenticates (ZITADEL's UpdateAPIAppConfig). Its secret ends with
        the change; to BASIC, a new one is made with regenerate_api_client_secret."""
        check.raise_if_any(
            check.check_id("project_id", project_id)
            + check.check_id("app_id", app_id)
            + check_auth_method(auth_method)
        )

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            if (await self._app_of(project, app_id)).auth_method == auth_method:
                raise FailedPrecondition("NO_CHANGES", "the application has this auth method already")
            return [next_of_project(project, ApiAppAuthMethodChanged(app_id, auth_method))]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)

    async def regenerate_api_client_secret(
        self, ctx: CallContext, project_id: str, app_id: str
    ) -> IssuedAppSecret:
        """A new secret for the application; the old one stops working at once."""
        check.raise_if_any(check.check_id("project_id", project_id) + check.check_id("app_id", app_id))
        secret = new_secret()
        hashed = await self._hasher.hash(secret.text)
        client_id = ""

        async def decide() -> list[NewEvent]:
            nonlocal client_id
            project = await self._project_in_reach(ctx, project_id)
            app = await self._app_of(project, app_id)
            if app.auth_method != AUTH_METHOD_BASIC:
                raise FailedPrecondition(
                    "APP_AUTH_METHOD_NOT_BASIC",
                    "the application authenticates with its keys (private_key_jwt), not a secret",
                )
            client_id = app.client_id
            return [next_of_project(project, ApiAppSecretChanged(app_id, secret.lookup, hashed))]

        [stored] = await self._write(ctx, project_id, decide)
        return IssuedAppSecret(app_id, client_id, secret.text, Details.of_change(stored))

    async def remove_app(self, ctx: CallContext, project_id: str, app_id: str) -> Details:
        check.raise_if_any(check.check_id("project_id", project_id) + check.check_id("app_id", app_id))

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            await self._app_of(project, app_id)
            return [next_of_project(project, AppRemoved(app_id))]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)

    async def add_user_grant(
        self, ctx: CallContext, user_id: str, project_id: str, role_keys: list[str]
    ) -> Created:
        """Roles of a project of the context organisation, given to a user of it. Each key must be
        a role of the project; a user has one grant per project."""
        check.raise_if_any(
            check.check_id("user_id", user_id)
            + check.check_id("project_id", project_id)
            + check.check_role_keys("role_keys", role_keys)
        )
        grant_id, keys = self._ids.new_id(), tuple(sorted(set(role_keys)))

        async def decide() -> list[NewEvent]:
            user = await self._store.user(user_id)
            if user is None or user.org_id != ctx.org_id:
                raise user_not_found()
            await self._project_in_reach(ctx, project_id)
            known = {role.key for role in await self._store.project_roles(project_id)}
            if not set(keys) <= known:
                raise FailedPrecondition("ROLE_NOT_FOUND", "the project has no role with one of these keys")
            if any(g.project_id == project_id for g in await self._store.grants_of_user(user_id)):
                raise AlreadyExists("GRANT_ALREADY_EXISTS", "the user has a grant of this project")
            return [NewEvent(grant_id, 1, ctx.org_id, UserGrantAdded(user_id, project_id, keys))]

        # In the user's turn: two grants of one project to one user in one process take turns.
        [stored] = await self._write(ctx, f"grants:{user_id}", decide)
        return Created(grant_id, Details.of_change(stored))

    async def remove_user_grant(self, ctx: CallContext, user_id: str, grant_id: str) -> Details:
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("grant_id", grant_id))

        async def decide() -> list[NewEvent]:
            grant = await self._grant_in_reach(ctx, user_id, grant_id)
            return [NewEvent(grant_id, grant.sequence + 1, grant.org_id, UserGrantRemoved())]

        [stored] = await self._write(ctx, f"grants:{user_id}", decide)
        return Details.of_change(stored)

    async def _grant_in_reach(self, ctx: CallContext, user_id: str, grant_id: str) -> GrantRecord:
        grant = await self._store.user_grant(grant_id)
        if grant is None or grant.org_id != ctx.org_id or grant.user_id != user_id:
            raise NotFound("GRANT_NOT_FOUND", "user grant not found")
        return grant
