"""Events of a project (aggregate `project`, resource owner: the organisation that owns it): the
project, its roles and its API applications. A user grant is an aggregate of its own
(`usergrant`, grant.py), as in ZITADEL.

An API application's client secret is a credential of the project (it reads the project's tokens
at the introspection endpoint): its events carry the bcrypt hash, never the secret, and the audit
hides the hash (server/domain/audit.py). So are its keys (an application with private_key_jwt):
their events carry the public key only, as a machine key's do (events/machine_key.py)."""

from dataclasses import dataclass, field

from server.events.base import AGGREGATE_PROJECT, Event


@dataclass(frozen=True)
class ProjectAdded(Event, type_name="project.added", aggregate=AGGREGATE_PROJECT, changes_power=False):
    name: str


@dataclass(frozen=True)
class ProjectRemoved(Event, type_name="project.removed", aggregate=AGGREGATE_PROJECT, changes_power=True):
    """Its roles, applications and user grants end with it: an application's secret is a
    credential, so this takes power away."""


@dataclass(frozen=True)
class ProjectRoleAdded(
    Event, type_name="project.role.added", aggregate=AGGREGATE_PROJECT, changes_power=False
):
    role_key: str
    display_name: str
    group: str


@dataclass(frozen=True)
class ProjectRoleRemoved(
    Event, type_name="project.role.removed", aggregate=AGGREGATE_PROJECT, changes_power=True
):
    """No grant asserts the role from now on."""

    role_key: str


@dataclass(frozen=True)
class ApiAppAdded(
    Event, type_name="project.application.api.added", aggregate=AGGREGATE_PROJECT, changes_power=False
):
    """An API application (a resource server) with client_secret_basic: its client id, and the
    bcrypt hash of its secret with the secret's lookup key (secret_format.py). A new credential is
    in no cache."""

    app_id: str
    name: str
    client_id: str
    # "basic": API_AUTH_METHOD_TYPE_BASIC; "private_key_jwt": API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT,
    # with no secret (both secret fields "": no secret's lookup key is ever "").
    auth_method: str
    secret_lookup: str
    secret_hash: str = field(repr=False)


@dataclass(frozen=True)
class ApiAppSecretChanged(
    Event,
    type_name="project.application.api.secret.changed",
    aggregate=AGGREGATE_PROJECT,
    changes_power=True,
):
    """A new secret for the application; the old one stops working at once."""

    app_id: str
    secret_lookup: str
    secret_hash: str = field(repr=False)


@dataclass(frozen=True)
class AppRemoved(
    Event, type_name="project.application.removed", aggregate=AGGREGATE_PROJECT, changes_power=True
):
    app_id: str


@dataclass(frozen=True)
class ApiAppAuthMethodChanged(
    Event,
    type_name="project.application.api.auth_method.changed",
    aggregate=AGGREGATE_PROJECT,
    changes_power=True,
):
    """The way the application authenticates at the introspection endpoint (ZITADEL's
    UpdateAPIAppConfig). Its secret ends with the change (a new one is made with
    RegenerateAPIClientSecret); its keys stay, and serve only while the method is private_key_jwt."""

    app_id: str
    auth_method: str


@dataclass(frozen=True)
class AppKeyAdded(
    Event, type_name="project.application.key.added", aggregate=AGGREGATE_PROJECT, changes_power=False
):
    """A key of an API application with private_key_jwt: its public half (PEM, SubjectPublicKeyInfo),
    "RSA" or "EC", and its expiry in microseconds since the epoch (None: never). A new key is in
    no cache."""

    app_id: str
    key_id: str
    public_key: str = field(repr=False)
    key_type: str
    expires_at: int | None


@dataclass(frozen=True)
class AppKeyRemoved(
    Event, type_name="project.application.key.removed", aggregate=AGGREGATE_PROJECT, changes_power=True
):
    """The key stops authenticating the application at once."""

    app_id: str
    key_id: str
