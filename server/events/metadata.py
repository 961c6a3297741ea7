"""Events of a user's metadata (aggregate `user`, as ZITADEL keeps them): keys and byte values
that the service does not interpret. They grant nothing on this service's API; a token whose
scope asks for `urn:zitadel:iam:user:metadata` tells them to the APIs that introspect it."""

from dataclasses import dataclass

from server.events.base import AGGREGATE_USER, Event


@dataclass(frozen=True)
class UserMetadataSet(Event, type_name="user.metadata.set", aggregate=AGGREGATE_USER, changes_power=False):
    """A key set to a value, added or replaced."""

    key: str
    value: str  # the bytes in standard base64, padded: the payload is JSON


@dataclass(frozen=True)
class UserMetadataRemoved(
    Event, type_name="user.metadata.removed", aggregate=AGGREGATE_USER, changes_power=False
):
    key: str
