"""ZITADEL's reserved scopes that shape what a token says beyond this service's own API: the
projects it is meant for (its audience), the project roles it asserts, and its user's
organisation. https://zitadel.com/docs/apis/openidoauth/scopes

- `urn:zitadel:iam:org:project:id:{projectId}:aud`: the project joins the token's audience. An
  application of that project finds the token active at the introspection endpoint; one of any
  other project finds it inactive. `urn:zitadel:iam:org:project:id:zitadel:aud` names this
  service's own API, which every token may call (as before projects existed).
- `urn:zitadel:iam:org:project:role:{roleKey}`: the role, if the user is granted it in a project of
  the audience; `urn:zitadel:iam:org:projects:roles`: every role granted in those projects.
- `urn:zitadel:iam:user:resourceowner`: the user's organisation, its id and name.
- `urn:zitadel:iam:user:metadata`: the user's metadata, `{key: base64 of the value}`, as it is
  when the token is introspected.

The scope is kept with the token as it was granted; what it asserts is read when the token is
introspected, so a grant removed since is asserted no more.
"""

import re
from dataclasses import dataclass

PROJECT_AUDIENCE = re.compile(r"urn:zitadel:iam:org:project:id:([1-9][0-9]{0,18}):aud")
ROLE = re.compile(r"urn:zitadel:iam:org:project:role:([A-Za-z0-9_.:-]{1,200})")
ALL_ROLES = "urn:zitadel:iam:org:projects:roles"
RESOURCE_OWNER = "urn:zitadel:iam:user:resourceowner"
METADATA = "urn:zitadel:iam:user:metadata"
# The claims they give, in ZITADEL's shapes.
ROLES_CLAIM = "urn:zitadel:iam:org:project:roles"
RESOURCE_OWNER_ID_CLAIM = "urn:zitadel:iam:user:resourceowner:id"
RESOURCE_OWNER_NAME_CLAIM = "urn:zitadel:iam:user:resourceowner:name"
METADATA_CLAIM = "urn:zitadel:iam:user:metadata"


def project_roles_claim(project_id: str) -> str:
    return f"urn:zitadel:iam:org:project:{project_id}:roles"


def is_project_scope(scope: str) -> bool:
    """Whether scope is one of this module's (a transport accepts them beside its own)."""
    return scope in (ALL_ROLES, RESOURCE_OWNER, METADATA) or bool(
        PROJECT_AUDIENCE.fullmatch(scope) or ROLE.fullmatch(scope)
    )


@dataclass(frozen=True)
class RequestedClaims:
    """What a granted scope (space-separated) asks of a token."""

    audience: tuple[str, ...]  # project ids, in the order asked, each once
    role_keys: frozenset[str]  # the roles asked for by key
    all_roles: bool
    resource_owner: bool
    metadata: bool = False

    @classmethod
    def of(cls, scope: str) -> "RequestedClaims":
        scopes = scope.split()
        audience = [m.group(1) for s in scopes if (m := PROJECT_AUDIENCE.fullmatch(s))]
        keys = frozenset(m.group(1) for s in scopes if (m := ROLE.fullmatch(s)))
        return cls(
            tuple(dict.fromkeys(audience)),
            keys,
            ALL_ROLES in scopes,
            RESOURCE_OWNER in scopes,
            METADATA in scopes,
        )

    @property
    def asks_roles(self) -> bool:
        return self.all_roles or bool(self.role_keys)

    def wants(self, role_key: str) -> bool:
        return self.all_roles or role_key in self.role_keys
