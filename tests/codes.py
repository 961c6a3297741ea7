"""gRPC status codes by name, for tests: a wire's number is compared as the code it stands for."""

import grpc


def grpc_code(number: int | str) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == int(number))


def code_name(number: int | str) -> str:
    """The name of a gRPC status code number, as grpc-status carries it: "3" is INVALID_ARGUMENT."""
    return grpc_code(number).name


# The HTTP status of each code, as google/rpc/code.proto gives it ("HTTP Mapping: ..." under each
# code), written here from that file and not read from the server's own table: the tests that
# expect these statuses must not agree with the server just because they read its table.
HTTP_STATUS_OF = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}
