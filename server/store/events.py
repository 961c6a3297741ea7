"""The events this service stores: their types and payloads.

Event types are dotted and past tense. Stored type names and payload field names are forever:
old events are never rewritten, so a change here needs a new event type, not an edit.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

AGGREGATE_ORG = "org"
AGGREGATE_USER = "user"
AGGREGATE_TOKEN = "token"  # one per access token: issuing tokens never contends on the user
# One aggregate for the whole instance, whose sequence orders the changes that take an IAM_OWNER
# away, so that two of them cannot both pass the last-owner check.
AGGREGATE_INSTANCE = "instance"
INSTANCE_ID = "instance"
INSTANCE_IAM_OWNER_LEFT = "instance.iam_owner.left"  # {user_id}: an active owner is one no more

ORG_ADDED = "org.added"  # {name}
ORG_MEMBER_ADDED = "org.member.added"  # {user_id, roles}
ORG_MEMBER_REMOVED = "org.member.removed"  # {user_id}
USER_MACHINE_ADDED = "user.machine.added"  # {user_name, name, description}
USER_HUMAN_ADDED = "user.human.added"  # {user_name, display_name, email}
USER_MACHINE_SECRET_SET = "user.machine.secret.set"
USER_MACHINE_SECRET_REMOVED = "user.machine.secret.removed"
# The same secret, hashed again at another bcrypt cost: {hash}.
USER_MACHINE_SECRET_UPDATED = "user.machine.secret.updated"
USER_PAT_ADDED = "user.pat.added"  # {token_id, token_hash, expires_at}: SHA-256, never the token
USER_PAT_REMOVED = "user.pat.removed"  # {token_id}
# No credential of a deactivated user is accepted; reactivated, they are again.
USER_DEACTIVATED = "user.deactivated"
USER_REACTIVATED = "user.reactivated"
# The user's credentials and memberships end, and its user name is free; its events stay.
USER_REMOVED = "user.removed"
# An OAuth2 access token: {user_id, token_hash, expires_at, scope, secret_sequence}. It is valid
# while the secret set by event `secret_sequence` of the user is the user's secret.
TOKEN_ACCESS_ADDED = "token.access.added"


@dataclass(frozen=True)
class NewEvent:
    """An event a command wants to append.

    `sequence` is the aggregate's current sequence plus one: if another writer appended that
    sequence first, the append fails with ConcurrencyConflict and nothing is written.
    """

    aggregate_type: str
    aggregate_id: str
    sequence: int
    type: str
    resource_owner: str
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredEvent:
    aggregate_type: str
    aggregate_id: str
    sequence: int
    type: str
    resource_owner: str
    payload: Mapping[str, Any]
    created_at: datetime
