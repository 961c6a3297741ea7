"""gRPC status codes by name, for tests: a wire's number is compared as the code it stands for."""

import grpc


def grpc_code(number: int | str) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == int(number))


def code_name(number: int | str) -> str:
    """The name of a gRPC status code number, as grpc-status carries it: "3" is INVALID_ARGUMENT."""
    return grpc_code(number).name
