"""What a caller receives for an error: its gRPC code, its google.rpc.Status, and the HTTP status
a JSON client sees for that code."""

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from server.domain import errors
from server.store.contract import StoreUnavailable

ERROR_DOMAIN = "machinesecrets"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# What a JSON client sees for each gRPC code: the mapping Envoy's transcoder applies (the same
# as grpc-gateway's and google-api-core's).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
INTERNAL_MESSAGE = "internal error"


def domain_error(error: Exception) -> errors.DomainError | None:
    """What a failure means to the caller, for every transport: a domain error as it is, the
    store's unavailability as UNAVAILABLE (the one place it is mapped, so that no command can
    forget it), and None for anything else, which is a bug and answered INTERNAL."""
    if isinstance(error, errors.DomainError):
        return error
    if isinstance(error, StoreUnavailable):
        return errors.store_unavailable()
    return None


def code_of(error: errors.DomainError) -> grpc.StatusCode:
    return grpc.StatusCode[error.code]


def rich_status(code: grpc.StatusCode, error: errors.DomainError) -> status_pb2.Status:
    """The google.rpc.Status for an error: an ErrorInfo always, a BadRequest for bad fields."""
    details = [
        _pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata))
    ]
    if isinstance(error, errors.InvalidArgument):
        violations = [
            error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
            for v in error.violations
        ]
        details.append(_pack(error_details_pb2.BadRequest(field_violations=violations)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def error_status(error: errors.DomainError) -> status_pb2.Status:
    """The google.rpc.Status every transport sends for this error."""
    return rich_status(code_of(error), error)


def internal_status() -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN)
    return status_pb2.Status(code=code_pb2.INTERNAL, message=INTERNAL_MESSAGE, details=[_pack(info)])


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
