"""Drives ZITADEL's official Python SDK (PyPI zitadel-client), unmodified, with machine keys: run
by tests/test_zitadel_clients.py with the SDK's own virtual environment (.venv-sdk).

A key made by AddKey, its key file written as ZITADEL answers it, and `Zitadel.with_private_key`
(the JWT profile grant) calling the API; then a public key of its own uploaded, the same; then
ListKeys, and RemoveKey ending the first.

Usage: python zitadel_sdk_keys.py <base URL> <admin PAT> <unique suffix> <folder>. Prints one
JSON object of what it saw.
"""

import base64
import json
import sys
from pathlib import Path

import zitadel_client as zitadel
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from zitadel_client import models as m

base, pat, suffix, folder = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
seen: dict[str, object] = {}
admin = zitadel.Zitadel.with_access_token(base, pat)


def as_bytes(value: bytes | str) -> bytes:
    """The SDK leaves proto3 JSON's bytes as their base64 text."""
    return value if isinstance(value, bytes) else base64.b64decode(value)


org_id = admin.organizations.add_organization(
    m.OrganizationServiceAddOrganizationRequest(name=f"sdk-keys-org-{suffix}")
).organization_id
user = admin.users.create_user(
    m.UserServiceCreateUserRequest(
        organization_id=org_id, username=f"sdk-key-bot-{suffix}", machine=m.UserServiceMachine(name="k")
    )
)
admin.internal_permissions.create_administrator(
    m.InternalPermissionServiceCreateAdministratorRequest(
        user_id=user.id,
        resource=m.InternalPermissionServiceResourceType(organization_id=org_id),
        roles=["ORG_USER_MANAGER"],
    )
)
seen["user_id"] = user.id

# A key the service makes: its key file, shown once, as the SDK reads it from disk.
added = admin.users.add_key(m.UserServiceAddKeyRequest(user_id=user.id))
key_file = folder / "generated.json"
key_file.write_bytes(as_bytes(added.key_content))
seen["key_file_fields"] = sorted(json.loads(key_file.read_text()))
bot = zitadel.Zitadel.with_private_key(base, str(key_file))
seen["generated_key_works"] = (
    bot.users.get_user_by_id(m.UserServiceGetUserByIDRequest(user_id=user.id)).user.user_id == user.id
)

# A key of its own: only the public half is sent.
private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
public_pem = private.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
uploaded = admin.users.add_key(
    m.UserServiceAddKeyRequest(user_id=user.id, public_key=base64.b64encode(public_pem).decode())
)
seen["uploaded_key_content"] = uploaded.key_content or ""
own_file = folder / "own.json"
own_file.write_text(
    json.dumps(
        {
            "type": "serviceaccount",
            "keyId": uploaded.key_id,
            "userId": user.id,
            "key": private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
        }
    )
)
own = zitadel.Zitadel.with_private_key(base, str(own_file))
seen["uploaded_key_works"] = (
    own.users.get_user_by_id(m.UserServiceGetUserByIDRequest(user_id=user.id)).user.user_id == user.id
)

listed = admin.users.list_keys(
    m.UserServiceListKeysRequest(
        filters=[m.UserServiceKeysSearchFilter(user_id_filter=m.UserServiceIDFilter(id=user.id))]
    )
)
seen["listed"] = sorted(k.id for k in listed.result or [])
seen["added"] = sorted([added.key_id, uploaded.key_id])

admin.users.remove_key(m.UserServiceRemoveKeyRequest(user_id=user.id, key_id=added.key_id))
try:
    zitadel.Zitadel.with_private_key(base, str(key_file)).users.get_user_by_id(
        m.UserServiceGetUserByIDRequest(user_id=user.id)
    )
    seen["removed_key"] = "accepted"
except Exception as error:  # the SDK's own exception for a refused token request
    seen["removed_key"] = type(error).__name__
print(json.dumps(seen))
