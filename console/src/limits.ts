// The longest text the service accepts, each where it is written: a longer one is refused there
// (INVALID_ARGUMENT), so the console shows the count as the person types and refuses it first.
// tests/test_console.py checks these against the Python.
export const LIMITS = {
  userName: 200, // server/limits.py MAX_USER_NAME_LENGTH
  name: 200, // server/domain/validation.py MAX_NAME_LENGTH
  userDescription: 500, // server/domain/validation.py MAX_DESCRIPTION_LENGTH
  secretDescription: 200, // server/domain/secret_policy.py MAX_SECRET_DESCRIPTION_LENGTH
  // The live secrets a user may have where the organisation's policy sets no number.
  defaultMaxSecrets: 5, // server/domain/secret_policy.py DEFAULT_MAX_SECRETS
};
