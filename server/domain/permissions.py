"""Roles, the permissions they grant, and the caller they are granted to."""

from dataclasses import dataclass

IAM_OWNER = "IAM_OWNER"
ORG_OWNER = "ORG_OWNER"
ORG_USER_MANAGER = "ORG_USER_MANAGER"
ROLES = frozenset({IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER})

USER_READ = "user.read"
USER_WRITE = "user.write"
ORG_MEMBER_WRITE = "org.member.write"
ORG_CREATE = "org.create"

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    IAM_OWNER: frozenset({USER_READ, USER_WRITE, ORG_MEMBER_WRITE, ORG_CREATE}),
    ORG_OWNER: frozenset({USER_READ, USER_WRITE, ORG_MEMBER_WRITE}),
    ORG_USER_MANAGER: frozenset({USER_READ, USER_WRITE}),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user, its own organisation, and its roles by organisation."""

    user_id: str
    org_id: str
    roles: dict[str, frozenset[str]]

    @property
    def is_iam_owner(self) -> bool:
        # IAM_OWNER is an instance role: granted in any organisation, it holds in every one.
        return any(IAM_OWNER in roles for roles in self.roles.values())

    def has(self, permission: str, org_id: str) -> bool:
        if self.is_iam_owner:
            return True
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles.get(org_id, ()))


@dataclass(frozen=True)
class CallContext:
    """Who calls, and the organisation the call acts in (already checked for the permission)."""

    principal: Principal
    org_id: str
