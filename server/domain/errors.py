"""The domain's error kinds. Each kind names the gRPC status code it is answered with, so a new
kind cannot miss its mapping and no second table has to stay in step (google-api-core's shape).

    DomainError                      reason: a stable upper-case id, e.g. USER_NOT_FOUND
    ├── InvalidArgument              INVALID_ARGUMENT, with field violations
    ├── Unauthenticated              UNAUTHENTICATED
    │   └── InvalidClient            the token endpoint's one answer to every failed client
    ├── PermissionDenied             PERMISSION_DENIED
    ├── NotFound                     NOT_FOUND
    ├── AlreadyExists                ALREADY_EXISTS
    ├── FailedPrecondition           FAILED_PRECONDITION
    ├── Aborted                      ABORTED: a concurrent write won and the retries ran out
    ├── Unavailable                  UNAVAILABLE: the store cannot be reached
    ├── ResourceExhausted            RESOURCE_EXHAUSTED
    │   └── TooManyFailures          too many failed client authentications, with Retry-After
    ├── DeadlineExceeded             DEADLINE_EXCEEDED
    ├── Unimplemented                UNIMPLEMENTED
    ├── Internal                     INTERNAL: a protocol violation the caller made, with a reason
    └── Cancelled                    CANCELLED: the client went away before its request was whole

The code is a name, not a grpc.StatusCode: the domain does not import grpc. Messages are written
for the caller: they never contain a secret, a token or exception text.
"""

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}


class InvalidArgument(DomainError):
    code = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        fields = ", ".join(sorted({v.field for v in violations}))
        super().__init__("INVALID_ARGUMENT", f"invalid argument: {fields}")
        self.violations = violations


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"


class InvalidClient(Unauthenticated):
    def __init__(self) -> None:
        super().__init__("INVALID_CLIENT", "client authentication failed")


class InvalidGrant(Unauthenticated):
    """An assertion (RFC 7523 §3.1) that is refused, whatever the reason: the one answer."""

    def __init__(self) -> None:
        super().__init__("INVALID_GRANT", "the assertion is invalid")


class PermissionDenied(DomainError):
    code = "PERMISSION_DENIED"


class NotFound(DomainError):
    code = "NOT_FOUND"


class AlreadyExists(DomainError):
    code = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    code = "FAILED_PRECONDITION"


class Aborted(DomainError):
    code = "ABORTED"


class Unavailable(DomainError):
    code = "UNAVAILABLE"


class ResourceExhausted(DomainError):
    code = "RESOURCE_EXHAUSTED"


class TooManyFailures(ResourceExhausted):
    def __init__(
        self, retry_after: int, message: str = "too many failed authentications; try again later"
    ) -> None:
        super().__init__("TOO_MANY_FAILURES", message)
        self.retry_after = retry_after


class DeadlineExceeded(DomainError):
    code = "DEADLINE_EXCEEDED"


class Unimplemented(DomainError):
    code = "UNIMPLEMENTED"


class Internal(DomainError):
    code = "INTERNAL"


class Cancelled(DomainError):
    code = "CANCELLED"


def user_not_found() -> NotFound:
    # One answer for "no such user" and "a user of another organisation": existence never
    # leaks across organisations.
    return NotFound("USER_NOT_FOUND", "user not found")


def user_not_machine() -> FailedPrecondition:
    return FailedPrecondition("USER_NOT_MACHINE", "the user is not a machine user")


def store_unavailable() -> Unavailable:
    return Unavailable("STORE_UNAVAILABLE", "the store is unavailable; try again")
