"""The events this service stores: their types and payloads.

Event types are dotted and past tense. Stored type names and payload field names are forever:
old events are never rewritten, so a change here needs a new event type, not an edit.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.actor import UNKNOWN, Actor

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
# The organisation's rules for new client secrets: {max_lifetime, default_lifetime,
# max_grace_period} in microseconds or null (no limit), {max_secrets_per_user} or null (default).
ORG_SECRET_POLICY_SET = "org.secret_policy.set"
USER_MACHINE_ADDED = "user.machine.added"  # {user_name, name, description}
USER_HUMAN_ADDED = "user.human.added"  # {user_name, display_name, email}
# Client secrets. A new secret's payload is {secret_id, hash, lookup, description, expires_at}:
# bcrypt, never the secret; lookup is the msk_ format's non-secret lookup key; expires_at in
# microseconds or null. (Events written before secrets had ids carry {hash} only: migration 6 gave
# those secrets their ids.)
# One new secret that replaces all of the user's others at once (AddSecret, ZITADEL's meaning).
USER_MACHINE_SECRET_SET = "user.machine.secret.set"
# One new secret beside the live ones (CreateSecret).
USER_MACHINE_SECRET_ADDED = "user.machine.secret.added"
# One new secret, and every other secret of the user that would live longer expires at
# {others_expire_at} (RotateSecret; its grace period ends then).
USER_MACHINE_SECRET_ROTATED = "user.machine.secret.rotated"
USER_MACHINE_SECRET_DELETED = "user.machine.secret.deleted"  # {secret_id}
# A leaked secret, revoked by whoever held it: {secret_id, source} (the caller's address).
USER_MACHINE_SECRET_REVOKED = "user.machine.secret.revoked"
USER_MACHINE_SECRET_REMOVED = "user.machine.secret.removed"  # every secret of the user
# The same secret, hashed again at another bcrypt cost: {secret_id, hash}.
USER_MACHINE_SECRET_UPDATED = "user.machine.secret.updated"
USER_PAT_ADDED = "user.pat.added"  # {token_id, token_hash, expires_at}: SHA-256, never the token
USER_PAT_REMOVED = "user.pat.removed"  # {token_id}
# No credential of a deactivated user is accepted; reactivated, they are again.
USER_DEACTIVATED = "user.deactivated"
USER_REACTIVATED = "user.reactivated"
# The user's credentials and memberships end, and its user name is free; its events stay.
USER_REMOVED = "user.removed"
# An OAuth2 access token: {user_id, token_hash, expires_at, scope, secret_id}. It is valid while
# the secret that earned it is live. (Before migration 6: {secret_sequence} instead of secret_id.)
TOKEN_ACCESS_ADDED = "token.access.added"
# A request to the revocation endpoint, whatever it matched: {source, candidates}. No longer
# written: reports are counted per hour and source (revocation_reports), and migration 11 moved the
# ones written before into those counts.
AGGREGATE_REVOCATION = "revocation"
REVOCATION_RECEIVED = "revocation.received"


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
    # Who made the change (server/actor.py), recorded with the event and chained with it.
    actor: Actor = UNKNOWN


@dataclass(frozen=True)
class StoredEvent:
    aggregate_type: str
    aggregate_id: str
    sequence: int
    type: str
    resource_owner: str
    payload: Mapping[str, Any]
    created_at: datetime
    actor: Actor = UNKNOWN
