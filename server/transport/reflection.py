"""gRPC server reflection on the gRPC port, in both versions that clients ask for: v1
(`grpc.reflection.v1.ServerReflection`, which grpcurl, grpc_cli, Postman and `buf curl --reflect`
try first, and grpc-java has made the only one not deprecated) and v1alpha. grpcio-reflection 1.85
serves only v1alpha (grpc/grpc#38576).

The two are one protocol: v1's reflection.proto is v1alpha's, message for message and field for
field, under another package, so the same bytes are a request or an answer of either. v1 is
therefore grpcio-reflection's own servicer, served under v1's name too. v1's file is added to the
descriptor pool, made from v1alpha's with v1's package, so that a client that asks reflection about
the reflection service finds either version.
"""

from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

V1ALPHA_PACKAGE, V1_PACKAGE = "grpc.reflection.v1alpha", "grpc.reflection.v1"
V1ALPHA_SERVICE_NAME = f"{V1ALPHA_PACKAGE}.ServerReflection"
V1_SERVICE_NAME = f"{V1_PACKAGE}.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def enable_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serves reflection of service_names, and of itself in both versions, on server."""
    add_v1_file(descriptor_pool.Default())
    servicer = ReflectionServicer(  # type: ignore[no-untyped-call]  # grpcio-reflection has no types
        (*service_names, V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
    )
    method: grpc.RpcMethodHandler[Any, Any] = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": method})
            for name in (V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME)
        ]
    )


def add_v1_file(pool: descriptor_pool.DescriptorPool) -> None:
    """grpc/reflection/v1/reflection.proto in pool, unless it is there already (one service
    started after another in a process)."""
    try:
        pool.FindFileByName(V1_FILE)
        return
    except KeyError:
        pass
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1)
    v1.name, v1.package = V1_FILE, V1_PACKAGE
    v1.ClearField("options")  # v1alpha's: deprecated, and its own Go and Java packages
    for message in v1.message_type:  # v1alpha's messages hold none of their own
        for field in message.field:
            if field.HasField("type_name"):  # a message's field; a scalar's names no type
                field.type_name = _in_v1(field.type_name)
    for service in v1.service:
        for rpc in service.method:
            rpc.input_type, rpc.output_type = _in_v1(rpc.input_type), _in_v1(rpc.output_type)
    pool.Add(v1)


def _in_v1(type_name: str) -> str:
    """A v1alpha type's name, as v1's (".grpc.reflection.v1alpha.ErrorResponse" is
    ".grpc.reflection.v1.ErrorResponse")."""
    return f".{V1_PACKAGE}." + type_name.removeprefix(f".{V1ALPHA_PACKAGE}.")
