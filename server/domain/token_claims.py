"""What a token asserts beyond who it is for, in ZITADEL's claim shapes: its user's organisation,
its user's project roles and its user's metadata, as its scope asked (domain/scopes.py). The
introspection endpoint reads them when a token is introspected; a JWT access token carries them
as they were when it was issued."""

import base64
from typing import Any

from server.domain import scopes
from server.store.contract import Store


async def resource_owner_claims(store: Store, org_id: str) -> dict[str, Any]:
    org = await store.org(org_id)
    if org is None:
        return {}
    return {scopes.RESOURCE_OWNER_ID_CLAIM: org.id, scopes.RESOURCE_OWNER_NAME_CLAIM: org.name}


async def role_claims(
    store: Store, user_id: str, asked: scopes.RequestedClaims, primary_project: str
) -> dict[str, Any]:
    """ZITADEL's role claims: per project of the audience, `{role: {orgId: orgName}}` of the
    roles the user is granted there (and that the project still has), those asked for; the
    primary project's (the introspecting application's, or a JWT's first audience) also under
    the unnumbered claim."""
    claims: dict[str, Any] = {}
    for grant in await store.grants_of_user(user_id):
        if grant.project_id not in asked.audience:
            continue
        existing = {role.key for role in await store.project_roles(grant.project_id)}
        org = await store.org(grant.org_id)
        owner = {grant.org_id: "" if org is None else org.name}
        roles = {key: owner for key in sorted(grant.role_keys & existing) if asked.wants(key)}
        if not roles:
            continue
        claims[scopes.project_roles_claim(grant.project_id)] = roles
        if grant.project_id == primary_project:
            claims[scopes.ROLES_CLAIM] = roles
    return claims


async def metadata_claims(store: Store, user_id: str) -> dict[str, Any]:
    """ZITADEL's shape: each value in base64, as it is now; no claim for a user without any."""
    held = await store.user_metadata(user_id)
    if not held:
        return {}
    return {scopes.METADATA_CLAIM: {m.key: base64.b64encode(m.value).decode() for m in held}}
