"""A client of the service that the behaviour tests use, whatever the transport.

Every transport answers the same way: a response message, or an ApiError with the gRPC code, the
message, and the google.rpc.Status details (ErrorInfo reason, BadRequest field violations).
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import grpc
from google.protobuf import message, message_factory
from google.rpc import error_details_pb2, status_pb2
from machinesecrets.v1 import org_service_pb2, user_service_pb2

SERVICES = {
    "UserService": user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    "OrgService": org_service_pb2.DESCRIPTOR.services_by_name["OrgService"],
}
METHODS = {m.name: m for s in SERVICES.values() for m in s.methods}
Metadata = Sequence[tuple[str, str]]


def method_path(name: str) -> str:
    method = METHODS[name]
    return f"/{method.containing_service.full_name}/{name}"


def response_class(name: str) -> type[message.Message]:
    return message_factory.GetMessageClass(METHODS[name].output_type)


@dataclass
class ApiError(Exception):
    code: grpc.StatusCode
    message: str
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    violations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_status(cls, code: grpc.StatusCode, message: str, details: bytes | None) -> "ApiError":
        error = cls(code, message)
        if details:
            status = status_pb2.Status.FromString(details)
            assert status.code == code.value[0], "the details' code must be the call's code"
            assert status.message == message
            for packed in status.details:
                info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
                if packed.Unpack(info):
                    error.reason, error.metadata = info.reason, dict(info.metadata)
                elif packed.Unpack(bad):
                    error.violations = {v.field: v.description for v in bad.field_violations}
        return error


class Api(Protocol):
    name: str

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        """The response, or raises ApiError."""
        ...


class GrpcApi:
    """Native gRPC over a real channel."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self._channel = grpc.aio.insecure_channel(target)

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        call = self._channel.unary_unary(
            method_path(method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class(method).FromString,
        )
        try:
            return await call(request, metadata=tuple(metadata), timeout=30)  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as error:
            trailers = cast(Iterable[tuple[str, Any]], error.trailing_metadata() or ())
            details = next((v for k, v in trailers if k == "grpc-status-details-bin"), None)
            raise ApiError.from_status(error.code(), error.details() or "", details) from None

    async def close(self) -> None:
        await self._channel.close(None)
