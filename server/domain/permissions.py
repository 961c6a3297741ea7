"""Roles, the permissions they grant, and the caller they are granted to."""

from collections.abc import Mapping
from dataclasses import dataclass

from server.actor import KIND_UNKNOWN, UNKNOWN, Actor

IAM_OWNER = "IAM_OWNER"
ORG_OWNER = "ORG_OWNER"
ORG_USER_MANAGER = "ORG_USER_MANAGER"
# Manages the organisation's projects: their roles, API applications (and so their secrets) and
# user grants; nothing of its users or members.
PROJECT_OWNER = "PROJECT_OWNER"
ROLES = frozenset({IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER, PROJECT_OWNER})

USER_READ = "user.read"
USER_WRITE = "user.write"
ORG_MEMBER_WRITE = "org.member.write"
ORG_CREATE = "org.create"
POLICY_WRITE = "policy.write"  # the organisation's secret policy
# The organisation's events, with who made each (ListEvents): an IAM_OWNER reads the instance's.
AUDIT_READ = "audit.read"
# The organisation's projects, their roles and applications: to read them, and to change them
# (an API application's secret is a credential of its project: project.write makes one).
PROJECT_READ = "project.read"
PROJECT_WRITE = "project.write"
# To give users roles of the organisation's projects (user grants), and to read the grants.
PROJECT_GRANT_WRITE = "project.grant.write"
_PROJECTS = frozenset({PROJECT_READ, PROJECT_WRITE, PROJECT_GRANT_WRITE})
# The instance's signing keys of JWT access tokens (ZITADEL's web keys): IAM_OWNER alone.
WEB_KEY_READ = "iam.web_key.read"
WEB_KEY_WRITE = "iam.web_key.write"
WEB_KEY_DELETE = "iam.web_key.delete"
_WEB_KEYS = frozenset({WEB_KEY_READ, WEB_KEY_WRITE, WEB_KEY_DELETE})

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    IAM_OWNER: frozenset(
        {
            USER_READ,
            USER_WRITE,
            ORG_MEMBER_WRITE,
            ORG_CREATE,
            POLICY_WRITE,
            AUDIT_READ,
            *_PROJECTS,
            *_WEB_KEYS,
        }
    ),
    ORG_OWNER: frozenset({USER_READ, USER_WRITE, ORG_MEMBER_WRITE, POLICY_WRITE, AUDIT_READ, *_PROJECTS}),
    ORG_USER_MANAGER: frozenset({USER_READ, USER_WRITE}),
    PROJECT_OWNER: _PROJECTS,
}
# Every permission a role grants.
PERMISSIONS = frozenset().union(*ROLE_PERMISSIONS.values())
# What a method may declare instead of a permission: any authenticated caller, with no context
# organisation (x-zitadel-orgid is not read). For methods whose answer is the caller's own reach,
# such as the organisations it may act in.
ANY_CALLER = "authenticated"
DECLARABLE = PERMISSIONS | {ANY_CALLER}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user, its own organisation, and its roles by organisation; and
    the credential it authenticated with (server/actor.py's kinds), for the events it writes."""

    user_id: str
    org_id: str
    roles: dict[str, frozenset[str]]
    credential_kind: str = KIND_UNKNOWN
    credential_id: str = ""

    @property
    def is_iam_owner(self) -> bool:
        # IAM_OWNER is an instance role: granted in any organisation, it holds in every one.
        return any(IAM_OWNER in roles for roles in self.roles.values())

    def has(self, permission: str, org_id: str) -> bool:
        if self.is_iam_owner:
            return True
        return any(permission in ROLE_PERMISSIONS[role] for role in self.roles.get(org_id, ()))

    def permissions_in(self, org_id: str) -> frozenset[str]:
        """Every permission this caller holds in the organisation (what `has` says yes to)."""
        if self.is_iam_owner:
            return PERMISSIONS
        return frozenset().union(*(ROLE_PERMISSIONS[role] for role in self.roles.get(org_id, ())))

    def covers(self, roles_by_org: Mapping[str, frozenset[str]]) -> bool:
        """Whether this caller holds, in each organisation, every permission of the roles held
        there by someone else: the test for handing out that someone's power.

        A credential of a user is that user's power, and so is a role: granting either to a
        caller who lacks it would be an escalation (as AWS's iam:CreateAccessKey on another user,
        or a Kubernetes role binding without `escalate`). IAM_OWNER holds in every organisation,
        so only an IAM_OWNER covers an IAM_OWNER, wherever it was granted.
        """
        for org_id, roles in roles_by_org.items():
            for role in roles:
                if role == IAM_OWNER and not self.is_iam_owner:
                    return False
                if not all(self.has(permission, org_id) for permission in ROLE_PERMISSIONS[role]):
                    return False
        return True


@dataclass(frozen=True)
class CallContext:
    """Who calls, and the organisation the call acts in (already checked for the permission);
    and the call's actor, which every event the call writes records (its request, address and
    transport, set by the pipeline)."""

    principal: Principal
    org_id: str
    actor: Actor = UNKNOWN
