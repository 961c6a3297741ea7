"""What the .proto files declare about each method beyond its types: the permission it needs,
as the `machinesecrets.v1.auth_option` method option. The pipeline, the README's API table and
the OpenAPI document read it from the descriptors here, so it is written once, in the .proto."""

from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.descriptor_pb2 import MethodOptions
from machinesecrets.v1 import options_pb2

from server.domain.permissions import PERMISSIONS


class UndeclaredMethod(Exception):
    """A method whose .proto does not say what it needs: it is not served."""


def permission_of(options: MethodOptions) -> str:
    """The permission the options declare, or "" for none."""
    if not options.HasExtension(options_pb2.auth_option):
        return ""
    return options.Extensions[options_pb2.auth_option].permission


def required_permission(method: MethodDescriptor) -> str:
    permission = permission_of(method.GetOptions())
    if permission not in PERMISSIONS:
        raise UndeclaredMethod(
            f"{method.full_name} must declare a known permission in"
            f" `option (machinesecrets.v1.auth_option).permission`, not {permission!r}"
        )
    return permission
