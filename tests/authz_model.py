"""A reference model of who may do what, written by hand from what an identity service's operator
expects, not from the server's tables.

It imports nothing from `server/`, and it names no permission: `MAY` says, method by method, which
roles should be able to call it in the organisation the call acts in. A role's power is then the
set of calls it allows there, so the escalation rule ("no call hands out more power than its
caller holds") is read off the same table. `tests/test_authorization_model.py` compares this
table with what the `.proto` files declare and the roles the server gives: a wrong declaration, or
a role given a permission it should not have, makes the two disagree.

Each call gives one expected answer, a gRPC code name and an ErrorInfo reason, and the change it
makes to the model's state is applied by the property test from the server's answer.
"""

from dataclasses import dataclass, field

IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER = "IAM_OWNER", "ORG_OWNER", "ORG_USER_MANAGER"
PROJECT_OWNER = "PROJECT_OWNER"
ROLES = (IAM_OWNER, ORG_OWNER, ORG_USER_MANAGER, PROJECT_OWNER)

# Who should be able to do what, in an organisation. IAM_OWNER runs the instance: it may do
# everything, in every organisation, so it is in no row.
ANYONE = frozenset({"anyone"})  # any caller with a working credential: the answer is its own reach
INSTANCE = frozenset[str]()  # only an IAM_OWNER: organisations are the instance's to create
# Who belongs to the organisation and what it may do is its owner's business. Its rules for
# secrets too: a user manager issues secrets within them, and must not be able to loosen them.
OWNERS = frozenset({ORG_OWNER})
# Users and their credentials are the daily work of a user manager, and of the owner above it.
USER_ADMINS = frozenset({ORG_OWNER, ORG_USER_MANAGER})
# Projects, their roles and API applications (whose secrets read the project's tokens), and the
# grants of their roles: the owner's, and a project owner's, who need not manage users at all.
PROJECT_ADMINS = frozenset({ORG_OWNER, PROJECT_OWNER})

MAY: dict[str, frozenset[str]] = {
    # machinesecrets.v1.OrgService
    "AddOrganization": INSTANCE,
    "ListOrganizations": ANYONE,
    "AddOrgMember": OWNERS,
    "RemoveOrgMember": OWNERS,
    "GetSecretPolicy": USER_ADMINS,  # a user manager needs the rules it issues secrets under
    # Who holds which roles: a user manager needs it, as a user's roles decide whether it may act
    # on the user (the escalation rule), and a refusal would tell it anyway.
    "ListOrgMembers": USER_ADMINS,
    "SetSecretPolicy": OWNERS,
    # Whose platform tokens may stand for the organisation's machine users is its owner's choice.
    "AddTrustedIssuer": OWNERS,
    "ListTrustedIssuers": OWNERS,
    "RemoveTrustedIssuer": OWNERS,
    # machinesecrets.v1.UserService
    "AddMachineUser": USER_ADMINS,
    # The form of a machine user's tokens: as a change to its credentials (the escalation rule).
    "UpdateMachineUser": USER_ADMINS,
    "AddHumanUser": USER_ADMINS,
    "GetUserByID": USER_ADMINS,
    "ListUsers": USER_ADMINS,
    "AddSecret": USER_ADMINS,
    "RemoveSecret": USER_ADMINS,
    "CreateSecret": USER_ADMINS,
    "RotateSecret": USER_ADMINS,
    "DeleteSecret": USER_ADMINS,
    "ListSecrets": USER_ADMINS,
    "AddPersonalAccessToken": USER_ADMINS,
    "ListPersonalAccessTokens": USER_ADMINS,
    "RemovePersonalAccessToken": USER_ADMINS,
    "AddKey": USER_ADMINS,
    "ListKeys": USER_ADMINS,
    "RemoveKey": USER_ADMINS,
    "AddFederatedCredential": USER_ADMINS,
    "ListFederatedCredentials": USER_ADMINS,
    "RemoveFederatedCredential": USER_ADMINS,
    "DeactivateUser": USER_ADMINS,
    "ReactivateUser": USER_ADMINS,
    "RemoveUser": USER_ADMINS,
    "GetMe": ANYONE,  # the caller itself
    # A user's metadata: the daily work of a user manager, on users within its reach.
    "SetUserMetadata": USER_ADMINS,
    "ListUserMetadata": USER_ADMINS,
    "RemoveUserMetadata": USER_ADMINS,
    # machinesecrets.v1.AuditService: who did what in the organisation is its owner's to read
    # (an IAM_OWNER reads the instance's); a user's own history is part of managing it.
    "ListEvents": OWNERS,
    "ListUserEvents": USER_ADMINS,
    # ZITADEL's management v1: the organisation of x-zitadel-orgid, as the native calls.
    "ManagementService.AddMachineUser": USER_ADMINS,
    "ManagementService.UpdateMachine": USER_ADMINS,
    "ManagementService.GenerateMachineSecret": USER_ADMINS,
    "ManagementService.RemoveMachineSecret": USER_ADMINS,
    "ManagementService.GetUserByID": USER_ADMINS,
    "ManagementService.AddOrgMember": OWNERS,
    "ManagementService.DeactivateUser": USER_ADMINS,
    "ManagementService.ReactivateUser": USER_ADMINS,
    "ManagementService.RemoveUser": USER_ADMINS,
    "ManagementService.AddPersonalAccessToken": USER_ADMINS,
    "ManagementService.ListOrgMembers": USER_ADMINS,
    # ZITADEL's auth v1: the caller itself.
    "AuthService.GetMyUser": ANYONE,
    "AuthService.ListMyZitadelPermissions": ANYONE,
    "ManagementService.AddMachineKey": USER_ADMINS,
    "ManagementService.ListMachineKeys": USER_ADMINS,
    "ManagementService.GetMachineKeyByIDs": USER_ADMINS,
    "ManagementService.RemoveMachineKey": USER_ADMINS,
    "ManagementService.SetUserMetadata": USER_ADMINS,
    "ManagementService.BulkSetUserMetadata": USER_ADMINS,
    "ManagementService.ListUserMetadata": USER_ADMINS,
    "ManagementService.GetUserMetadata": USER_ADMINS,
    "ManagementService.RemoveUserMetadata": USER_ADMINS,
    "ManagementService.BulkRemoveUserMetadata": USER_ADMINS,
    # machinesecrets.v1.ProjectService
    "AddProject": PROJECT_ADMINS,
    "GetProject": PROJECT_ADMINS,
    "ListProjects": PROJECT_ADMINS,
    "RemoveProject": PROJECT_ADMINS,
    "AddProjectRole": PROJECT_ADMINS,
    "ListProjectRoles": PROJECT_ADMINS,
    "RemoveProjectRole": PROJECT_ADMINS,
    "AddApiApp": PROJECT_ADMINS,
    "ListApps": PROJECT_ADMINS,
    "RegenerateApiAppSecret": PROJECT_ADMINS,
    "RemoveApp": PROJECT_ADMINS,
    # An application's keys are credentials of the project, as its secret is.
    "UpdateApiAppAuthMethod": PROJECT_ADMINS,
    "AddAppKey": PROJECT_ADMINS,
    "ListAppKeys": PROJECT_ADMINS,
    "RemoveAppKey": PROJECT_ADMINS,
    "AddUserGrant": PROJECT_ADMINS,
    "ListUserGrants": PROJECT_ADMINS,
    "RemoveUserGrant": PROJECT_ADMINS,
    "ManagementService.AddProject": PROJECT_ADMINS,
    "ManagementService.GetProjectByID": PROJECT_ADMINS,
    "ManagementService.ListProjects": PROJECT_ADMINS,
    "ManagementService.RemoveProject": PROJECT_ADMINS,
    "ManagementService.AddProjectRole": PROJECT_ADMINS,
    "ManagementService.ListProjectRoles": PROJECT_ADMINS,
    "ManagementService.RemoveProjectRole": PROJECT_ADMINS,
    "ManagementService.AddAPIApp": PROJECT_ADMINS,
    "ManagementService.ListApps": PROJECT_ADMINS,
    "ManagementService.RegenerateAPIClientSecret": PROJECT_ADMINS,
    "ManagementService.RemoveApp": PROJECT_ADMINS,
    "ManagementService.UpdateAPIAppConfig": PROJECT_ADMINS,
    "ManagementService.AddAppKey": PROJECT_ADMINS,
    "ManagementService.ListAppKeys": PROJECT_ADMINS,
    "ManagementService.GetAppKey": PROJECT_ADMINS,
    "ManagementService.RemoveAppKey": PROJECT_ADMINS,
    "ManagementService.AddUserGrant": PROJECT_ADMINS,
    "ManagementService.ListUserGrants": PROJECT_ADMINS,
    "ManagementService.RemoveUserGrant": PROJECT_ADMINS,
    # ZITADEL's v2: the organisation of the user (or the one the request names).
    "UserServiceV2.CreateUser": USER_ADMINS,
    "UserServiceV2.GetUserByID": USER_ADMINS,
    "UserServiceV2.AddSecret": USER_ADMINS,
    "UserServiceV2.RemoveSecret": USER_ADMINS,
    "UserServiceV2.DeactivateUser": USER_ADMINS,
    "UserServiceV2.ReactivateUser": USER_ADMINS,
    "UserServiceV2.DeleteUser": USER_ADMINS,
    "UserServiceV2.AddPersonalAccessToken": USER_ADMINS,
    "UserServiceV2.AddKey": USER_ADMINS,
    # The one v2 call that names its user in a filter: it acts in x-zitadel-orgid's organisation.
    "UserServiceV2.ListKeys": USER_ADMINS,
    "UserServiceV2.RemoveKey": USER_ADMINS,
    "UserServiceV2.SetUserMetadata": USER_ADMINS,
    "UserServiceV2.ListUserMetadata": USER_ADMINS,
    "UserServiceV2.DeleteUserMetadata": USER_ADMINS,
    "OrganizationServiceV2.AddOrganization": INSTANCE,
    "InternalPermissionService.CreateAdministrator": OWNERS,
    # The instance's signing keys sign every organisation's tokens: the instance's alone.
    "WebKeyService.CreateWebKey": INSTANCE,
    "WebKeyService.ActivateWebKey": INSTANCE,
    "WebKeyService.DeleteWebKey": INSTANCE,
    "WebKeyService.ListWebKeys": INSTANCE,
}

# The native call each of ZITADEL's names acts as: the same rules, the same answers.
SAME_AS = {
    "ManagementService.AddMachineUser": "AddMachineUser",
    "ManagementService.UpdateMachine": "UpdateMachineUser",
    "ManagementService.GenerateMachineSecret": "AddSecret",
    "ManagementService.RemoveMachineSecret": "RemoveSecret",
    "ManagementService.GetUserByID": "GetUserByID",
    "ManagementService.AddOrgMember": "AddOrgMember",
    "ManagementService.DeactivateUser": "DeactivateUser",
    "ManagementService.ReactivateUser": "ReactivateUser",
    "ManagementService.RemoveUser": "RemoveUser",
    "ManagementService.AddPersonalAccessToken": "AddPersonalAccessToken",
    "ManagementService.ListOrgMembers": "ListOrgMembers",
    "AuthService.GetMyUser": "GetMe",
    "AuthService.ListMyZitadelPermissions": "GetMe",
    "ManagementService.AddMachineKey": "AddKey",
    "ManagementService.ListMachineKeys": "ListKeys",
    "ManagementService.RemoveMachineKey": "RemoveKey",
    "ManagementService.SetUserMetadata": "SetUserMetadata",
    "ManagementService.BulkSetUserMetadata": "SetUserMetadata",
    "ManagementService.ListUserMetadata": "ListUserMetadata",
    "ManagementService.RemoveUserMetadata": "RemoveUserMetadata",
    "ManagementService.BulkRemoveUserMetadata": "RemoveUserMetadata",
    **{
        f"ManagementService.{name}": name
        for name in (
            "AddProject",
            "ListProjects",
            "RemoveProject",
            "AddProjectRole",
            "ListProjectRoles",
            "RemoveProjectRole",
            "ListApps",
            "RemoveApp",
            "AddAppKey",
            "ListAppKeys",
            "RemoveAppKey",
            "AddUserGrant",
            "ListUserGrants",
            "RemoveUserGrant",
        )
    },
    "ManagementService.GetProjectByID": "GetProject",
    "ManagementService.AddAPIApp": "AddApiApp",
    "ManagementService.RegenerateAPIClientSecret": "RegenerateApiAppSecret",
    "ManagementService.UpdateAPIAppConfig": "UpdateApiAppAuthMethod",
    "UserServiceV2.CreateUser": "AddMachineUser",
    "UserServiceV2.GetUserByID": "GetUserByID",
    "UserServiceV2.AddSecret": "AddSecret",
    "UserServiceV2.RemoveSecret": "RemoveSecret",
    "UserServiceV2.DeactivateUser": "DeactivateUser",
    "UserServiceV2.ReactivateUser": "ReactivateUser",
    "UserServiceV2.DeleteUser": "RemoveUser",
    "UserServiceV2.AddPersonalAccessToken": "AddPersonalAccessToken",
    "UserServiceV2.AddKey": "AddKey",
    "UserServiceV2.ListKeys": "ListKeys",
    "UserServiceV2.RemoveKey": "RemoveKey",
    "UserServiceV2.SetUserMetadata": "SetUserMetadata",
    "UserServiceV2.ListUserMetadata": "ListUserMetadata",
    "UserServiceV2.DeleteUserMetadata": "RemoveUserMetadata",
    "OrganizationServiceV2.AddOrganization": "AddOrganization",
    "InternalPermissionService.CreateAdministrator": "AddOrgMember",
}
# ZITADEL's v2 finds the organisation from the user it names: a user the caller may not read is
# NOT_FOUND, as one that does not exist, and no header is read.
BY_USER = tuple(
    m
    for m in SAME_AS
    if m.startswith("UserServiceV2.") and m not in ("UserServiceV2.CreateUser", "UserServiceV2.ListKeys")
)
# These name the organisation in the request instead of the header.
BY_REQUEST_ORG = ("UserServiceV2.CreateUser", "InternalPermissionService.CreateAdministrator")


def native(method: str) -> str:
    """The native method a ZITADEL name acts as (a native name stands for itself)."""
    return SAME_AS.get(method, method)


# Calls that make, replace or remove a credential of their target: each needs the target's power.
CREDENTIAL_METHODS = (
    "AddSecret",
    "RemoveSecret",
    "AddPersonalAccessToken",
    "RemovePersonalAccessToken",
    "AddKey",
    "RemoveKey",
    "AddFederatedCredential",
    "RemoveFederatedCredential",
    "CreateSecret",
    "RotateSecret",
    "DeleteSecret",
)
NEW_SECRET_METHODS = ("AddSecret", "CreateSecret", "RotateSecret")
# Switching a user off, or removing it, locks out whoever it is: it needs the user's power too.
USER_METHODS = ("DeactivateUser", "ReactivateUser", "RemoveUser")
# Reads of one user of the context organisation, by id.
READ_METHODS = (
    "GetUserByID",
    "ListSecrets",
    "ListPersonalAccessTokens",
    "ListKeys",
    "ListFederatedCredentials",
    "ManagementService.GetMachineKeyByIDs",  # one key, by its id: no native name of its own
    "ListUserEvents",
)
# A user's metadata (any user's, human or machine): its writes need the user's power, as an API
# may trust what it says; the scenes set and remove one key, METADATA_KEY.
METADATA_METHODS = (
    "SetUserMetadata",
    "ListUserMetadata",
    "RemoveUserMetadata",
    "ManagementService.GetUserMetadata",  # one key: no native name of its own
)
METADATA_KEY = "tenant"
GRANT_METHODS = ("AddOrgMember",)
# Calls on a project of the context organisation (one of another is as absent as a missing one).
PROJECT_METHODS = tuple(m for m in MAY if MAY[m] is PROJECT_ADMINS)
# The project calls that name an application of the project (by native name).
APP_CALLS = (
    "RemoveApp",
    "RegenerateApiAppSecret",
    "UpdateApiAppAuthMethod",
    "AddAppKey",
    "ListAppKeys",
    "RemoveAppKey",
    "ManagementService.GetAppKey",
)
# The role key the property test grants (it adds and removes others too).
ROLE_KEY = "reader"
# docs/rotation.md: at most this many live secrets per machine user, by default; expired
# ones stay listed, the latest this many.
MAX_SECRETS = 5
MAX_EXPIRED = 20
MAX_KEYS = 10  # live machine keys per machine user

Answer = tuple[str, str]  # (gRPC code name, ErrorInfo reason)
OK: Answer = ("OK", "")


@dataclass(frozen=True)
class Decision:
    """The expected answer, and the rule of the model that gave it (counted by the property test,
    so a run that never reached a rule shows it)."""

    code: str
    reason: str
    rule: str

    @property
    def answer(self) -> Answer:
        return (self.code, self.reason)


def allowed(roles: frozenset[str], method: str) -> bool:
    """Whether holding `roles` in an organisation lets a caller call `method` there."""
    return IAM_OWNER in roles or MAY[method] is ANYONE or bool(roles & MAY[method])


# What a role lets its holder do in an organisation: its power there.
def calls_of(roles: frozenset[str]) -> frozenset[str]:
    return frozenset(m for m in MAY if MAY[m] is not ANYONE and allowed(roles, m))


@dataclass
class Secret:
    id: str | None  # None where the call that made it does not say (AddSecret)
    live: bool = True


@dataclass
class User:
    id: str
    org: str
    machine: bool
    roles: dict[str, frozenset[str]] = field(default_factory=dict)  # by organisation
    secrets: dict[int, Secret] = field(default_factory=dict)  # by the scene's numbering
    pats: set[str] = field(default_factory=set)  # token ids
    keys: set[str] = field(default_factory=set)  # machine key ids
    metadata: set[str] = field(default_factory=set)  # metadata keys
    active: bool = True
    removed: bool = False

    @property
    def iam_owner(self) -> bool:
        return any(IAM_OWNER in roles for roles in self.roles.values())

    def may(self, method: str, org: str) -> bool:
        return self.iam_owner or allowed(self.roles.get(org, frozenset()), method)

    def live_secrets(self) -> int:
        return sum(s.live for s in self.secrets.values())


def covers(caller: User, roles_by_org: dict[str, frozenset[str]]) -> bool:
    """Whether `caller` may already do everything that `roles_by_org` let their holder do: only
    then may it hand out (or take away) that power. An IAM_OWNER's power is every call in every
    organisation, so only an IAM_OWNER covers one."""
    if caller.iam_owner:
        return True
    for org, roles in roles_by_org.items():
        if IAM_OWNER in roles or not all(caller.may(m, org) for m in calls_of(roles)):
            return False
    return True


@dataclass(frozen=True)
class Token:
    value: str
    user_id: str
    secret: int | None = None  # an access token: the secret it was exchanged for
    pat: str | None = None  # a personal access token: its id

    def __repr__(self) -> str:  # never the value: failures are printed
        kind = f"PAT {self.pat}" if self.pat is not None else f"access token of secret {self.secret}"
        return f"Token({kind} of user {self.user_id})"


@dataclass
class Project:
    org: str
    roles: set[str] = field(default_factory=set)
    apps: set[str] = field(default_factory=set)
    keyed: set[str] = field(default_factory=set)  # the applications that authenticate with keys
    keys: dict[str, str] = field(default_factory=dict)  # an application key's id: its application


@dataclass(frozen=True)
class Grant:
    user: str
    project: str


@dataclass(frozen=True)
class ProjectRefs:
    """What a project call names besides its user: a project, an application, a user grant."""

    project: str
    app: str
    grant: str
    role: str = ROLE_KEY  # the role key a role call names
    key: str = ""  # the application key a key call names


@dataclass
class Model:
    orgs: list[str] = field(default_factory=list)
    users: dict[str, User] = field(default_factory=dict)
    projects: dict[str, Project] = field(default_factory=dict)
    grants: dict[str, Grant] = field(default_factory=dict)

    def live_grants(self) -> dict[str, Grant]:
        """The grants whose user and project are still there."""
        return {
            g: grant
            for g, grant in self.grants.items()
            if grant.project in self.projects and self.present(grant.user) is not None
        }

    def valid(self, token: Token) -> bool:
        user = self.users[token.user_id]
        if user.removed or not user.active:
            return False  # nothing of a deactivated or removed user is accepted
        if token.pat is not None:
            return token.pat in user.pats
        secret = user.secrets.get(token.secret) if token.secret is not None else None
        return secret is not None and secret.live  # an access token dies with its secret

    def present(self, user_id: str) -> User | None:
        user = self.users.get(user_id)
        return None if user is None or user.removed else user

    def members(self, org: str) -> list[User]:
        return [u for u in self.users.values() if not u.removed and org in u.roles]

    def listed_users(self, org: str) -> set[str]:
        """What ListUsers answers in `org`: its users, removed ones gone."""
        return {u.id for u in self.users.values() if u.org == org and not u.removed}

    def listed_members(self, org: str) -> dict[str, frozenset[str]]:
        """What ListOrgMembers answers in `org`: each member's roles there, removed users gone."""
        return {u.id: u.roles[org] for u in self.members(org)}

    def permissions_seen(self, caller: User) -> dict[str, frozenset[str]]:
        """What GetMe says the caller may do: the calls its roles allow, by organisation (an
        IAM_OWNER's every call, in each)."""
        return {
            org: calls_of(roles | ({IAM_OWNER} if caller.iam_owner else set()))
            for org, roles in caller.roles.items()
        }

    def listed_orgs(self, caller: User) -> set[str] | None:
        """What ListOrganizations answers (None: every organisation of the instance)."""
        return None if caller.iam_owner else {caller.org, *caller.roles}

    def event_owners(self, caller: User, org: str) -> set[str] | None:
        """Whose events ListEvents answers in `org`, whatever its filters name (another
        organisation's user, as the aggregate or the actor): that organisation's only; an
        IAM_OWNER's, every event of the instance (None)."""
        return None if caller.iam_owner else {org}

    def expect(
        self,
        token: Token,
        method: str,
        org: str | None,
        target: str,
        roles: list[str],
        secret_id: str = "",
        pat_id: str = "",
        refs: ProjectRefs | None = None,
    ) -> Decision:
        """The answer to `method` called with `token`, in organisation `org` (x-zitadel-orgid, or
        the organisation the request names; None: the caller's own), on user `target` (or granting
        it `roles`, or naming its secret `secret_id`, or its token or machine key `pat_id`)."""
        if not self.valid(token):
            return Decision("UNAUTHENTICATED", "TOKEN_INVALID", "token")
        caller = self.users[token.user_id]
        if MAY[method] is ANYONE:
            return Decision("OK", "", "anyone")
        if method in BY_USER:
            addressed = self.present(target)
            if addressed is None or not caller.may("GetUserByID", addressed.org):
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "v2 user unseen")
            org = addressed.org
        org = org or caller.org
        if not caller.may(method, org):
            return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "not allowed here")
        if org not in self.orgs:
            return Decision("PERMISSION_DENIED", "ORGANIZATION_NOT_FOUND", "no such organisation")
        if method.startswith("WebKeyService."):
            # The instance's keys, for an IAM_OWNER: the scenes name no key's id (ZITADEL's
            # DeleteWebKey answers a key that is not there as deleted).
            if method == "WebKeyService.ActivateWebKey":
                return Decision("NOT_FOUND", "WEB_KEY_NOT_FOUND", "no such web key")
            return Decision("OK", "", "the instance's keys")
        if method == "UserServiceV2.ListKeys":
            # ZITADEL searches the instance: the user may be of any organisation the caller reads.
            listed = self.present(target)
            if listed is None or not caller.may("GetUserByID", listed.org):
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "v2 user unseen")
            if not listed.machine:
                return Decision("FAILED_PRECONDITION", "USER_NOT_MACHINE", "not a machine")
            return Decision("OK", "", "credentials listed")
        if method in PROJECT_METHODS:
            assert refs is not None, "a project call names its project"
            return self.expect_on_project(native(method), org, target, refs)
        method = native(method)
        if method == "ListUserEvents":
            # A user's history outlives the user: a removed one of the organisation has one too.
            known = self.users.get(target)
            if known is None or known.org != org:
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "user not here")
            return Decision("OK", "", "user read")
        user = self.present(target)
        if method == "RemoveOrgMember":
            if user is None or org not in user.roles:
                return Decision("NOT_FOUND", "MEMBER_NOT_FOUND", "not a member")
            if not covers(caller, {org: user.roles[org]}):
                return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "escalation refused")
            return Decision("OK", "", "membership ended")
        if method == "AddOrgMember":
            if not roles or not set(roles) <= set(ROLES):
                return Decision("INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad roles")
            if not covers(caller, {org: frozenset(roles)}):
                return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "escalation refused")
            # A user of another organisation is named only by a caller who may read its users.
            if user is None or not caller.may("GetUserByID", user.org):
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "member unseen")
            if org in user.roles:
                return Decision("ALREADY_EXISTS", "MEMBER_ALREADY_EXISTS", "member already")
            return Decision("OK", "", "role granted")
        if method == "AddOrganization":
            # ZITADEL's v2 names its first members: each must be a user the caller can see.
            if not set(roles) <= set(ROLES):
                return Decision("INVALID_ARGUMENT", "INVALID_ARGUMENT", "bad roles")
            if roles and user is None:
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "member unseen")
            return Decision("OK", "", "organisation added")
        if method in (
            "AddMachineUser",
            "AddHumanUser",
            "GetSecretPolicy",
            "SetSecretPolicy",
            "ListUsers",
            "ListEvents",
            "ListOrgMembers",
            "AddTrustedIssuer",
            "ListTrustedIssuers",
        ):
            return Decision("OK", "", "in the organisation")
        if method == "RemoveTrustedIssuer":  # the scenes name no issuer's id
            return Decision("NOT_FOUND", "TRUSTED_ISSUER_NOT_FOUND", "no such issuer")
        if user is None or user.org != org:
            # A user of another organisation is as absent as one that does not exist.
            return Decision("NOT_FOUND", "USER_NOT_FOUND", "user not here")
        if method == "GetUserByID":
            return Decision("OK", "", "user read")
        if method in USER_METHODS:
            if not covers(caller, user.roles):
                return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "escalation refused")
            if method == "DeactivateUser" and not user.active:
                return Decision("FAILED_PRECONDITION", "USER_NOT_ACTIVE", "inactive already")
            if method == "ReactivateUser" and user.active:
                return Decision("FAILED_PRECONDITION", "USER_NOT_INACTIVE", "active already")
            return Decision("OK", "", "user switched")
        if method in METADATA_METHODS:
            reads = ("ListUserMetadata", "ManagementService.GetUserMetadata")
            if method not in reads and not covers(caller, user.roles):
                return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "escalation refused")
            keyed = method in ("RemoveUserMetadata", "ManagementService.GetUserMetadata")
            if keyed and METADATA_KEY not in user.metadata:
                return Decision("NOT_FOUND", "METADATA_NOT_FOUND", "no such key")
            return Decision("OK", "", "metadata")
        if not user.machine:
            return Decision("FAILED_PRECONDITION", "USER_NOT_MACHINE", "not a machine")
        if method in ("ListSecrets", "ListPersonalAccessTokens", "ListKeys", "ListFederatedCredentials"):
            return Decision("OK", "", "credentials listed")
        if method == "ManagementService.GetMachineKeyByIDs":
            if pat_id not in user.keys:
                return Decision("NOT_FOUND", "KEY_NOT_FOUND", "no such key")
            return Decision("OK", "", "credentials listed")
        # The escalation rule: a credential of a user is the user's power.
        if not covers(caller, user.roles):
            return Decision("PERMISSION_DENIED", "PERMISSION_DENIED", "escalation refused")
        if method == "UpdateMachineUser":  # the form of its tokens, gated as its credentials
            return Decision("OK", "", "machine changed")
        if method == "RemoveSecret" and not user.secrets:
            return Decision("FAILED_PRECONDITION", "SECRET_NOT_FOUND", "no secret")
        if method == "DeleteSecret" and all(s.id != secret_id for s in user.secrets.values()):
            return Decision("NOT_FOUND", "SECRET_NOT_FOUND", "no such secret")
        if method == "RemovePersonalAccessToken" and pat_id not in user.pats:
            return Decision("NOT_FOUND", "TOKEN_NOT_FOUND", "no such token")
        if method == "RemoveKey" and pat_id not in user.keys:
            return Decision("NOT_FOUND", "KEY_NOT_FOUND", "no such key")
        # The scenes' federated credentials name an issuer no organisation trusts, and no id of one.
        if method == "AddFederatedCredential":
            return Decision("INVALID_ARGUMENT", "INVALID_ARGUMENT", "issuer not trusted")
        if method == "RemoveFederatedCredential":
            return Decision("NOT_FOUND", "FEDERATED_CREDENTIAL_NOT_FOUND", "no such credential")
        if method == "AddKey" and len(user.keys) >= MAX_KEYS:
            return Decision("FAILED_PRECONDITION", "KEY_LIMIT_REACHED", "key limit")
        if method == "CreateSecret" and user.live_secrets() >= MAX_SECRETS:
            return Decision("FAILED_PRECONDITION", "SECRET_LIMIT_REACHED", "secret limit")
        return Decision("OK", "", "credential changed")

    def expect_on_project(self, method: str, org: str, target: str, refs: ProjectRefs) -> Decision:
        """A project call the caller may make in org (its permission and org checked)."""
        if method in ("AddProject", "ListProjects", "ListUserGrants"):
            return Decision("OK", "", "in the organisation")
        if method == "RemoveUserGrant":
            grant = self.live_grants().get(refs.grant)
            if grant is None or grant.user != target or self.projects[grant.project].org != org:
                return Decision("NOT_FOUND", "GRANT_NOT_FOUND", "no such grant")
            return Decision("OK", "", "grant ended")
        if method == "AddUserGrant":
            user = self.present(target)
            if user is None or user.org != org:
                return Decision("NOT_FOUND", "USER_NOT_FOUND", "user not here")
        project = self.projects.get(refs.project)
        if project is None or project.org != org:
            return Decision("NOT_FOUND", "PROJECT_NOT_FOUND", "project not here")
        if method == "AddProjectRole" and refs.role in project.roles:
            return Decision("ALREADY_EXISTS", "ROLE_ALREADY_EXISTS", "role there already")
        if method == "RemoveProjectRole" and refs.role not in project.roles:
            return Decision("NOT_FOUND", "ROLE_NOT_FOUND", "no such role")
        if method in APP_CALLS and refs.app not in project.apps:
            return Decision("NOT_FOUND", "APP_NOT_FOUND", "no such application")
        # An application authenticates with a secret or with keys, never both.
        if method == "RegenerateApiAppSecret" and refs.app in project.keyed:
            return Decision("FAILED_PRECONDITION", "APP_AUTH_METHOD_NOT_BASIC", "keys, no secret")
        if method == "AddAppKey":
            if refs.app not in project.keyed:
                return Decision(
                    "FAILED_PRECONDITION", "APP_AUTH_METHOD_NOT_PRIVATE_KEY_JWT", "a secret, no keys"
                )
            if list(project.keys.values()).count(refs.app) >= MAX_KEYS:
                return Decision("FAILED_PRECONDITION", "KEY_LIMIT_REACHED", "key limit")
        if (
            method in ("RemoveAppKey", "ManagementService.GetAppKey")
            and project.keys.get(refs.key) != refs.app
        ):
            return Decision("NOT_FOUND", "KEY_NOT_FOUND", "no such application key")
        if method == "AddUserGrant":
            if ROLE_KEY not in project.roles:
                return Decision("FAILED_PRECONDITION", "ROLE_NOT_FOUND", "no such role")
            if Grant(target, refs.project) in self.live_grants().values():
                return Decision("ALREADY_EXISTS", "GRANT_ALREADY_EXISTS", "granted already")
            return Decision("OK", "", "project role granted")
        return Decision("OK", "", "project changed")
