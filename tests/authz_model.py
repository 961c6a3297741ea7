"""A reference model of who may do what, written from the README's tables alone.

It imports nothing from `server/`: a model that restates the code can only agree with it. Its
tables are the README's ("The API": the permission each RPC needs, the roles and what they give,
the error codes and reasons) and SECURITY.md's escalation rule. Each call gives one expected
answer, a gRPC code name and an ErrorInfo reason, and the change it makes to the model's state.
"""

from dataclasses import dataclass, field

IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER = "IAM_OWNER", "ORG_OWNER", "ORG_USER_MANAGER"
ROLES = (IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER)
# README, "Roles": IAM_OWNER holds everything, in every organisation.
GIVES = {
    ORG_OWNER: frozenset({"user.read", "user.write", "org.member.write", "policy.write"}),
    ORG_USER_MANAGER: frozenset({"user.read", "user.write"}),
}
# README, the RPC table's "needs" column. AddOrganization needs IAM_OWNER itself.
NEEDS = {
    "AddSecret": "user.write",
    "RemoveSecret": "user.write",
    "AddMachineUser": "user.write",
    "AddHumanUser": "user.write",
    "GetUserByID": "user.read",
    "AddPersonalAccessToken": "user.write",
    "AddOrganization": IAM_OWNER,
    "AddOrgMember": "org.member.write",
    "DeactivateUser": "user.write",
    "ReactivateUser": "user.write",
    "RemoveUser": "user.write",
    "RemoveOrgMember": "org.member.write",
    "CreateSecret": "user.write",
    "RotateSecret": "user.write",
    "DeleteSecret": "user.write",
    "ListSecrets": "user.read",
    "GetSecretPolicy": "user.read",
    "SetSecretPolicy": "policy.write",
}
# Calls that address no user: past the organisation's checks, they succeed.
ORG_METHODS = ("AddOrganization", "AddMachineUser", "AddHumanUser", "GetSecretPolicy", "SetSecretPolicy")
# README, "Secret lifecycle": at most this many live secrets per machine user, by default.
MAX_SECRETS = 5
# README, "Coming from ZITADEL": ZITADEL's names for the same calls. v1 methods act as the native
# ones do (x-zitadel-orgid, or the caller's own organisation); v2 methods act in the user's
# organisation, whatever the header, and a user the caller may not read is NOT_FOUND.
ZITADEL_V1 = {
    "ManagementService.GenerateMachineSecret": "AddSecret",
    "ManagementService.RemoveMachineSecret": "RemoveSecret",
    "ManagementService.AddPersonalAccessToken": "AddPersonalAccessToken",
    "ManagementService.GetUserByID": "GetUserByID",
    "ManagementService.DeactivateUser": "DeactivateUser",
    "ManagementService.ReactivateUser": "ReactivateUser",
    "ManagementService.RemoveUser": "RemoveUser",
}
ZITADEL_V2 = {
    "UserServiceV2.AddSecret": "AddSecret",
    "UserServiceV2.RemoveSecret": "RemoveSecret",
    "UserServiceV2.AddPersonalAccessToken": "AddPersonalAccessToken",
    "UserServiceV2.GetUserByID": "GetUserByID",
    "UserServiceV2.DeactivateUser": "DeactivateUser",
    "UserServiceV2.ReactivateUser": "ReactivateUser",
    "UserServiceV2.DeleteUser": "RemoveUser",
}
NEEDS.update({name: NEEDS[native] for name, native in {**ZITADEL_V1, **ZITADEL_V2}.items()})


def native(method: str) -> str:
    """The native method a ZITADEL name stands for (a native name stands for itself)."""
    return ZITADEL_V1.get(method) or ZITADEL_V2.get(method) or method


# Calls that make, replace or remove a credential of their target: each needs the target's power.
# (DeleteSecret names a secret id the scenes never hold: its answer, past the gate, is NOT_FOUND.)
CREDENTIAL_METHODS = (
    "AddSecret",
    "RemoveSecret",
    "AddPersonalAccessToken",
    "CreateSecret",
    "RotateSecret",
    "DeleteSecret",
)
# The ones of them that answer a new secret.
NEW_SECRET_METHODS = ("AddSecret", "CreateSecret", "RotateSecret")
# SECURITY.md: switching a user off, or taking its roles, needs the user's power too.
USER_METHODS = ("DeactivateUser", "ReactivateUser", "RemoveUser")
EVERYTHING = ("*", "*")  # the power of an IAM_OWNER: every permission in every organisation

OK = ("OK", "")
Answer = tuple[str, str]  # (gRPC code name, ErrorInfo reason)


@dataclass
class User:
    id: str
    org: str
    machine: bool
    roles: dict[str, frozenset[str]] = field(default_factory=dict)
    secrets: set[int] = field(default_factory=set)  # the live ones, by the scene's numbering
    active: bool = True
    removed: bool = False

    def power(self) -> frozenset[tuple[str, str]]:
        """(organisation, permission) pairs this user's credentials reach."""
        if any(IAM_OWNER in roles for roles in self.roles.values()):
            return frozenset({EVERYTHING})
        return frozenset((org, p) for org, roles in self.roles.items() for role in roles for p in GIVES[role])

    @property
    def has_secret(self) -> bool:
        return bool(self.secrets)

    def holds(self, permission: str, org: str) -> bool:
        return EVERYTHING in self.power() or (org, permission) in self.power()


def covers(power: frozenset[tuple[str, str]], other: frozenset[tuple[str, str]]) -> bool:
    return EVERYTHING in power or other <= power


@dataclass(frozen=True)
class Token:
    value: str
    user_id: str
    secret: int | None  # an access token: the secret it was exchanged for; a PAT: None


@dataclass
class Model:
    orgs: set[str]
    users: dict[str, User]

    def valid(self, token: Token) -> bool:
        user = self.users[token.user_id]
        if user.removed or not user.active:
            return False  # nothing of a deactivated or removed user is accepted
        return token.secret is None or token.secret in user.secrets

    def expect(self, token: Token, method: str, header: str | None, target: str, roles: list[str]) -> Answer:
        """The answer to `method` called with `token`, `x-zitadel-orgid: header`, on user `target`
        (or granting `roles` to it)."""
        if not self.valid(token):
            return ("UNAUTHENTICATED", "TOKEN_INVALID")
        caller = self.users[token.user_id]
        if method in ZITADEL_V2:  # the user's organisation, found before any permission is checked
            addressed = self.users.get(target)
            if addressed is None or addressed.removed or not caller.holds("user.read", addressed.org):
                return ("NOT_FOUND", "USER_NOT_FOUND")
            header = addressed.org
        method = native(method)
        org = header or caller.org
        need = NEEDS[method]
        allowed = EVERYTHING in caller.power() if need == IAM_OWNER else caller.holds(need, org)
        if not allowed:
            return ("PERMISSION_DENIED", "PERMISSION_DENIED")
        if org not in self.orgs:
            return ("PERMISSION_DENIED", "ORGANIZATION_NOT_FOUND")
        user = self.users.get(target)
        if user is not None and user.removed:
            user = None
        if method == "RemoveOrgMember":
            if user is None or org not in user.roles:
                return ("NOT_FOUND", "MEMBER_NOT_FOUND")
            if not covers(caller.power(), User("", org, True, {org: user.roles[org]}).power()):
                return ("PERMISSION_DENIED", "PERMISSION_DENIED")
            return OK  # the admin, outside every scene, stays an IAM_OWNER: never the last one
        if method == "AddOrgMember":
            if not roles or not set(roles) <= set(ROLES):
                return ("INVALID_ARGUMENT", "INVALID_ARGUMENT")
            granted = User("", org, True, {org: frozenset(roles)})
            if not covers(caller.power(), granted.power()):
                return ("PERMISSION_DENIED", "PERMISSION_DENIED")
            # A user of another organisation is named only by a caller who may read its users.
            if user is None or not caller.holds("user.read", user.org):
                return ("NOT_FOUND", "USER_NOT_FOUND")
            if org in user.roles:
                return ("ALREADY_EXISTS", "MEMBER_ALREADY_EXISTS")
            return OK
        if method in (
            "AddOrganization",
            "AddMachineUser",
            "AddHumanUser",
            "GetSecretPolicy",
            "SetSecretPolicy",
        ):
            return OK
        if user is None or user.org != org:
            return ("NOT_FOUND", "USER_NOT_FOUND")
        if method == "GetUserByID":
            return OK
        if method in USER_METHODS:
            if not covers(caller.power(), user.power()):
                return ("PERMISSION_DENIED", "PERMISSION_DENIED")
            if method == "DeactivateUser" and not user.active:
                return ("FAILED_PRECONDITION", "USER_NOT_ACTIVE")
            if method == "ReactivateUser" and user.active:
                return ("FAILED_PRECONDITION", "USER_NOT_INACTIVE")
            return OK
        if not user.machine:
            return ("FAILED_PRECONDITION", "USER_NOT_MACHINE")
        if method == "ListSecrets":
            return OK
        # The escalation rule: a credential of a user is the user's power.
        if not covers(caller.power(), user.power()):
            return ("PERMISSION_DENIED", "PERMISSION_DENIED")
        if method == "RemoveSecret" and not user.has_secret:
            return ("FAILED_PRECONDITION", "SECRET_NOT_FOUND")
        if method == "DeleteSecret":
            return ("NOT_FOUND", "SECRET_NOT_FOUND")
        if method == "CreateSecret" and len(user.secrets) >= MAX_SECRETS:
            return ("FAILED_PRECONDITION", "SECRET_LIMIT_REACHED")
        return OK
