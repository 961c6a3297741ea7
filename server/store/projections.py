"""The read models, kept by projecting each event as it is appended, inside the append's
transaction: the statements that apply one event (the row that records it is audit.py's)."""

from server.events import (
    federation,
    grant,
    instance,
    legacy,
    machine_key,
    metadata,
    org,
    project,
    secret,
    token,
    user,
    webkey,
)
from server.events.base import AGGREGATE_ORG, AGGREGATE_PROJECT, StoredEvent
from server.store.codecs import Statement, encode_roles
from server.store.contract import USER_STATE_ACTIVE, USER_STATE_INACTIVE, USER_TYPE_HUMAN, USER_TYPE_MACHINE
from server.user_names import user_name_key, user_name_skeleton


def projection(event: StoredEvent, micros: int) -> list[Statement]:
    """The statements that apply one event to the read models, inside the append's transaction."""
    aggregate_id = event.aggregate_id
    match event.event:
        case org.OrgAdded(name=name):
            return [
                (
                    "INSERT INTO orgs (id, name, sequence, created_at, changed_at) VALUES (?, ?, ?, ?, ?)",
                    (aggregate_id, name, event.sequence, micros, micros),
                )
            ]
        case user.MachineUserAdded(user_name=user_name, name=name, description=description):
            return [_insert_user(event, micros, USER_TYPE_MACHINE, user_name, (name, description, "", ""))]
        case user.HumanUserAdded(user_name=user_name, display_name=display_name, email=email):
            return [_insert_user(event, micros, USER_TYPE_HUMAN, user_name, ("", "", display_name, email))]
        case token.AccessTokenAdded() as access:  # a token aggregate has no snapshot row
            return [
                (
                    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, secret_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        access.token_hash,
                        aggregate_id,
                        access.user_id,
                        access.expires_at,
                        access.secret_id,
                        micros,
                    ),
                )
            ]
        case token.KeyAccessTokenAdded() as access:
            return [
                (
                    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, key_id, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        access.token_hash,
                        aggregate_id,
                        access.user_id,
                        access.expires_at,
                        access.key_id,
                        micros,
                    ),
                )
            ]
        case federation.FederatedAccessTokenAdded() as access:
            return [
                (
                    "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, credential_id,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        access.token_hash,
                        aggregate_id,
                        access.user_id,
                        access.expires_at,
                        access.credential_id,
                        micros,
                    ),
                )
            ]
        case token.AccessTokenRevoked():  # whatever earned it: the one row of its token
            return [("DELETE FROM tokens WHERE token_id = ?", (aggregate_id,))]
        case federation.TrustedIssuerAdded() as trusted:
            return [
                (
                    "INSERT INTO trusted_issuers (issuer_id, org_id, issuer, jwks_uri, jwks, description,"
                    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        trusted.issuer_id,
                        aggregate_id,
                        trusted.issuer,
                        trusted.jwks_uri,
                        trusted.jwks,
                        trusted.description,
                        micros,
                    ),
                ),
                _moved(event, micros),
            ]
        case federation.TrustedIssuerRemoved(issuer_id=issuer_id):
            # The organisation's federated credentials that name it end with it, and the access
            # tokens they earned. Ending the credentials, not only the tokens: an exchange that
            # read the issuer as trusted just before may still write its token, which then names
            # a credential that is gone and is refused at its first use (SELECT_CALLER); and
            # trusting the issuer again later does not bring old credentials back.
            named = (
                "SELECT f.credential_id FROM federated_credentials f JOIN users u ON u.id = f.user_id"
                " JOIN trusted_issuers i ON i.issuer = f.issuer AND i.org_id = u.org_id WHERE i.issuer_id = ?"
            )
            return [
                (f"DELETE FROM tokens WHERE credential_id IN ({named})", (issuer_id,)),  # noqa: S608 - constant
                (
                    f"DELETE FROM federated_credentials WHERE credential_id IN ({named})",  # noqa: S608 - constant
                    (issuer_id,),
                ),
                ("DELETE FROM trusted_issuers WHERE issuer_id = ?", (issuer_id,)),
                _moved(event, micros),
            ]
        case federation.FederatedCredentialAdded() as credential:
            return [
                (
                    "INSERT INTO federated_credentials (credential_id, user_id, issuer, subject, audience,"
                    " claim_name, claim_value, description, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        credential.credential_id,
                        aggregate_id,
                        credential.issuer,
                        credential.subject,
                        credential.audience,
                        credential.claim_name,
                        credential.claim_value,
                        credential.description,
                        micros,
                    ),
                ),
                _moved(event, micros),
            ]
        case federation.FederatedCredentialRemoved(credential_id=credential_id):  # and its tokens
            return [
                ("DELETE FROM tokens WHERE credential_id = ?", (credential_id,)),
                ("DELETE FROM federated_credentials WHERE credential_id = ?", (credential_id,)),
                _moved(event, micros),
            ]
        case machine_key.MachineKeyAdded() as key:
            return [
                (
                    "INSERT INTO machine_keys (key_id, user_id, public_key, key_type, created_at, expires_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (key.key_id, aggregate_id, key.public_key, key.key_type, micros, key.expires_at),
                ),
                _moved(event, micros),
            ]
        case machine_key.MachineKeyRemoved(key_id=key_id):  # the key, and the tokens it earned
            return [
                ("DELETE FROM tokens WHERE key_id = ?", (key_id,)),
                ("DELETE FROM machine_keys WHERE key_id = ?", (key_id,)),
                _moved(event, micros),
            ]
        case instance.IamOwnerLeft() | legacy.RevocationReceived():  # the record is the point
            return []
        case user.UserRemoved():  # the snapshot goes too: the aggregate has no state left to decide on
            return [
                ("DELETE FROM tokens WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM secrets WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM machine_keys WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM federated_credentials WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM members WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM user_grants WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM user_metadata WHERE user_id = ?", (aggregate_id,)),
                ("DELETE FROM users WHERE id = ?", (aggregate_id,)),
            ]
        case project.ProjectAdded(name=name):
            return [
                (
                    "INSERT INTO projects (id, org_id, name, sequence, created_at, changed_at)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (aggregate_id, event.resource_owner, name, event.sequence, micros, micros),
                )
            ]
        case project.ProjectRemoved():  # its roles, applications and grants go with it
            return [
                ("DELETE FROM user_grants WHERE project_id = ?", (aggregate_id,)),
                ("DELETE FROM app_keys WHERE project_id = ?", (aggregate_id,)),
                ("DELETE FROM apps WHERE project_id = ?", (aggregate_id,)),
                ("DELETE FROM project_roles WHERE project_id = ?", (aggregate_id,)),
                ("DELETE FROM projects WHERE id = ?", (aggregate_id,)),
            ]
        case grant.UserGrantAdded() as granted:
            return [
                (
                    "INSERT INTO user_grants (grant_id, org_id, user_id, project_id, role_keys, sequence,"
                    " created_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        aggregate_id,
                        event.resource_owner,
                        granted.user_id,
                        granted.project_id,
                        encode_roles(frozenset(granted.role_keys)),
                        event.sequence,
                        micros,
                        micros,
                    ),
                )
            ]
        case grant.UserGrantRemoved():
            return [("DELETE FROM user_grants WHERE grant_id = ?", (aggregate_id,))]
        case secret.SecretSet() | secret.SecretsRemoved():  # every secret goes
            changes = [
                ("DELETE FROM tokens WHERE user_id = ? AND secret_id IS NOT NULL", (aggregate_id,)),
                ("DELETE FROM secrets WHERE user_id = ?", (aggregate_id,)),
            ]
            if isinstance(event.event, secret.SecretSet):
                changes.append(_insert_secret(event, event.event, micros))
            return [*changes, _moved(event, micros)]
        case secret.SecretAdded() as added:
            return [
                _insert_secret(event, added, micros),
                *_prune_expired(event, micros),
                _moved(event, micros),
            ]
        case secret.SecretRotated() as rotated:
            # Every other secret that would outlive the grace period now ends with it.
            retire = rotated.others_expire_at
            shorten: Statement = (
                "UPDATE secrets SET expires_at = ? WHERE user_id = ?"
                " AND (expires_at IS NULL OR expires_at > ?)",
                (retire, aggregate_id, retire),
            )
            return [
                shorten,
                _insert_secret(event, rotated, micros),
                *_prune_expired(event, micros),
                _moved(event, micros),
            ]
        case secret.SecretDeleted(secret_id=secret_id) | secret.SecretRevoked(secret_id=secret_id):
            return [
                ("DELETE FROM tokens WHERE secret_id = ?", (secret_id,)),
                ("DELETE FROM secrets WHERE secret_id = ?", (secret_id,)),
                _moved(event, micros),
            ]
        case org.SecretPolicySet() as policy:
            return [
                ("DELETE FROM secret_policies WHERE org_id = ?", (aggregate_id,)),
                (
                    "INSERT INTO secret_policies (org_id, max_lifetime, default_lifetime,"
                    " max_secrets_per_user, max_grace_period, max_key_lifetime, max_keys_per_user)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        aggregate_id,
                        policy.max_lifetime,
                        policy.default_lifetime,
                        policy.max_secrets_per_user,
                        policy.max_grace_period,
                        policy.max_key_lifetime,
                        policy.max_keys_per_user,
                    ),
                ),
                _moved(event, micros),
            ]
        case webkey.WebKeyAdded() as key:  # the instance's keys have no snapshot row
            return [
                (
                    "INSERT INTO webkeys (key_id, algorithm, public_jwk, private_key, created_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key.key_id, key.algorithm, key.public_jwk, key.private_key, micros),
                )
            ]
        case webkey.WebKeyActivated(key_id=key_id, signs_from=signs_from):
            return [("UPDATE webkeys SET signs_from = ? WHERE key_id = ?", (signs_from, key_id))]
        case webkey.WebKeyRemoved(key_id=key_id):
            return [("DELETE FROM webkeys WHERE key_id = ?", (key_id,))]
        case org.OrgMemberAdded(user_id=user_id, roles=roles):
            change: Statement = (
                "INSERT INTO members (org_id, user_id, roles) VALUES (?, ?, ?)",
                (aggregate_id, user_id, encode_roles(frozenset(roles))),
            )
        case secret.SecretRehashed(secret_id=secret_id, hash=hashed):
            change = ("UPDATE secrets SET hash = ? WHERE secret_id = ?", (hashed, secret_id))
        case user.PatAdded() as pat:
            change = (
                "INSERT INTO tokens (token_hash, token_id, user_id, expires_at, created_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (pat.token_hash, pat.token_id, aggregate_id, pat.expires_at, micros),
            )
        case metadata.UserMetadataSet(key=key, value=value):  # added, or its value replaced
            change = (
                "INSERT INTO user_metadata (user_id, key, value, sequence, created_at, changed_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, key)"
                " DO UPDATE SET value = excluded.value, sequence = excluded.sequence,"
                " changed_at = excluded.changed_at",
                (aggregate_id, key, value, event.sequence, micros, micros),
            )
        case metadata.UserMetadataRemoved(key=key):
            change = ("DELETE FROM user_metadata WHERE user_id = ? AND key = ?", (aggregate_id, key))
        case user.PatRemoved(token_id=token_id):
            change = ("DELETE FROM tokens WHERE token_id = ? AND user_id = ?", (token_id, aggregate_id))
        case user.MachineChanged() as changed:
            change = (
                "UPDATE users SET name = ?, description = ?, access_token_type = ? WHERE id = ?",
                (changed.name, changed.description, changed.access_token_type, aggregate_id),
            )
        case user.UserDeactivated() | user.UserReactivated():
            state = (
                USER_STATE_INACTIVE if isinstance(event.event, user.UserDeactivated) else USER_STATE_ACTIVE
            )
            change = ("UPDATE users SET state = ? WHERE id = ?", (state, aggregate_id))
        case project.ProjectRoleAdded() as role:
            change = (
                "INSERT INTO project_roles (project_id, role_key, display_name, role_group, sequence,"
                " created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (aggregate_id, role.role_key, role.display_name, role.group, event.sequence, micros),
            )
        case project.ProjectRoleRemoved(role_key=role_key):
            # Grants keep the key in their rows; only a role that exists is asserted.
            change = (
                "DELETE FROM project_roles WHERE project_id = ? AND role_key = ?",
                (aggregate_id, role_key),
            )
        case project.ApiAppAdded() as app:
            change = (
                "INSERT INTO apps (app_id, project_id, org_id, name, client_id, auth_method, secret_lookup,"
                " secret_hash, sequence, created_at, changed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    app.app_id,
                    aggregate_id,
                    event.resource_owner,
                    app.name,
                    app.client_id,
                    app.auth_method,
                    app.secret_lookup,
                    app.secret_hash,
                    event.sequence,
                    micros,
                    micros,
                ),
            )
        case project.ApiAppSecretChanged() as changed:
            change = (
                "UPDATE apps SET secret_lookup = ?, secret_hash = ?, sequence = ?, changed_at = ?"
                " WHERE app_id = ? AND project_id = ?",
                (
                    changed.secret_lookup,
                    changed.secret_hash,
                    event.sequence,
                    micros,
                    changed.app_id,
                    aggregate_id,
                ),
            )
        case project.AppRemoved(app_id=app_id):  # and its keys
            return [
                ("DELETE FROM app_keys WHERE app_id = ? AND project_id = ?", (app_id, aggregate_id)),
                ("DELETE FROM apps WHERE app_id = ? AND project_id = ?", (app_id, aggregate_id)),
                _moved(event, micros),
            ]
        case project.ApiAppAuthMethodChanged() as changed:  # the secret, if any, ends with it
            change = (
                "UPDATE apps SET auth_method = ?, secret_lookup = '', secret_hash = '', sequence = ?,"
                " changed_at = ? WHERE app_id = ? AND project_id = ?",
                (changed.auth_method, event.sequence, micros, changed.app_id, aggregate_id),
            )
        case project.AppKeyAdded() as key:
            change = (
                "INSERT INTO app_keys (key_id, app_id, project_id, public_key, key_type, created_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key.key_id, key.app_id, aggregate_id, key.public_key, key.key_type, micros, key.expires_at),
            )
        case project.AppKeyRemoved(key_id=key_id, app_id=app_id):
            change = (
                "DELETE FROM app_keys WHERE key_id = ? AND app_id = ? AND project_id = ?",
                (key_id, app_id, aggregate_id),
            )
        case org.OrgMemberRemoved(user_id=user_id):
            change = ("DELETE FROM members WHERE org_id = ? AND user_id = ?", (aggregate_id, user_id))
        case _:  # the earlier shapes (events/legacy.py) are read, never appended
            raise ValueError(f"no projection for event type {event.type}")
    return [change, _moved(event, micros)]


def _insert_user(
    event: StoredEvent, micros: int, user_type: str, user_name: str, profile: tuple[str, str, str, str]
) -> Statement:
    """A new user's row; profile: its name, description, display name and email ("" where its
    kind has none)."""
    return (
        "INSERT INTO users (id, org_id, user_name, user_name_key, user_name_skeleton, type,"
        " sequence, created_at, changed_at, name, description, display_name, email)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.aggregate_id,
            event.resource_owner,
            user_name,
            user_name_key(user_name),
            # Unique among users (migration 15): a look-alike is the name taken.
            user_name_skeleton(user_name),
            user_type,
            event.sequence,
            micros,
            micros,
            *profile,
        ),
    )


_SNAPSHOTS = {AGGREGATE_ORG: "orgs", AGGREGATE_PROJECT: "projects"}


def _moved(event: StoredEvent, micros: int) -> Statement:
    """Every later event of an aggregate moves its snapshot's sequence and change time."""
    table = _SNAPSHOTS.get(event.aggregate_type, "users")
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


def _insert_secret(event: StoredEvent, secret: secret.IssuedSecret, micros: int) -> Statement:
    return (
        "INSERT INTO secrets (secret_id, user_id, lookup, hash, description, created_at, expires_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            secret.secret_id,
            event.aggregate_id,
            secret.lookup,
            secret.hash,
            secret.description,
            micros,
            secret.expires_at,
        ),
    )
