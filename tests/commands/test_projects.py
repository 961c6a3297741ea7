"""server/domain/commands/projects.py: the events each command on projects, their roles, API
applications and user grants decides on."""

from pathlib import Path

from server.domain.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from server.domain.model import IssuedAppSecret
from server.domain.permissions import ORG_OWNER, PROJECT_OWNER
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
from server.store.sqlite import SqliteStore
from tests.commands.table import (
    GENERATED,
    ORG,
    Case,
    Refused,
    caller,
    machine_added,
    org_added,
    run,
    table,
)

OWNER = caller({ORG: frozenset({ORG_OWNER})})
PROJECT_OWNER_CALL = caller({ORG: frozenset({PROJECT_OWNER})})
OTHER_ORG = "2"


def on_project(sequence: int, event: Event, project_id: str = "20", org_id: str = ORG) -> NewEvent:
    return NewEvent(project_id, sequence, org_id, event)


PROJECT = [org_added(), on_project(1, ProjectAdded("shop"))]
WITH_ROLE = [*PROJECT, on_project(2, ProjectRoleAdded("reader", "Reader", "g"))]
THEIR_PROJECT = [org_added(), org_added(OTHER_ORG), on_project(1, ProjectAdded("theirs"), org_id=OTHER_ORG)]
WITH_APP = [*PROJECT, on_project(2, ApiAppAdded("30", "api", "30@20", "basic", "lookup", "hash"))]
GRANTED = [*WITH_ROLE, machine_added("10"), NewEvent("40", 1, ORG, UserGrantAdded("10", "20", ("reader",)))]


@table(
    Case(
        "a project",
        [org_added()],
        lambda c: c.add_project(OWNER, "shop"),
        [on_project(1, ProjectAdded("shop"), "101")],
    ),
    Case(
        "a project has a name",
        [org_added()],
        lambda c: c.add_project(OWNER, " "),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case("remove it", PROJECT, lambda c: c.remove_project(OWNER, "20"), [on_project(2, ProjectRemoved())]),
    Case(
        "another organisation's project is not found",
        THEIR_PROJECT,
        lambda c: c.remove_project(OWNER, "20"),
        Refused(NotFound, "PROJECT_NOT_FOUND"),
    ),
    Case(
        "a role",
        PROJECT,
        lambda c: c.add_project_role(PROJECT_OWNER_CALL, "20", "reader", "Reader", "g"),
        [on_project(2, ProjectRoleAdded("reader", "Reader", "g"))],
    ),
    Case(
        "a role key once",
        WITH_ROLE,
        lambda c: c.add_project_role(OWNER, "20", "reader", "", ""),
        Refused(AlreadyExists, "ROLE_ALREADY_EXISTS"),
    ),
    Case(
        "a role key has no white space",
        PROJECT,
        lambda c: c.add_project_role(OWNER, "20", "a b", "", ""),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "remove a role",
        WITH_ROLE,
        lambda c: c.remove_project_role(OWNER, "20", "reader"),
        [on_project(3, ProjectRoleRemoved("reader"))],
    ),
    Case(
        "remove only a role there is",
        PROJECT,
        lambda c: c.remove_project_role(OWNER, "20", "reader"),
        Refused(NotFound, "ROLE_NOT_FOUND"),
    ),
    Case(
        "an API application",
        PROJECT,
        lambda c: c.add_api_app(OWNER, "20", "api", "basic"),
        [on_project(2, ApiAppAdded("101", "api", "101@20", "basic", GENERATED, GENERATED))],
    ),
    Case(
        "an application with private_key_jwt has no secret",
        PROJECT,
        lambda c: c.add_api_app(OWNER, "20", "api", "private_key_jwt"),
        [on_project(2, ApiAppAdded("101", "api", "101@20", "private_key_jwt", "", ""))],
    ),
    Case(
        "an auth method ZITADEL has",
        PROJECT,
        lambda c: c.add_api_app(OWNER, "20", "api", "5"),
        Refused(InvalidArgument, "INVALID_ARGUMENT"),
    ),
    Case(
        "change the auth method",
        WITH_APP,
        lambda c: c.change_api_auth_method(OWNER, "20", "30", "private_key_jwt"),
        [on_project(3, ApiAppAuthMethodChanged("30", "private_key_jwt"))],
    ),
    Case(
        "a change that changes nothing",
        WITH_APP,
        lambda c: c.change_api_auth_method(OWNER, "20", "30", "basic"),
        Refused(FailedPrecondition, "NO_CHANGES"),
    ),
    Case(
        "no secret for an application that authenticates with keys",
        [*PROJECT, on_project(2, ApiAppAdded("30", "api", "30@20", "private_key_jwt", "", ""))],
        lambda c: c.regenerate_api_client_secret(OWNER, "20", "30"),
        Refused(FailedPrecondition, "APP_AUTH_METHOD_NOT_BASIC"),
    ),
    Case(
        "an application of another organisation's project",
        THEIR_PROJECT,
        lambda c: c.add_api_app(OWNER, "20", "api", "basic"),
        Refused(NotFound, "PROJECT_NOT_FOUND"),
    ),
    Case(
        "a new secret",
        WITH_APP,
        lambda c: c.regenerate_api_client_secret(OWNER, "20", "30"),
        [on_project(3, ApiAppSecretChanged("30", GENERATED, GENERATED))],
    ),
    Case(
        "a new secret of an application there is",
        WITH_APP,
        lambda c: c.regenerate_api_client_secret(OWNER, "20", "31"),
        Refused(NotFound, "APP_NOT_FOUND"),
    ),
    Case(
        "remove an application",
        WITH_APP,
        lambda c: c.remove_app(OWNER, "20", "30"),
        [on_project(3, AppRemoved("30"))],
    ),
    Case(
        "a grant",
        [*WITH_ROLE, machine_added("10")],
        lambda c: c.add_user_grant(PROJECT_OWNER_CALL, "10", "20", ["reader", "reader"]),
        [NewEvent("101", 1, ORG, UserGrantAdded("10", "20", ("reader",)))],
    ),
    Case(
        "a grant gives roles the project has",
        [*WITH_ROLE, machine_added("10")],
        lambda c: c.add_user_grant(OWNER, "10", "20", ["writer"]),
        Refused(FailedPrecondition, "ROLE_NOT_FOUND"),
    ),
    Case(
        "one grant of a project per user",
        GRANTED,
        lambda c: c.add_user_grant(OWNER, "10", "20", ["reader"]),
        Refused(AlreadyExists, "GRANT_ALREADY_EXISTS"),
    ),
    Case(
        "a grant to a user of the organisation",
        [*WITH_ROLE, org_added(OTHER_ORG), machine_added("10", org_id=OTHER_ORG)],
        lambda c: c.add_user_grant(OWNER, "10", "20", ["reader"]),
        Refused(NotFound, "USER_NOT_FOUND"),
    ),
    Case(
        "no grant of another organisation's project",
        [*THEIR_PROJECT, machine_added("10")],
        lambda c: c.add_user_grant(OWNER, "10", "20", ["reader"]),
        Refused(NotFound, "PROJECT_NOT_FOUND"),
    ),
    Case(
        "remove a grant",
        GRANTED,
        lambda c: c.remove_user_grant(OWNER, "10", "40"),
        [NewEvent("40", 2, ORG, UserGrantRemoved())],
    ),
    Case(
        "remove a grant of that user only",
        [*GRANTED, machine_added("11")],
        lambda c: c.remove_user_grant(OWNER, "11", "40"),
        Refused(NotFound, "GRANT_NOT_FOUND"),
    ),
)
async def test_project_commands(case: Case, tmp_path: Path) -> None:
    await run(case, tmp_path)


async def test_the_application_holds_the_hash_of_the_secret_answered(tmp_path: Path) -> None:
    added = on_project(2, ApiAppAdded("101", "api", "101@20", "basic", GENERATED, GENERATED))
    case = Case("add", PROJECT, lambda c: c.add_api_app(OWNER, "20", "api", "basic"), [added])
    answer, [pushed] = await run(case, tmp_path)
    assert isinstance(answer, IssuedAppSecret)
    assert isinstance(pushed.event, ApiAppAdded)
    assert answer.client_secret not in repr(answer)
    assert pushed.event.secret_hash.startswith("$2b$")
    assert answer.client_secret not in pushed.event.secret_hash


async def test_removing_a_project_removes_its_roles_apps_and_grants(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        await store.append([*GRANTED, on_project(3, ApiAppAdded("30", "api", "30@20", "basic", "l", "h"))])
        assert [g.grant_id for g in await store.grants_of_user("10")] == ["40"]
        assert (await store.app_by_client_id("30@20")) is not None
        await store.append([on_project(4, ProjectRemoved())])
        assert await store.project("20") is None
        assert (
            await store.project_roles("20"),
            await store.apps("20"),
            await store.grants_of_user("10"),
        ) == ([], [], [])
        assert await store.app_by_client_id("30@20") is None
    finally:
        await store.close()
