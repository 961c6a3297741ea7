"""Events of an OAuth2 access token (aggregate `token`, one per token, so that issuing tokens never
contends on the user; resource owner: the user's organisation)."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.events.base import AGGREGATE_TOKEN, Event
from server.events.legacy import AccessTokenAddedBeforeSecretIds


@dataclass(frozen=True)
class AccessTokenAdded(Event, type_name="token.access.added", aggregate=AGGREGATE_TOKEN, changes_power=False):
    """An access token, valid while the secret that earned it (secret_id) is live: its SHA-256,
    never the token. A new token is in no cache."""

    user_id: str
    token_hash: str = field(repr=False)
    expires_at: int  # microseconds since the epoch
    scope: str
    secret_id: str

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Event:
        if "secret_sequence" in payload:
            return AccessTokenAddedBeforeSecretIds(**payload)
        return cls(**payload)


@dataclass(frozen=True)
class KeyAccessTokenAdded(
    Event, type_name="token.access.key.added", aggregate=AGGREGATE_TOKEN, changes_power=False
):
    """An access token earned by an assertion signed with a machine key (the JWT profile grant,
    or private_key_jwt): valid while that key (key_id) is live. Its SHA-256, never the token."""

    user_id: str
    token_hash: str = field(repr=False)
    expires_at: int  # microseconds since the epoch
    scope: str
    key_id: str


@dataclass(frozen=True)
class AccessTokenRevoked(
    Event, type_name="token.access.revoked", aggregate=AGGREGATE_TOKEN, changes_power=True
):
    """RFC 7009: the client that held the access token, or the API it was meant for, ended it
    (POST /oauth/v2/revoke). Its row goes in the same transaction, so every process refuses it on
    its next read of the store."""

    user_id: str
