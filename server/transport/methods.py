"""What the .proto files declare about each method beyond its types, as the
`machinesecrets.v1.auth_option` method option: the permission it needs, and where its
organisation comes from. The pipeline, the API reference's table (docs/api.md) and the OpenAPI
document read it from the descriptors here, so it is written once, in the .proto."""

from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions
from machinesecrets.v1 import options_pb2

from server.domain.permissions import DECLARABLE


class UndeclaredMethod(Exception):
    """A method whose .proto does not say what it needs: it is not served."""


def permission_of(options: MethodOptions) -> str:
    """The permission the options declare, or "" for none."""
    if not options.HasExtension(options_pb2.auth_option):
        return ""
    return options.Extensions[options_pb2.auth_option].permission


def required_permission(method: MethodDescriptor) -> str:
    permission = permission_of(method.GetOptions())
    if permission not in DECLARABLE:
        raise UndeclaredMethod(
            f"{method.full_name} must declare a known permission in"
            f" `option (machinesecrets.v1.auth_option).permission`, not {permission!r}"
        )
    return permission


def auth_option(method: MethodDescriptor) -> options_pb2.AuthOption:
    """The method's option, its permission checked (required_permission), and its request fields
    checked to exist: a typo in the .proto stops the start, not a call."""
    required_permission(method)
    option = method.GetOptions().Extensions[options_pb2.auth_option]
    for path in (option.organization_field, option.user_field):
        if path and not _has_field(method.input_type, path.split(".")):
            raise UndeclaredMethod(f"{method.full_name}: its request has no field {path!r}")
    return option


def _has_field(message: Descriptor, path: list[str]) -> bool:
    field = message.fields_by_name.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return field.type == FieldDescriptor.TYPE_STRING
    return field.message_type is not None and _has_field(field.message_type, path[1:])
