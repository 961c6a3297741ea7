"""Drives ZITADEL's official Python SDK (PyPI zitadel-client), unmodified, against a running
service: run by tests/test_zitadel_clients.py with the SDK's own virtual environment (.venv-sdk,
made by the Makefile: the SDK needs urllib3 2, which sonora's pins forbid in the project's).

Usage: python zitadel_sdk.py <base URL> <admin PAT> <unique suffix>. Prints one JSON object of what
it saw; any step that fails as it should not ends the script with an exception.
"""

import json
import sys

import zitadel_client as zitadel
from zitadel_client import models as m

base, pat, suffix = sys.argv[1], sys.argv[2], sys.argv[3]
seen: dict[str, object] = {}
admin = zitadel.Zitadel.with_access_token(base, pat)

# A PAT creates an organisation and a machine user in it.
org = admin.organizations.add_organization(
    m.OrganizationServiceAddOrganizationRequest(name=f"sdk-org-{suffix}")
)
org_id = org.organization_id
name = f"sdk-bot-{suffix}"
user = admin.users.create_user(
    m.UserServiceCreateUserRequest(
        organization_id=org_id,
        username=name,
        machine=m.UserServiceMachine(name="SDK bot", description="made by the SDK"),
    )
)
seen["org_id"], seen["user_id"] = org_id, user.id

# AddSecret answers a secret, and GetUserByID shows has_secret.
first = admin.users.add_secret(m.UserServiceAddSecretRequest(user_id=user.id))
got = admin.users.get_user_by_id(m.UserServiceGetUserByIDRequest(user_id=user.id))
seen["has_secret"] = got.user.machine.has_secret
seen["username"] = got.user.username
seen["resource_owner"] = got.details.resource_owner

# CreateAdministrator makes the machine user an ORG_USER_MANAGER of its organisation.
admin.internal_permissions.create_administrator(
    m.InternalPermissionServiceCreateAdministratorRequest(
        user_id=user.id,
        resource=m.InternalPermissionServiceResourceType(organization_id=org_id),
        roles=["ORG_USER_MANAGER"],
    )
)

# Client credentials (discovery, then the token endpoint): it acts as that machine user.
bot = zitadel.Zitadel.with_client_credentials(base, name, first.client_secret)
made = bot.users.create_user(
    m.UserServiceCreateUserRequest(
        organization_id=org_id, machine=m.UserServiceMachine(name="made by the bot")
    )
)
seen["bot_created"] = made.id
seen["bot_created_username"] = bot.users.get_user_by_id(
    m.UserServiceGetUserByIDRequest(user_id=made.id)
).user.username

# A second AddSecret makes the first fail.
second = admin.users.add_secret(m.UserServiceAddSecretRequest(user_id=user.id))
try:
    zitadel.Zitadel.with_client_credentials(base, name, first.client_secret).users.get_user_by_id(
        m.UserServiceGetUserByIDRequest(user_id=user.id)
    )
    seen["old_secret"] = "accepted"
except Exception as error:  # the SDK's own exception for a refused token request
    seen["old_secret"] = type(error).__name__
seen["new_secret_works"] = (
    zitadel.Zitadel.with_client_credentials(base, name, second.client_secret)
    .users.get_user_by_id(m.UserServiceGetUserByIDRequest(user_id=user.id))
    .user.user_id
    == user.id
)

# RemoveSecret works; the error statuses come back as the SDK reports them.
removed = admin.users.remove_secret(m.UserServiceRemoveSecretRequest(user_id=user.id))
seen["deletion_date"] = removed.deletion_date is not None
for label, call in (
    ("remove_again", lambda: admin.users.remove_secret(m.UserServiceRemoveSecretRequest(user_id=user.id))),
    ("unknown_user", lambda: admin.users.get_user_by_id(m.UserServiceGetUserByIDRequest(user_id="1"))),
    (
        "bad_token",
        lambda: zitadel.Zitadel.with_access_token(base, "nope").users.get_user_by_id(
            m.UserServiceGetUserByIDRequest(user_id=user.id)
        ),
    ),
):
    try:
        call()
        seen[label] = "ok"
    except zitadel.ApiError as error:
        seen[label] = error.code
print(json.dumps(seen))
