"""What commands and queries answer: plain values, free of any transport."""

from dataclasses import dataclass
from datetime import datetime

from server.events.base import StoredEvent


@dataclass(frozen=True)
class Details:
    sequence: int
    creation_date: datetime
    change_date: datetime
    resource_owner: str

    @classmethod
    def of_change(cls, event: StoredEvent) -> "Details":
        """Details of a manipulation: the sequence and time of the event it added."""
        return cls(event.sequence, event.created_at, event.created_at, event.resource_owner)


@dataclass(frozen=True)
class Created:
    id: str
    details: Details


@dataclass(frozen=True)
class IssuedSecret:
    secret_id: str
    client_id: str
    client_secret: str
    expiration_date: datetime | None
    details: Details

    def __repr__(self) -> str:  # the secret must never reach a log through a repr
        return (
            f"IssuedSecret(secret_id={self.secret_id!r}, client_id={self.client_id!r}, client_secret='***',"
            f" expiration_date={self.expiration_date!r}, details={self.details!r})"
        )


@dataclass(frozen=True)
class SecretView:
    """A client secret as it is listed: never the secret, never its hash."""

    secret_id: str
    hint: str  # the first characters after the prefix; "" for a secret from before the msk_ format
    description: str
    creation_date: datetime
    expiration_date: datetime | None
    last_used: datetime | None  # to the minute
    active: bool  # else expired


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str
    details: Details

    def __repr__(self) -> str:
        return f"IssuedToken(token_id={self.token_id!r}, token='***', details={self.details!r})"


@dataclass(frozen=True)
class UserView:
    id: str
    user_name: str
    machine: bool  # else human
    active: bool
    has_secret: bool
    details: Details


@dataclass(frozen=True)
class PersonalAccessTokenView:
    """A personal access token as it is listed: never the token, never its hash."""

    token_id: str
    creation_date: datetime | None
    expiration_date: datetime | None
    last_used: datetime | None  # to the minute


@dataclass(frozen=True)
class UserProfile:
    """What a user was created with, beyond its user name: a machine user's name and
    description, a human user's display name and email ("" where the kind has none)."""

    name: str
    description: str
    display_name: str
    email: str
    access_token_type: str = "bearer"  # a machine user's: "bearer" (opaque) or "jwt"


@dataclass(frozen=True)
class MachineKeyView:
    """A machine key as it is listed: never key material, public or private."""

    key_id: str
    user_id: str
    org_id: str
    key_type: str  # "RSA" or "EC"
    creation_date: datetime
    expiration_date: datetime | None
    last_used: datetime | None  # to the minute
    active: bool  # else expired


@dataclass(frozen=True)
class AppKeyView:
    """An API application's key as it is listed: never key material, public or private."""

    key_id: str
    app_id: str
    org_id: str
    key_type: str  # "RSA" or "EC"
    creation_date: datetime
    expiration_date: datetime | None
    active: bool  # else expired


@dataclass(frozen=True)
class IssuedAppSecret:
    """An API application's client secret, shown once: at AddAPIApp and at its regeneration."""

    app_id: str
    client_id: str
    client_secret: str
    details: Details

    def __repr__(self) -> str:
        return (
            f"IssuedAppSecret(app_id={self.app_id!r}, client_id={self.client_id!r}, client_secret='***',"
            f" details={self.details!r})"
        )


@dataclass(frozen=True)
class GrantView:
    """A user grant as it is listed, with the names of its user, project and organisation."""

    grant_id: str
    user_id: str
    user_name: str
    project_id: str
    project_name: str
    org_id: str
    org_name: str
    role_keys: list[str]
    details: Details


@dataclass(frozen=True)
class MetadataView:
    """One key of a user's metadata: its value, and when it was set (ZITADEL's details)."""

    key: str
    value: bytes
    details: Details
