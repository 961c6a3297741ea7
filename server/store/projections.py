"""The read models, kept by projecting each event as it is appended, inside the append's
transaction: the statements that apply one event (the row that records it is audit.py's)."""

from server.store import events as ev
from server.store.base import USER_STATE_ACTIVE, USER_STATE_INACTIVE, USER_TYPE_HUMAN, USER_TYPE_MACHINE
from server.store.codecs import Statement, encode_roles
from server.store.events import StoredEvent
from server.store.user_names import user_name_key, user_name_skeleton


def projection(event: StoredEvent, micros: int) -> list[Statement]:
    """The statements that apply one event to the read models, inside the append's transaction."""
    p = event.payload
    match event.type:
        case ev.ORG_ADDED:
            return [
                (
                    "INSERT INTO orgs (id, name, sequence, created_at, changed_at) VALUES (?, ?, ?, ?, ?)",
                    (event.aggregate_id, p["name"], event.sequence, micros, micros),
                )
            ]
        case ev.USER_MACHINE_ADDED | ev.USER_HUMAN_ADDED:
            user_type = USER_TYPE_MACHINE if event.type == ev.USER_MACHINE_ADDED else USER_TYPE_HUMAN
            return [
                (
                    "INSERT INTO users (id, org_id, user_name, user_name_key, user_name_skeleton, type,"
                    " sequence, created_at, changed_at, name, description, display_name, email)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.aggregate_id,
                        event.resource_owner,
                        p["user_name"],
                        user_name_key(p["user_name"]),
                        # Unique among users (migration 15): a look-alike is the name taken.
                        user_name_skeleton(p["user_name"]),
                        user_type,
                        event.sequence,
                        micros,
                        micros,
                        p.get("name", ""),
                        p.get("description", ""),
                        p.get("display_name", ""),
                        p.get("email", ""),
                    ),
                )
            ]
        case ev.TOKEN_ACCESS_ADDED:  # a token aggregate has no snapshot row
            return [
                (
                    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, secret_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        p["token_hash"],
                        event.aggregate_id,
                        p["user_id"],
                        p["expires_at"],
                        p["secret_id"],
                        micros,
                    ),
                )
            ]
        case ev.INSTANCE_IAM_OWNER_LEFT | ev.REVOCATION_RECEIVED:  # the record is the point
            return []
        case ev.USER_REMOVED:  # the snapshot goes too: the aggregate has no state left to decide on
            return [
                ("DELETE FROM tokens WHERE user_id = ?", (event.aggregate_id,)),
                ("DELETE FROM secrets WHERE user_id = ?", (event.aggregate_id,)),
                ("DELETE FROM members WHERE user_id = ?", (event.aggregate_id,)),
                ("DELETE FROM users WHERE id = ?", (event.aggregate_id,)),
            ]
        case ev.USER_MACHINE_SECRET_SET | ev.USER_MACHINE_SECRET_REMOVED:  # every secret goes
            changes = [
                ("DELETE FROM tokens WHERE user_id = ? AND secret_id IS NOT NULL", (event.aggregate_id,)),
                ("DELETE FROM secrets WHERE user_id = ?", (event.aggregate_id,)),
            ]
            if event.type == ev.USER_MACHINE_SECRET_SET:
                changes.append(_insert_secret(event, micros))
            return [*changes, _moved(event, micros)]
        case ev.USER_MACHINE_SECRET_ADDED:
            return [_insert_secret(event, micros), *_prune_expired(event, micros), _moved(event, micros)]
        case ev.USER_MACHINE_SECRET_ROTATED:
            # Every other secret that would outlive the grace period now ends with it.
            retire = p["others_expire_at"]
            shorten: Statement = (
                "UPDATE secrets SET expires_at = ? WHERE user_id = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (retire, event.aggregate_id, retire),
            )
            return [
                shorten,
                _insert_secret(event, micros),
                *_prune_expired(event, micros),
                _moved(event, micros),
            ]
        case ev.USER_MACHINE_SECRET_DELETED | ev.USER_MACHINE_SECRET_REVOKED:
            return [
                ("DELETE FROM tokens WHERE secret_id = ?", (p["secret_id"],)),
                ("DELETE FROM secrets WHERE secret_id = ?", (p["secret_id"],)),
                _moved(event, micros),
            ]
        case ev.ORG_SECRET_POLICY_SET:
            return [
                ("DELETE FROM secret_policies WHERE org_id = ?", (event.aggregate_id,)),
                (
                    "INSERT INTO secret_policies (org_id, max_lifetime, default_lifetime,"
                    " max_secrets_per_user, max_grace_period) VALUES (?, ?, ?, ?, ?)",
                    (
                        event.aggregate_id,
                        p["max_lifetime"],
                        p["default_lifetime"],
                        p["max_secrets_per_user"],
                        p["max_grace_period"],
                    ),
                ),
                _moved(event, micros),
            ]
        case ev.ORG_MEMBER_ADDED:
            change: Statement = (
                "INSERT INTO members (org_id, user_id, roles) VALUES (?, ?, ?)",
                (event.aggregate_id, p["user_id"], encode_roles(frozenset(p["roles"]))),
            )
        case ev.USER_MACHINE_SECRET_UPDATED:
            change = ("UPDATE secrets SET hash = ? WHERE secret_id = ?", (p["hash"], p["secret_id"]))
        case ev.USER_PAT_ADDED:
            change = (
                "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (p["token_hash"], p["token_id"], event.aggregate_id, p["expires_at"], micros),
            )
        case ev.USER_PAT_REMOVED:
            change = (
                "DELETE FROM tokens WHERE token_id = ? AND user_id = ?",
                (p["token_id"], event.aggregate_id),
            )
        case ev.USER_DEACTIVATED | ev.USER_REACTIVATED:
            state = USER_STATE_INACTIVE if event.type == ev.USER_DEACTIVATED else USER_STATE_ACTIVE
            change = ("UPDATE users SET state = ? WHERE id = ?", (state, event.aggregate_id))
        case ev.ORG_MEMBER_REMOVED:
            change = (
                "DELETE FROM members WHERE org_id = ? AND user_id = ?",
                (event.aggregate_id, p["user_id"]),
            )
        case _:
            raise ValueError(f"no projection for event type {event.type}")
    return [change, _moved(event, micros)]


def _moved(event: StoredEvent, micros: int) -> Statement:
    """Every later event of an aggregate moves its snapshot's sequence and change time."""
    table = "orgs" if event.aggregate_type == ev.AGGREGATE_ORG else "users"
    return (
        f"UPDATE {table} SET sequence = ?, changed_at = ? WHERE id = ?",  # noqa: S608 - fixed names
        (event.sequence, micros, event.aggregate_id),
    )


# Expired secrets stay listed (state EXPIRED) until deleted, but a user keeps at most this many:
# when a new secret is made, older expired ones go, so that rotating often does not grow the list
# (and the reads over it) without end.
MAX_EXPIRED_SECRETS = 20


def _prune_expired(event: StoredEvent, micros: int) -> list[Statement]:
    """The user's expired secrets beyond the latest MAX_EXPIRED_SECRETS, and the access tokens of
    secrets that are gone (refused already; their rows would only pile up)."""
    user_id = event.aggregate_id
    return [
        (
            "DELETE FROM secrets WHERE user_id = ? AND expires_at <= ? AND secret_id NOT IN ("
            " SELECT secret_id FROM secrets WHERE user_id = ? AND expires_at <= ?"
            " ORDER BY expires_at DESC, secret_id DESC LIMIT ?)",
            (user_id, micros, user_id, micros, MAX_EXPIRED_SECRETS),
        ),
        (
            "DELETE FROM tokens WHERE user_id = ? AND secret_id IS NOT NULL"
            " AND secret_id NOT IN (SELECT secret_id FROM secrets WHERE user_id = ?)",
            (user_id, user_id),
        ),
    ]


def _insert_secret(event: StoredEvent, micros: int) -> Statement:
    p = event.payload
    return (
        "INSERT INTO secrets (secret_id, user_id, lookup, hash, description, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            p["secret_id"],
            event.aggregate_id,
            p["lookup"],
            p["hash"],
            p["description"],
            micros,
            p["expires_at"],
        ),
    )
