"""The SQL of every read and write the stores share, in SQL both backends speak.

Placeholders are written `?`; a backend whose driver wants another style converts them. Every
column a read returns has a name of its own: rows are decoded by name (records.py), so a column
added to a query cannot shift another.
"""

from server.store.codecs import NEVER

# Events are written by server/store/audit.py (each backend its chained insert), with their
# positions and hashes.
SELECT_EVENTS = (
    "SELECT aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at,"
    " actor_user_id, actor_org_id, credential_kind, credential_id, request_id, peer, transport"
    " FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
)
# With the user: until when it has a live secret, the latest expiry of its secrets (NEVER for
# one that does not expire, NULL for none).
USER_COLUMNS = (
    "users.id, users.org_id, users.user_name, users.type, users.sequence, users.created_at,"  # noqa: S608
    " users.changed_at, users.state, users.name, users.description, users.display_name, users.email,"
    " users.user_name_key, users.access_token_type,"
    f" (SELECT MAX(COALESCE(x.expires_at, {NEVER}))"
    " FROM secrets x WHERE x.user_id = users.id) AS secrets_live_until"
)
SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = ?"  # noqa: S608 - constant
SELECT_USER_BY_NAME = f"SELECT {USER_COLUMNS} FROM users WHERE user_name_key = ?"  # noqa: S608 - constant


def _users_page(of_type: str) -> str:
    """A page of an organisation's users in the order of their user name keys, after a key; those
    whose key starts with a prefix. The keys that start with a prefix are those from the prefix up
    to (not including) the prefix followed by PREFIX_END: keys compare in code-point order on both
    backends (migrations.POSTGRES_ONLY), and no key holds U+10FFFF (PRECIS refuses noncharacters).
    So a page is one range of an index, (org, key) or (org, type, key), read from its start to its
    end, rather than a filter over every key of the organisation after the page's start.

    The range starts at the later of the prefix and the key the page comes after, and leaves that
    key out: given a third bound on the key (`> after` beside `>= prefix`), SQLite 3.40's planner
    takes the (org, key) index even with a type, and reads all of the organisation's names."""
    return (
        f"SELECT {USER_COLUMNS} FROM users WHERE users.org_id = ?{of_type}"  # noqa: S608 - constants
        " AND users.user_name_key >= ? AND users.user_name_key < ? AND users.user_name_key <> ?"
        " ORDER BY users.user_name_key LIMIT ?"
    )


# Parameters: org, [type,] max(prefix, after), prefix + PREFIX_END, after, limit.
SELECT_USERS_PAGE = _users_page("")
SELECT_USERS_OF_TYPE_PAGE = _users_page(" AND users.type = ?")
PREFIX_END = "\U0010ffff"
SECRET_COLUMNS = (
    "s.secret_id AS secret_id, s.user_id AS secret_user_id, s.lookup AS secret_lookup,"
    " s.hash AS secret_hash, s.description AS secret_description, s.created_at AS secret_created_at,"
    " s.expires_at AS secret_expires_at, s.last_used_at AS secret_last_used_at"
)
# The client of a token request: its user, and the secret it presented by lookup key (or its
# secret from before the msk_ format), in one statement that does the same work whether the user
# exists or not, so that the time of an answer does not tell which (a failure costs the same in
# bcrypt too: SecretHasher's dummy hash). It reads one user row either way: the user whose name
# key is the first at or after the one asked for (or, past the last, the first of all), which is
# the user asked for if there is one; the store keeps it only then. Its secret is read by one seek
# of an index either way: a msk_ secret by its lookup key alone (the store keeps it only if it is
# the user's), a legacy one by (user, lookup NULL) in secrets_by_user_and_lookup. Exactly one row
# comes back (its user columns hold the defaults below only while there is no user at all), and
# it is decoded the same way. The user's secrets_live_until, which the token endpoint does not
# read, is left out (NULL): it was a subquery over every secret of an existing user.
_CLIENT_USER_DEFAULTS = (
    ("id", "''"),
    ("org_id", "''"),
    ("user_name", "''"),
    ("type", "''"),
    ("sequence", "0"),
    ("created_at", "0"),
    ("changed_at", "0"),
    ("state", "''"),
    ("name", "''"),
    ("description", "''"),
    ("display_name", "''"),
    ("email", "''"),
    ("user_name_key", "''"),
    ("access_token_type", "'bearer'"),
)
CLIENT_USER_COLUMNS = ", ".join(
    f"COALESCE(users.{column}, {default}) AS {column}" for column, default in _CLIENT_USER_DEFAULTS
)
_CLIENT_FROM = (
    f"SELECT {CLIENT_USER_COLUMNS}, NULL AS secrets_live_until, {SECRET_COLUMNS}"  # noqa: S608 - constants
    " FROM (SELECT CAST(? AS TEXT) AS name_key, CAST(? AS TEXT) AS lookup) q"
    " LEFT JOIN users ON users.user_name_key = COALESCE("
    "(SELECT n.user_name_key FROM users n WHERE n.user_name_key >= q.name_key"
    " ORDER BY n.user_name_key LIMIT 1),"
    " (SELECT n.user_name_key FROM users n ORDER BY n.user_name_key LIMIT 1))"
)
# Parameters: the user name key, the lookup key.
SELECT_CLIENT = _CLIENT_FROM + " LEFT JOIN secrets s ON s.lookup = q.lookup"
# Parameters: the user name key, None.
SELECT_LEGACY_CLIENT = _CLIENT_FROM + " LEFT JOIN secrets s ON s.user_id = users.id AND s.lookup IS NULL"
SELECT_SECRETS = (
    f"SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.user_id = ?"  # noqa: S608 - constant
    " ORDER BY s.created_at, s.secret_id"
)


def select_secrets_by_lookup(count: int) -> str:
    """The secrets with any of count lookup keys."""
    marks = ", ".join("?" * count)
    return f"SELECT {SECRET_COLUMNS} FROM secrets s WHERE s.lookup IN ({marks})"  # noqa: S608 - placeholders only


# Notes a use, unless one was noted since `?` (at most once a minute, whatever the processes).
TOUCH_SECRET = (
    "UPDATE secrets SET last_used_at = ? WHERE secret_id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)
SELECT_SECRET_POLICY = (
    "SELECT max_lifetime, default_lifetime, max_secrets_per_user, max_grace_period, max_key_lifetime,"
    " max_keys_per_user FROM secret_policies WHERE org_id = ?"
)
ORG_COLUMNS = "id, name, sequence, created_at, changed_at"
SELECT_ORG = f"SELECT {ORG_COLUMNS} FROM orgs WHERE id = ?"  # noqa: S608 - constant


def select_orgs_page(count: int | None) -> str:
    """A page of organisations in the order of their ids, after an id: all of them (count None),
    or those among count ids."""
    among = "" if count is None else f"id IN ({', '.join('?' * count)}) AND "
    return f"SELECT {ORG_COLUMNS} FROM orgs WHERE {among}id > ? ORDER BY id LIMIT ?"  # noqa: S608 - placeholders only


SELECT_ANY_ORG = "SELECT 1 AS found FROM orgs LIMIT 1"
SELECT_SEQUENCE = (
    "SELECT COALESCE(MAX(sequence), 0) AS sequence FROM events WHERE aggregate_type = ? AND aggregate_id = ?"
)
SELECT_MEMBER_ROLES = "SELECT roles FROM members WHERE org_id = ? AND user_id = ?"
# An organisation's members with their users, in the order of their user ids, after an id; of
# every user (the parameter '') or of one.
_MEMBERS = (
    " FROM members m JOIN users ON users.id = m.user_id"
    " WHERE m.org_id = ? AND (? = '' OR m.user_id = ?) AND m.user_id > ?"
)
SELECT_MEMBERS_PAGE = (
    f"SELECT {USER_COLUMNS}, m.roles AS member_roles{_MEMBERS} ORDER BY m.user_id LIMIT ? OFFSET ?"
)
SELECT_MEMBER_COUNT = f"SELECT COUNT(*) AS members{_MEMBERS}"
SELECT_ROLES_OF_USER = "SELECT org_id, roles FROM members WHERE user_id = ?"
# Active users that hold IAM_OWNER in some organisation (roles are space-separated names).
SELECT_ACTIVE_IAM_OWNERS = (
    "SELECT DISTINCT m.user_id FROM members m JOIN users u ON u.id = m.user_id"
    " WHERE u.state = 'active' AND (' ' || m.roles || ' ') LIKE ?"
)
IAM_OWNER_ROLE_PATTERN = "% IAM_OWNER %"
# A user's personal access tokens (access tokens carry the secret or key they were issued for).
SELECT_PATS = (
    "SELECT token_id, created_at, expires_at, last_used_at FROM tokens"
    " WHERE user_id = ? AND secret_id IS NULL AND key_id IS NULL AND credential_id IS NULL"
    " ORDER BY created_at, token_id"
)
# Notes a use, unless one was noted since `?` (so at most once a minute, whatever the processes).
TOUCH_TOKEN = (
    "UPDATE tokens SET last_used_at = ? WHERE token_hash = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)
# One row per membership of the token's user (one row with NULLs for none). An access token
# names the secret or the machine key that earned it: whichever it is, if it still exists.
SELECT_CALLER = (
    "SELECT t.token_id, t.user_id, t.expires_at, t.secret_id, t.key_id, t.credential_id, t.last_used_at,"  # noqa: S608
    " u.org_id AS user_org_id, u.state AS user_state,"
    f" s.secret_id AS live_secret_id, COALESCE(s.expires_at, {NEVER}) AS secret_live_until,"
    f" k.key_id AS live_key_id, COALESCE(k.expires_at, {NEVER}) AS key_live_until,"
    " f.credential_id AS live_credential_id,"
    " m.org_id AS member_org_id, m.roles AS member_roles"
    " FROM tokens t JOIN users u ON u.id = t.user_id LEFT JOIN secrets s ON s.secret_id = t.secret_id"
    " LEFT JOIN machine_keys k ON k.key_id = t.key_id"
    " LEFT JOIN federated_credentials f ON f.credential_id = t.credential_id"
    " LEFT JOIN members m ON m.user_id = u.id WHERE t.token_hash = ?"
)
MACHINE_KEY_COLUMNS = "key_id, user_id, public_key, key_type, created_at, expires_at, last_used_at"
SELECT_MACHINE_KEYS = (
    f"SELECT {MACHINE_KEY_COLUMNS} FROM machine_keys WHERE user_id = ?"  # noqa: S608 - constant
    " ORDER BY created_at, key_id"
)
SELECT_MACHINE_KEY = f"SELECT {MACHINE_KEY_COLUMNS} FROM machine_keys WHERE key_id = ?"  # noqa: S608 - constant
# Notes a use, unless one was noted since `?` (at most once a minute, whatever the processes).
TOUCH_MACHINE_KEY = (
    "UPDATE machine_keys SET last_used_at = ? WHERE key_id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)
# An assertion's jti, kept until the assertion expires; a second insert of one is a replay.
INSERT_ASSERTION_JTI = "INSERT INTO assertion_jtis (jti_key, expires_at) VALUES (?, ?)"
DELETE_EXPIRED_ASSERTION_JTIS = "DELETE FROM assertion_jtis WHERE expires_at <= ?"

# Expired credentials (access tokens and PATs), the oldest first: a batch for the sweep.
SELECT_EXPIRED_TOKENS = (
    "SELECT token_hash FROM tokens WHERE expires_at <= ? ORDER BY expires_at, token_hash LIMIT ?"
)


def delete_expired_tokens(count: int) -> str:
    """Those of count token hashes that are expired (an expiry never moves: the condition only
    guards the rows against a mistaken hash)."""
    marks = ", ".join("?" * count)
    return f"DELETE FROM tokens WHERE token_hash IN ({marks}) AND expires_at <= ?"  # noqa: S608 - placeholders only


# Pairs of users whose names look alike (one confusable skeleton): a user made before migration 15
# that it kept, and the one that holds the skeleton.
SELECT_LOOK_ALIKES = (
    "SELECT k.id AS kept_id, k.org_id AS kept_org_id, k.user_name AS kept_user_name,"
    " h.id AS holder_id, h.org_id AS holder_org_id, h.user_name AS holder_user_name"
    " FROM users k JOIN users h ON h.user_name_skeleton = k.user_name_skeleton AND h.look_alike_kept = 0"
    " WHERE k.look_alike_kept = 1 ORDER BY k.id"
)

INSERT_FAILURE = "INSERT INTO auth_failures (failure_key, failed_at) VALUES (?, ?)"
DELETE_FAILURES_BEFORE = "DELETE FROM auth_failures WHERE failed_at <= ?"
# Per key: the failures after a moment, and the oldest of them. Two keys at a time.
SELECT_FAILURES = (
    "SELECT failure_key, COUNT(*) AS failures, MIN(failed_at) AS oldest FROM auth_failures"
    " WHERE failure_key IN (?, ?) AND failed_at > ? GROUP BY failure_key"
)

# Reports added to the count of their hour and source (reports, candidates, revoked): under
# their own source while the hour counts fewer named sources than the cap, or if it has a row
# already; under '*' (base.SOURCE_OVERFLOW) past it. (SQLite needs a WHERE before ON CONFLICT in
# an INSERT ... SELECT.)
COUNT_REVOCATION_REPORT = (
    "INSERT INTO revocation_reports (hour_start, source, reports, candidates, revoked)"
    " SELECT CAST(? AS BIGINT),"
    " CASE WHEN EXISTS (SELECT 1 FROM revocation_reports WHERE hour_start = ? AND source = ?)"
    " OR (SELECT COUNT(*) FROM revocation_reports WHERE hour_start = ? AND source <> '*') < ?"
    " THEN CAST(? AS TEXT) ELSE '*' END,"
    " CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS BIGINT) WHERE 1 = 1"
    " ON CONFLICT (hour_start, source) DO UPDATE"
    " SET reports = revocation_reports.reports + excluded.reports,"
    " candidates = revocation_reports.candidates + excluded.candidates,"
    " revoked = revocation_reports.revoked + excluded.revoked"
)
FORGET_REVOCATION_REPORTS = "DELETE FROM revocation_reports WHERE hour_start < ?"
SELECT_REVOCATION_REPORTS = (
    "SELECT hour_start, source, reports, candidates, revoked"
    " FROM revocation_reports ORDER BY hour_start, source"
)

INSERT_SERVER_KEY = "INSERT INTO server_keys (name, key_hex) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
SELECT_SERVER_KEY = "SELECT key_hex FROM server_keys WHERE name = ?"

# Projects (migration 18): a project, an organisation's projects, a project's roles and API
# applications, an application by its client id, and user grants.
PROJECT_COLUMNS = "id, org_id, name, sequence, created_at, changed_at"
SELECT_PROJECT = f"SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?"  # noqa: S608 - constant
SELECT_PROJECTS = f"SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = ? ORDER BY id"  # noqa: S608 - constant
SELECT_PROJECT_ROLES = (
    "SELECT project_id, role_key, display_name, role_group, sequence, created_at FROM project_roles"
    " WHERE project_id = ? ORDER BY role_key"
)
APP_COLUMNS = (
    "app_id, project_id, org_id, name, client_id, auth_method, secret_lookup, secret_hash, sequence,"
    " created_at, changed_at"
)
SELECT_APPS = f"SELECT {APP_COLUMNS} FROM apps WHERE project_id = ? ORDER BY app_id"  # noqa: S608 - constant
SELECT_APP_BY_CLIENT_ID = f"SELECT {APP_COLUMNS} FROM apps WHERE client_id = ?"  # noqa: S608 - constant
APP_KEY_COLUMNS = "key_id, app_id, project_id, public_key, key_type, created_at, expires_at"
SELECT_APP_KEYS = (
    f"SELECT {APP_KEY_COLUMNS} FROM app_keys WHERE app_id = ?"  # noqa: S608 - constant
    " ORDER BY created_at, key_id"
)
GRANT_COLUMNS = "grant_id, org_id, user_id, project_id, role_keys, sequence, created_at, changed_at"
SELECT_GRANT = f"SELECT {GRANT_COLUMNS} FROM user_grants WHERE grant_id = ?"  # noqa: S608 - constant
SELECT_GRANTS_OF_ORG = f"SELECT {GRANT_COLUMNS} FROM user_grants WHERE org_id = ? ORDER BY grant_id"  # noqa: S608 - constant
SELECT_GRANTS_OF_USER = f"SELECT {GRANT_COLUMNS} FROM user_grants WHERE user_id = ? ORDER BY grant_id"  # noqa: S608 - constant
TRUSTED_ISSUER_COLUMNS = "issuer_id, org_id, issuer, jwks_uri, jwks, description, created_at"
SELECT_TRUSTED_ISSUERS = (
    f"SELECT {TRUSTED_ISSUER_COLUMNS} FROM trusted_issuers WHERE org_id = ?"  # noqa: S608 - constant
    " ORDER BY created_at, issuer_id"
)
FEDERATED_CREDENTIAL_COLUMNS = (
    "credential_id, user_id, issuer, subject, audience, claim_name, claim_value, description,"
    " created_at, last_used_at"
)
SELECT_FEDERATED_CREDENTIALS = (
    f"SELECT {FEDERATED_CREDENTIAL_COLUMNS} FROM federated_credentials WHERE user_id = ?"  # noqa: S608 - constant
    " ORDER BY created_at, credential_id"
)
# Notes a use, unless one was noted since `?` (at most once a minute, whatever the processes).
TOUCH_FEDERATED_CREDENTIAL = (
    "UPDATE federated_credentials SET last_used_at = ?"
    " WHERE credential_id = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)

# The signing keys of JWT access tokens, oldest first.
SELECT_WEBKEYS = (
    "SELECT key_id, algorithm, public_jwk, private_key, created_at, signs_from FROM webkeys"
    " ORDER BY created_at, key_id"
)

METADATA_COLUMNS = "user_id, key, value, sequence, created_at, changed_at"
# Unordered: PostgreSQL orders text by the database's collation, which need not be code-point
# order, so the store sorts a user's few keys itself (sql.py).
SELECT_USER_METADATA = f"SELECT {METADATA_COLUMNS} FROM user_metadata WHERE user_id = ?"  # noqa: S608 - constant
