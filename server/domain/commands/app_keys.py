"""Commands on the keys of API applications with private_key_jwt (ZITADEL's AddAppKey,
RemoveAppKey): the key pairs whose private half signs the application's client assertions at the
introspection endpoint (RFC 7523 §2.2).

A key is a credential of the project, as the application's secret is: made and removed by a caller
who may change the project (project.write, declared on the method, in the project's
organisation), for an application that authenticates with keys. It is bounded by the organisation's
policy as a machine key is (its maxKeyLifetime, and maxKeysPerUser live keys per application), and
it ends with its application and its project. The key material is machine_key_material's, and a
generated pair is made as a machine key's is (key_generation.py), outside the project's turn: only
its public half is written, and the private half is answered once, in ZITADEL's application key
file.
"""

from dataclasses import dataclass
from datetime import datetime

from server.clock import to_micros
from server.domain import machine_key_material as material
from server.domain import secret_policy as rules
from server.domain import validation as check
from server.domain.commands.projects import AUTH_METHOD_PRIVATE_KEY_JWT, ProjectCommands, next_of_project
from server.domain.errors import FailedPrecondition, NotFound
from server.domain.model import Details
from server.domain.permissions import CallContext
from server.domain.secret_policy import SecretPolicy
from server.events.base import NewEvent
from server.events.project import AppKeyAdded, AppKeyRemoved
from server.store.contract import AppRecord, ProjectRecord


@dataclass(frozen=True)
class IssuedAppKey:
    key_id: str
    app_id: str
    client_id: str
    expiration_date: datetime | None
    # ZITADEL's application key file (JSON, with the private key) for a generated pair; None for
    # an uploaded public key.
    key_file: bytes | None
    details: Details

    def __repr__(self) -> str:  # the private key must never reach a log through a repr
        return (
            f"IssuedAppKey(key_id={self.key_id!r}, app_id={self.app_id!r}, client_id={self.client_id!r},"
            f" expiration_date={self.expiration_date!r}, key_file='***', details={self.details!r})"
        )


def app_key_not_found() -> NotFound:
    return NotFound("KEY_NOT_FOUND", "the application has no key with this id")


class AppKeyCommands(ProjectCommands):
    async def add_app_key(
        self,
        ctx: CallContext,
        project_id: str,
        app_id: str,
        expires_at: datetime | None,
        public_key: bytes,
    ) -> IssuedAppKey:
        """A new key of the application: the uploaded public key (PEM), or, if none is given, a
        new RSA key pair whose private half is answered once in the key file. Expires when asked
        (None: never), at most the organisation's maxKeyLifetime from now."""
        policy = SecretPolicy.of(await self._store.secret_policy(ctx.org_id))
        expires_at, violations = rules.key_expiry(policy, expires_at, self._clock.now())
        violations = check.check_id("project_id", project_id) + check.check_id("app_id", app_id) + violations
        uploaded: material.PublicKey | None = None
        if public_key:
            uploaded, refused = material.read_public_key(public_key)
            violations += refused
        check.raise_if_any(violations)
        pair = None
        if uploaded is None:
            # The gates before the work: a caller who may not add a key here costs no key pair.
            await self._room_for_an_app_key(ctx, project_id, app_id, policy)
            pair = await self._key_pairs.new_pair()
        public = pair.public if pair is not None else uploaded
        assert public is not None  # uploaded, or else generated
        key_id = self._ids.new_id()
        added = AppKeyAdded(
            app_id, key_id, public.pem, public.key_type, None if expires_at is None else to_micros(expires_at)
        )
        client_id = ""

        async def decide() -> list[NewEvent]:
            nonlocal client_id
            project, app = await self._room_for_an_app_key(ctx, project_id, app_id, policy)
            client_id = app.client_id
            return [next_of_project(project, added)]

        [stored] = await self._write(ctx, project_id, decide)
        content = None if pair is None else material.app_key_file(key_id, app_id, client_id, pair.private_pem)
        return IssuedAppKey(key_id, app_id, client_id, expires_at, content, Details.of_change(stored))

    async def _room_for_an_app_key(
        self, ctx: CallContext, project_id: str, app_id: str, policy: SecretPolicy
    ) -> tuple[ProjectRecord, AppRecord]:
        """The project and its application that authenticates with keys, if it has fewer live
        keys than the policy's maxKeysPerUser."""
        project = await self._project_in_reach(ctx, project_id)
        app = await self._app_of(project, app_id)
        if app.auth_method != AUTH_METHOD_PRIVATE_KEY_JWT:
            # As ZITADEL: a key serves only an application that authenticates with keys.
            raise FailedPrecondition(
                "APP_AUTH_METHOD_NOT_PRIVATE_KEY_JWT",
                "the application authenticates with a secret: change its auth method to"
                " API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT first",
            )
        now = self._clock.now()
        live = sum(key.live(now) for key in await self._store.app_keys(app_id))
        rules.check_key_count(policy, live + 1, "the application")
        return project, app

    async def remove_app_key(self, ctx: CallContext, project_id: str, app_id: str, key_id: str) -> Details:
        """One key of the application: it stops authenticating at once."""
        check.raise_if_any(
            check.check_id("project_id", project_id)
            + check.check_id("app_id", app_id)
            + check.check_id("key_id", key_id)
        )

        async def decide() -> list[NewEvent]:
            project = await self._project_in_reach(ctx, project_id)
            await self._app_of(project, app_id)
            if all(key.key_id != key_id for key in await self._store.app_keys(app_id)):
                raise app_key_not_found()
            return [next_of_project(project, AppKeyRemoved(app_id, key_id))]

        [stored] = await self._write(ctx, project_id, decide)
        return Details.of_change(stored)
