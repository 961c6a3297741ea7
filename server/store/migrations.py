"""Versioned schema migrations, in SQL both backends speak (and POSTGRES_ONLY, where PostgreSQL
needs more).

Each backend applies them at start, in order, each in one transaction with its record in
schema_migrations (PostgreSQL under an advisory lock, so that processes starting together apply
each once). Placeholders are written `?`; a backend whose driver wants another style converts them.
"""

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from server.store import audit
from server.store.codecs import Statement
from server.user_names import NotAUserName, user_name_key, user_name_skeleton

IDS_EPOCH_MS = 1_577_836_800_000  # server/domain/ids.py's epoch: 2020-01-01T00:00:00Z

# Each migration is applied once, in order, in one transaction, and recorded in
# schema_migrations. Never edit an applied migration: add the next one.
MIGRATIONS: list[tuple[int, list[str]]] = [
    (
        1,
        [
            """CREATE TABLE events (
                aggregate_type TEXT NOT NULL,
                aggregate_id TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                event_type TEXT NOT NULL,
                resource_owner TEXT NOT NULL,
                payload TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                -- The concurrency guard: two writers cannot both append the same sequence.
                PRIMARY KEY (aggregate_type, aggregate_id, sequence)
            )""",
            """CREATE TABLE orgs (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE users (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                user_name TEXT NOT NULL,
                -- User names are unique in the whole instance, compared without case.
                user_name_key TEXT NOT NULL UNIQUE,
                type TEXT NOT NULL,
                secret_hash TEXT,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            """CREATE TABLE members (
                org_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                roles TEXT NOT NULL,
                PRIMARY KEY (org_id, user_id)
            )""",
            "CREATE INDEX members_by_user ON members (user_id)",
            """CREATE TABLE tokens (
                token_hash TEXT PRIMARY KEY,
                token_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                expires_at BIGINT
            )""",
        ],
    ),
    (
        2,
        [
            # Access tokens die with the secret that earned them.
            "ALTER TABLE users ADD COLUMN secret_sequence BIGINT",
            "ALTER TABLE tokens ADD COLUMN secret_sequence BIGINT",
            "UPDATE users SET secret_sequence = (SELECT MAX(e.sequence) FROM events e"
            " WHERE e.aggregate_type = 'user' AND e.aggregate_id = users.id"
            " AND e.event_type = 'user.machine.secret.set') WHERE secret_hash IS NOT NULL",
        ],
    ),
    (
        3,
        [
            # Failed client authentications, shared by every process on the store: not events (they
            # change nothing and are forgotten after the limits' window), keyed by a hash.
            "CREATE TABLE auth_failures (failure_key TEXT NOT NULL, failed_at BIGINT NOT NULL)",
            "CREATE INDEX auth_failures_by_key ON auth_failures (failure_key, failed_at)",
            "CREATE INDEX auth_failures_by_time ON auth_failures (failed_at)",
        ],
    ),
    (
        4,
        [
            # Incident response: users can be deactivated; tokens are listed with their dates.
            "ALTER TABLE users ADD COLUMN state TEXT NOT NULL DEFAULT 'active'",
            "ALTER TABLE tokens ADD COLUMN created_at BIGINT",
            "ALTER TABLE tokens ADD COLUMN last_used_at BIGINT",
            "CREATE INDEX tokens_by_user ON tokens (user_id)",
            # A token's creation is the time of the event that added it (payloads are compact JSON
            # with sorted keys, so the token id's text is exact).
            "UPDATE tokens SET created_at = (SELECT MIN(e.created_at) FROM events e WHERE"
            " (e.aggregate_type = 'token' AND e.aggregate_id = tokens.token_id) OR"
            " (e.aggregate_type = 'user' AND e.aggregate_id = tokens.user_id"
            " AND e.event_type = 'user.pat.added'"
            " AND e.payload LIKE '%\"token_id\":\"' || tokens.token_id || '\"%'))",
        ],
    ),
    # User names compared as RFC 8265 says: the keys are computed anew by rekey_user_names.
    (5, []),
    (
        6,
        [
            # Several secrets per machine user, each with an id, dates and a description (#12).
            """CREATE TABLE secrets (
                secret_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                -- The msk_ format's lookup key (not secret); NULL for a secret issued before it.
                lookup TEXT UNIQUE,
                hash TEXT NOT NULL,
                description TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                last_used_at BIGINT
            )""",
            "CREATE INDEX secrets_by_user ON secrets (user_id)",
            """CREATE TABLE secret_policies (
                org_id TEXT PRIMARY KEY,
                max_lifetime BIGINT,
                default_lifetime BIGINT,
                max_secrets_per_user INTEGER,
                max_grace_period BIGINT
            )""",
            # An access token now names the secret that earned it (move_secrets fills it in).
            "ALTER TABLE tokens ADD COLUMN secret_id TEXT",
        ],
    ),
    (
        7,
        [
            # What a user was created with, beside it: GetUserByID shows it without reading the
            # user's first event (copy_profiles fills them in).
            "ALTER TABLE users ADD COLUMN name TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE users ADD COLUMN description TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE users ADD COLUMN display_name TEXT NOT NULL DEFAULT ''",
            "ALTER TABLE users ADD COLUMN email TEXT NOT NULL DEFAULT ''",
        ],
    ),
    # ListUsers: an organisation's users in the order of their user names, a page at a time.
    (8, ["CREATE INDEX users_by_org_and_name ON users (org_id, user_name_key)"]),
    # User name keys compared in code-point order on PostgreSQL too: POSTGRES_ONLY.
    (9, []),
    # ListUsers of one type: the type's users of an organisation in name order, without reading
    # the other type's.
    (10, ["CREATE INDEX users_by_org_type_and_name ON users (org_id, type, user_name_key)"]),
    (
        11,
        [
            # Reports to the revocation endpoint, counted per hour and source, and forgotten after
            # a retention (server/domain/revocation.py), instead of one event each, kept forever
            # whatever they matched. What a report revoked stays an event of its user.
            # (fold_revocation_reports moves the events written before into the counts.)
            """CREATE TABLE revocation_reports (
                hour_start BIGINT NOT NULL,
                source TEXT NOT NULL,
                reports BIGINT NOT NULL,
                candidates BIGINT NOT NULL,
                revoked BIGINT NOT NULL,
                PRIMARY KEY (hour_start, source)
            )""",
        ],
    ),
    # Keys of the service's own, the same for every process on the store (page tokens are signed
    # with one), each made at random by the first process that asks for it (SqlStore.server_key).
    (12, ["CREATE TABLE server_keys (name TEXT PRIMARY KEY, key_hex TEXT NOT NULL)"]),
    # The token endpoint probes a user's secret from before the msk_ format (lookup NULL) by
    # (user, lookup), one seek that reads as much for a user with many secrets as for a user that
    # does not exist (statements.SELECT_LEGACY_CLIENT); by user alone, it read all of the user's
    # secrets. The new index serves every read by user too, so the old one goes.
    (
        13,
        [
            "CREATE INDEX secrets_by_user_and_lookup ON secrets (user_id, lookup)",
            "DROP INDEX secrets_by_user",
        ],
    ),
    # The sweep of expired access tokens and PATs (server/sweep.py): the oldest expiries first,
    # a batch at a time, without reading the live ones (NULL, never expires, is not indexed
    # apart: it is never swept).
    (14, ["CREATE INDEX tokens_by_expiry ON tokens (expires_at)"]),
    # Whole-script look-alikes are one name: each user's confusable skeleton (user_names.py),
    # unique but for users made before, whose skeleton another already had (look_alike_kept = 1:
    # listed at every start, SELECT_LOOK_ALIKES). add_skeletons fills them in and makes the index.
    (
        15,
        [
            "ALTER TABLE users ADD COLUMN user_name_skeleton TEXT",
            "ALTER TABLE users ADD COLUMN look_alike_kept INTEGER NOT NULL DEFAULT 0",
        ],
    ),
    # The audit trail (#31): who made each change, a global order of events, and the hash chains
    # that show a change made to them in the database (server/store/audit.py). chain_existing
    # chains the events written before, once, and makes the indexes.
    (audit.AUDIT_MIGRATION, audit.MIGRATION_16),
    (
        17,
        [
            # Machine keys (#33): the public half of each key pair, never a private one. An
            # access token earned with a key names it (key_id), and dies with it.
            """CREATE TABLE machine_keys (
                key_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                public_key TEXT NOT NULL,
                key_type TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT,
                last_used_at BIGINT
            )""",
            "CREATE INDEX machine_keys_by_user ON machine_keys (user_id)",
            "ALTER TABLE tokens ADD COLUMN key_id TEXT",
            "CREATE INDEX tokens_by_key ON tokens (key_id)",
            # The jti of every assertion accepted, until it expires: a second use of one is a
            # replay, refused on every process by the primary key (jti_key: a SHA-256 of the
            # key id and the jti, so that the table holds nothing a client sent as it sent it).
            """CREATE TABLE assertion_jtis (
                jti_key TEXT PRIMARY KEY,
                expires_at BIGINT NOT NULL
            )""",
            "CREATE INDEX assertion_jtis_by_expiry ON assertion_jtis (expires_at)",
            # The organisation's rules for machine keys, beside those for secrets (NULL: no
            # limit on their lifetime, the default count).
            "ALTER TABLE secret_policies ADD COLUMN max_key_lifetime BIGINT",
            "ALTER TABLE secret_policies ADD COLUMN max_keys_per_user INTEGER",
        ],
    ),
    # Projects (#32): each project's snapshot, its roles, its API
    # applications (the client id unique: it names the application at the introspection
    # endpoint; the bcrypt hash of its secret, found by the secret's lookup key), and the grants
    # of its roles to users.
    (
        18,
        [
            """CREATE TABLE projects (
                id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                name TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            "CREATE INDEX projects_by_org ON projects (org_id, id)",
            """CREATE TABLE project_roles (
                project_id TEXT NOT NULL,
                role_key TEXT NOT NULL,
                display_name TEXT NOT NULL,
                role_group TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                PRIMARY KEY (project_id, role_key)
            )""",
            """CREATE TABLE apps (
                app_id TEXT PRIMARY KEY,
                project_id TEXT NOT NULL,
                org_id TEXT NOT NULL,
                name TEXT NOT NULL,
                client_id TEXT NOT NULL UNIQUE,
                auth_method TEXT NOT NULL,
                secret_lookup TEXT NOT NULL,
                secret_hash TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            "CREATE INDEX apps_by_project ON apps (project_id, app_id)",
            """CREATE TABLE user_grants (
                grant_id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                user_id TEXT NOT NULL,
                project_id TEXT NOT NULL,
                role_keys TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL
            )""",
            "CREATE INDEX user_grants_by_org ON user_grants (org_id, grant_id)",
            "CREATE INDEX user_grants_by_user ON user_grants (user_id)",
            "CREATE INDEX user_grants_by_project ON user_grants (project_id)",
        ],
    ),
    (
        21,
        [
            # Workload identity federation (#34): the issuers an organisation trusts (their keys
            # inline, or where to fetch them), the federated credentials of its machine users,
            # and the access tokens those earned (credential_id), which die with their credential.
            """CREATE TABLE trusted_issuers (
                issuer_id TEXT PRIMARY KEY,
                org_id TEXT NOT NULL,
                issuer TEXT NOT NULL,
                jwks_uri TEXT NOT NULL,
                jwks TEXT NOT NULL,
                description TEXT NOT NULL,
                created_at BIGINT NOT NULL
            )""",
            "CREATE UNIQUE INDEX trusted_issuers_by_org ON trusted_issuers (org_id, issuer)",
            """CREATE TABLE federated_credentials (
                credential_id TEXT PRIMARY KEY,
                user_id TEXT NOT NULL,
                issuer TEXT NOT NULL,
                subject TEXT NOT NULL,
                audience TEXT NOT NULL,
                claim_name TEXT NOT NULL,
                claim_value TEXT NOT NULL,
                description TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                last_used_at BIGINT
            )""",
            "CREATE INDEX federated_credentials_by_user ON federated_credentials (user_id)",
            "ALTER TABLE tokens ADD COLUMN credential_id TEXT",
            "CREATE INDEX tokens_by_credential ON tokens (credential_id)",
        ],
    ),
    (
        22,
        [
            # Keys of API applications with private_key_jwt (#33): the public half only, as
            # machine keys. A key ends with its application and its project.
            """CREATE TABLE app_keys (
                key_id TEXT PRIMARY KEY,
                app_id TEXT NOT NULL,
                project_id TEXT NOT NULL,
                public_key TEXT NOT NULL,
                key_type TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                expires_at BIGINT
            )""",
            "CREATE INDEX app_keys_by_app ON app_keys (app_id)",
            "CREATE INDEX app_keys_by_project ON app_keys (project_id)",
        ],
    ),
    (
        23,
        [
            # The signing keys of JWT access tokens (#32 §4), shared by every process on the
            # store: the public JWK, the private key only encrypted under the master key
            # (domain/signing_keys.py), and from when the key signs (NULL: published, not yet
            # chosen). A removed key's row goes; its events stay.
            """CREATE TABLE webkeys (
                key_id TEXT PRIMARY KEY,
                algorithm TEXT NOT NULL,
                public_jwk TEXT NOT NULL,
                private_key TEXT NOT NULL,
                created_at BIGINT NOT NULL,
                signs_from BIGINT
            )""",
            # A machine user's access tokens are opaque ('bearer') or JWTs ('jwt').
            "ALTER TABLE users ADD COLUMN access_token_type TEXT NOT NULL DEFAULT 'bearer'",
        ],
    ),
    (
        24,
        [
            # A user's metadata (#32 §2): keys and byte values (base64 text, as the events hold
            # them), said in introspection's answer when a token's scope asks for them.
            """CREATE TABLE user_metadata (
                user_id TEXT NOT NULL,
                key TEXT NOT NULL,
                value TEXT NOT NULL,
                sequence BIGINT NOT NULL,
                created_at BIGINT NOT NULL,
                changed_at BIGINT NOT NULL,
                PRIMARY KEY (user_id, key)
            )""",
        ],
    ),
]
# What PostgreSQL alone needs, run with the migration of the same version after its SQL. Its text
# compares by the database's collation, which need not be code-point order, as SQLite's (on UTF-8)
# is: with "C", the keys of a name prefix are one range of users_by_org_and_name on both backends
# (statements.SELECT_USERS_PAGE), and pages come in the same order on both. (Indexes on the column
# are rebuilt.)
POSTGRES_ONLY: dict[int, list[str]] = {
    9: ['ALTER TABLE users ALTER COLUMN user_name_key TYPE TEXT COLLATE "C"'],
}
REKEY_USER_NAMES = 5
MOVE_SECRETS = 6
COPY_PROFILES = 7
FOLD_REVOCATION_REPORTS = 11
HOUR_MICROS = 3_600_000_000
ADD_SKELETONS = 15

# Migrations that SQL alone cannot write: the rows they read, and what they make of them. A
# backend runs the query inside the migration's transaction, after its SQL.
LEGACY_SECRETS = (
    "SELECT u.id, u.secret_hash, u.secret_sequence, e.created_at FROM users u JOIN events e"
    " ON e.aggregate_type = 'user' AND e.aggregate_id = u.id AND e.sequence = u.secret_sequence"
    " WHERE u.secret_hash IS NOT NULL"
)
USER_NAMES = "SELECT id, user_name, user_name_key FROM users"
FIRST_USER_EVENTS = (
    "SELECT u.id, e.payload FROM users u JOIN events e"
    " ON e.aggregate_type = 'user' AND e.aggregate_id = u.id AND e.sequence = 1"
)
PROFILE_FIELDS = ("name", "description", "display_name", "email")
# A report's record, and the secrets it revoked: the two were written in one append, at one time.
REVOCATION_EVENTS = (
    "SELECT event_type, payload, created_at FROM events WHERE aggregate_type = 'revocation'"
    " OR event_type = 'user.machine.secret.revoked'"
)
USERS_OLDEST_FIRST = "SELECT id, user_name FROM users ORDER BY created_at, id"

CREATE_MIGRATIONS_TABLE = "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"


PythonStep = tuple[str, Callable[[list[Mapping[str, Any]]], list[Statement]]]


def python_step(version: int) -> PythonStep | None:
    """The read and the Python of a migration that SQL alone cannot write, if it has them."""
    steps: dict[int, PythonStep] = {
        REKEY_USER_NAMES: (USER_NAMES, rekey_user_names),
        MOVE_SECRETS: (LEGACY_SECRETS, move_secrets),
        COPY_PROFILES: (FIRST_USER_EVENTS, copy_profiles),
        FOLD_REVOCATION_REPORTS: (REVOCATION_EVENTS, fold_revocation_reports),
        ADD_SKELETONS: (USERS_OLDEST_FIRST, add_skeletons),
        audit.AUDIT_MIGRATION: (audit.EVENTS_TO_CHAIN, audit.chain_existing),
    }
    return steps.get(version)


def legacy_secret_id(user_id: str, created_at_micros: int) -> str:
    """An id for a secret issued before secrets had ids: the layout of server/domain/ids.py, from
    the time its event was written, with node and counter bits from its user's id, so that every
    process that runs the migration gives it the same one (ids are told apart per secret, and a
    user had one secret at most)."""
    millis = max(0, created_at_micros // 1000 - IDS_EPOCH_MS)
    spread = int(hashlib.sha256(user_id.encode()).hexdigest(), 16) & ((1 << 22) - 1)
    return str((millis << 22) | spread)


def move_secrets(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 6: each machine user's one secret becomes a row of `secrets` (no lookup key, no
    expiry, no description), and its live access tokens name it; access tokens of secrets replaced
    earlier were dead already and go. The user's own copy of the hash is cleared."""
    steps: list[Statement] = []
    for row in rows:
        secret_id = legacy_secret_id(row["id"], row["created_at"])
        steps += [
            (
                "INSERT INTO secrets (secret_id, user_id, lookup, hash, description, created_at)"
                " VALUES (?, ?, NULL, ?, '', ?)",
                (secret_id, row["id"], row["secret_hash"], row["created_at"]),
            ),
            (
                "UPDATE tokens SET secret_id = ? WHERE user_id = ? AND secret_sequence = ?",
                (secret_id, row["id"], row["secret_sequence"]),
            ),
        ]
    return [
        *steps,
        ("DELETE FROM tokens WHERE secret_sequence IS NOT NULL AND secret_id IS NULL", ()),
        ("UPDATE users SET secret_hash = NULL, secret_sequence = NULL", ()),
    ]


def copy_profiles(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 7: each user's name, description, display name and email from the event that
    created it ("" where its kind has none)."""
    steps: list[Statement] = []
    for row in rows:
        payload = json.loads(row["payload"])
        values = tuple(str(payload.get(field, "")) for field in PROFILE_FIELDS)
        steps.append(
            (
                "UPDATE users SET name = ?, description = ?, display_name = ?, email = ? WHERE id = ?",
                (*values, row["id"]),
            )
        )
    return steps


def fold_revocation_reports(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 11: the record of each report to the revocation endpoint (one event each, a
    `revocation` aggregate of its own that nothing reads and that changed nothing) becomes a count
    of its hour and source, with the secrets revoked at that time from that source; the records
    go. The revocations themselves stay (user.machine.secret.revoked, on their users)."""
    counts: dict[tuple[int, str], list[int]] = {}
    for row in rows:
        payload = json.loads(row["payload"])
        hour = int(row["created_at"]) // HOUR_MICROS * HOUR_MICROS
        count = counts.setdefault((hour, str(payload["source"])), [0, 0, 0])
        if row["event_type"] == "revocation.received":
            count[0] += 1
            count[1] += int(payload["candidates"])
        else:
            count[2] += 1
    steps: list[Statement] = [
        (
            "INSERT INTO revocation_reports (hour_start, source, reports, candidates, revoked)"
            " VALUES (?, ?, ?, ?, ?)",
            (hour, source, *count),
        )
        for (hour, source), count in counts.items()
        if count[0]  # a revocation by a report; other revocations (none so far) are not reports
    ]
    return [*steps, ("DELETE FROM events WHERE aggregate_type = 'revocation'", ())]


def add_skeletons(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 12: every user's confusable skeleton, for rows with id and user_name, oldest
    first. Of users whose names look alike, the oldest holds the skeleton and the others are
    kept (look_alike_kept): two users that exist stay two, and the start-up log names them
    (SELECT_LOOK_ALIKES); no new user can take the skeleton. Then the unique index, and one of
    the few kept users for that listing."""
    held: set[str] = set()
    steps: list[Statement] = []
    for row in rows:
        skeleton = user_name_skeleton(row["user_name"])
        kept = 1 if skeleton in held else 0
        held.add(skeleton)
        steps.append(
            (
                "UPDATE users SET user_name_skeleton = ?, look_alike_kept = ? WHERE id = ?",
                (skeleton, kept, row["id"]),
            )
        )
    return [
        *steps,
        (
            "CREATE UNIQUE INDEX users_by_skeleton ON users (user_name_skeleton) WHERE look_alike_kept = 0",
            (),
        ),
        ("CREATE INDEX users_kept_look_alikes ON users (user_name_skeleton) WHERE look_alike_kept = 1", ()),
    ]


def rekey_user_names(rows: list[Mapping[str, Any]]) -> list[Statement]:
    """Migration 5, which SQL cannot write: the uniqueness key of every user name, from casefold()
    to PRECIS (server/user_names.py), for rows with id, user_name and user_name_key. A name the
    profile refuses, names that now share a key, and a name whose new key another name keeps, keep
    their old keys (SECURITY.md)."""
    wanted: dict[str, list[tuple[str, str]]] = {}
    for row in rows:
        user_id, name, old_key = row["id"], row["user_name"], row["user_name_key"]
        try:
            key = user_name_key(name)
        except NotAUserName:
            key = old_key
        wanted.setdefault(key, []).append((user_id, old_key))
    moves = {users[0][0]: key for key, users in wanted.items() if len(users) == 1 and users[0][1] != key}
    kept = {old_key for users in wanted.values() for user_id, old_key in users if user_id not in moves}
    return [
        ("UPDATE users SET user_name_key = ? WHERE id = ?", (key, user_id))
        for user_id, key in moves.items()
        if key not in kept
    ]
