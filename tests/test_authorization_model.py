"""The model of who may do what (tests/authz_model.py, written by hand from the intent) against
what the server enforces: the permission each served method declares in its .proto
(`option (machinesecrets.v1.auth_option)`, read from the generated descriptors, as the server
reads it), and the roles that give each permission (server/domain/permissions.py).

The model names no permission: for each method it says which roles should be able to call it. So
a method that declares the wrong permission, or a role given a permission it should not hold,
makes the two disagree here, before any call is made. The property test then holds the server's
answers to the same model (tests/test_authorization_properties.py).
"""

from google.protobuf.descriptor import MethodDescriptor

from server.app import SERVICES as SERVED
from server.domain.permissions import ANY_CALLER, ROLE_PERMISSIONS
from server.transport.methods import auth_option
from tests.api import SERVICES as CLIENT_NAMES
from tests.authz_model import (
    ANYONE,
    BY_REQUEST_ORG,
    BY_USER,
    CREDENTIAL_METHODS,
    IAM_OWNER,
    MAY,
    ORG_OWNER,
    ORG_USER_MANAGER,
    ROLES,
    Model,
    Token,
    User,
    allowed,
    native,
)

NATIVE = (
    "machinesecrets.v1.UserService",
    "machinesecrets.v1.OrgService",
    "machinesecrets.v1.AuditService",
    "machinesecrets.v1.ProjectService",
)


def model_name(method: MethodDescriptor) -> str:
    """The name the model and the tests give a served method: the bare name for the native API,
    "Service.Method" for ZITADEL's (as tests/api.py names them)."""
    service = method.containing_service
    if service.full_name in NATIVE:
        return method.name
    [alias] = [alias for alias, known in CLIENT_NAMES.items() if known.full_name == service.full_name]
    return f"{alias}.{method.name}"


def served_methods() -> dict[str, MethodDescriptor]:
    return {model_name(m): m for service in SERVED for m in service.methods}


def test_every_served_method_is_in_the_model() -> None:
    served = served_methods()
    assert sorted(set(served) - set(MAY)) == [], "served, but the model does not say who may call them"
    assert sorted(set(MAY) - set(served)) == [], "in the model, but not served"


def test_each_zitadel_name_acts_as_a_native_method_that_is_served() -> None:
    served = served_methods()
    for name in served:
        assert native(name) in served, name
        # ZITADEL's name may not be more (or less) open than the native call it stands for.
        assert MAY[name] == MAY[native(name)], name


def server_roles(permission: str) -> frozenset[str]:
    """The roles whose holder the server lets call a method that declares `permission`."""
    return frozenset(role for role, given in ROLE_PERMISSIONS.items() if permission in given)


def test_the_declared_permissions_give_exactly_the_roles_the_model_expects() -> None:
    wrong = {}
    for name, method in sorted(served_methods().items()):
        permission = auth_option(method).permission
        if MAY[name] is ANYONE or permission == ANY_CALLER:
            if not (MAY[name] is ANYONE and permission == ANY_CALLER):
                says = "anyone" if MAY[name] is ANYONE else "not anyone"
                wrong[name] = f"declares {permission!r}; the model says {says}"
            continue
        expected = frozenset(role for role in ROLES if allowed(frozenset({role}), name))
        if server_roles(permission) != expected:
            held = sorted(server_roles(permission))
            wrong[name] = f"declares {permission!r}, held by {held}; expected {sorted(expected)}"
    assert not wrong, wrong


def test_where_the_organisation_comes_from_is_as_the_model_says() -> None:
    for name, method in served_methods().items():
        option = auth_option(method)
        assert bool(option.user_field) == (name in BY_USER), name
        assert bool(option.organization_field) == (name in BY_REQUEST_ORG), name


def test_a_role_given_a_permission_it_should_not_hold_disagrees() -> None:
    """The comparison itself, on a known-wrong declaration: a user manager that may set the
    organisation's secret policy (the break issue 29 found the old property test let through)."""
    permission = auth_option(served_methods()["SetSecretPolicy"]).permission
    widened = {**ROLE_PERMISSIONS, ORG_USER_MANAGER: ROLE_PERMISSIONS[ORG_USER_MANAGER] | {permission}}
    holders = frozenset(role for role, given in widened.items() if permission in given)
    assert holders != frozenset(r for r in ROLES if allowed(frozenset({r}), "SetSecretPolicy"))


def test_the_model_refuses_the_reported_escalation() -> None:
    """The report's path against the model: a user manager is refused the admin's credentials."""
    admin = User("1", "o", True, {"o": frozenset({IAM_OWNER, ORG_OWNER})}, pats={"p1"})
    mgr = User("2", "o", True, {"o": frozenset({ORG_USER_MANAGER})}, pats={"p2"})
    model = Model(["o"], {"1": admin, "2": mgr})
    for method in CREDENTIAL_METHODS:
        assert model.expect(Token("t", "2", pat="p2"), method, None, "1", []).code == "PERMISSION_DENIED"
    assert model.expect(Token("t", "2", pat="p2"), "AddSecret", None, "2", []).answer == ("OK", "")
