"""The SQL of every read and write the stores share, in SQL both backends speak.

Placeholders are written `?`; a backend whose driver wants another style converts them. Every
column a read returns has a name of its own: rows are decoded by name (records.py), so a column
added to a query cannot shift another.
"""

INSERT_EVENT = (
    "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload,"
    " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
SELECT_EVENTS = (
    "SELECT aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at"
    " FROM events WHERE aggregate_type = ? AND aggregate_id = ? ORDER BY sequence"
)
SELECT_FIRST_EVENT = (
    "SELECT aggregate_type, aggregate_id, sequence, event_type, resource_owner, payload, created_at"
    " FROM events WHERE aggregate_type = ? AND aggregate_id = ? AND sequence = 1"
)
USER_COLUMNS = (
    "id, org_id, user_name, type, secret_hash, secret_sequence, sequence, created_at, changed_at, state"
)
SELECT_USER = f"SELECT {USER_COLUMNS} FROM users WHERE id = ?"  # noqa: S608 - constant
SELECT_USER_BY_NAME = f"SELECT {USER_COLUMNS} FROM users WHERE user_name_key = ?"  # noqa: S608 - constant
SELECT_ORG = "SELECT id, name, sequence, created_at, changed_at FROM orgs WHERE id = ?"
SELECT_ANY_ORG = "SELECT 1 AS found FROM orgs LIMIT 1"
SELECT_SEQUENCE = (
    "SELECT COALESCE(MAX(sequence), 0) AS sequence FROM events WHERE aggregate_type = ? AND aggregate_id = ?"
)
SELECT_MEMBER_ROLES = "SELECT roles FROM members WHERE org_id = ? AND user_id = ?"
SELECT_ROLES_OF_USER = "SELECT org_id, roles FROM members WHERE user_id = ?"
# Active users that hold IAM_OWNER in some organisation (roles are space-separated names).
SELECT_ACTIVE_IAM_OWNERS = (
    "SELECT DISTINCT m.user_id FROM members m JOIN users u ON u.id = m.user_id"
    " WHERE u.state = 'active' AND (' ' || m.roles || ' ') LIKE ?"
)
IAM_OWNER_ROLE_PATTERN = "% IAM_OWNER %"
# A user's personal access tokens (access tokens carry the secret they were issued for).
SELECT_PATS = (
    "SELECT token_id, created_at, expires_at, last_used_at FROM tokens"
    " WHERE user_id = ? AND secret_sequence IS NULL ORDER BY created_at, token_id"
)
# Notes a use, unless one was noted since `?` (so at most once a minute, whatever the processes).
TOUCH_TOKEN = (
    "UPDATE tokens SET last_used_at = ? WHERE token_hash = ? AND (last_used_at IS NULL OR last_used_at < ?)"
)
# One row per membership of the token's user (one row with NULLs for none).
SELECT_CALLER = (
    "SELECT t.token_id, t.user_id, t.expires_at, t.secret_sequence, t.last_used_at,"
    " u.org_id AS user_org_id, u.secret_sequence AS user_secret_sequence, u.state AS user_state,"
    " m.org_id AS member_org_id, m.roles AS member_roles"
    " FROM tokens t JOIN users u ON u.id = t.user_id LEFT JOIN members m ON m.user_id = u.id"
    " WHERE t.token_hash = ?"
)

INSERT_FAILURE = "INSERT INTO auth_failures (failure_key, failed_at) VALUES (?, ?)"
DELETE_FAILURES_BEFORE = "DELETE FROM auth_failures WHERE failed_at <= ?"
# Per key: the failures after a moment, and the oldest of them. Two keys at a time.
SELECT_FAILURES = (
    "SELECT failure_key, COUNT(*) AS failures, MIN(failed_at) AS oldest FROM auth_failures"
    " WHERE failure_key IN (?, ?) AND failed_at > ? GROUP BY failure_key"
)
