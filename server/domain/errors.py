"""The domain's error kinds. Transports map them to wire codes in one table each.

    DomainError                      reason: a stable upper-case id, e.g. USER_NOT_FOUND
    ├── InvalidArgument              carries field violations
    ├── Unauthenticated
    ├── PermissionDenied
    ├── NotFound
    ├── AlreadyExists
    ├── FailedPrecondition
    ├── Aborted                      a concurrent write won and the retries ran out
    └── Unavailable                  the store cannot be reached

Messages are written for the caller: they never contain a secret, a token or exception text.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class DomainError(Exception):
    def __init__(self, reason: str, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = metadata or {}


class InvalidArgument(DomainError):
    def __init__(self, violations: list[FieldViolation]) -> None:
        fields = ", ".join(sorted({v.field for v in violations}))
        super().__init__("INVALID_ARGUMENT", f"invalid argument: {fields}")
        self.violations = violations


class Unauthenticated(DomainError):
    pass


class PermissionDenied(DomainError):
    pass


class NotFound(DomainError):
    pass


class AlreadyExists(DomainError):
    pass


class FailedPrecondition(DomainError):
    pass


class Aborted(DomainError):
    pass


class Unavailable(DomainError):
    pass


class ResourceExhausted(DomainError):
    pass


class DeadlineExceeded(DomainError):
    pass


def user_not_found() -> NotFound:
    # One answer for "no such user" and "a user of another organisation": existence never
    # leaks across organisations.
    return NotFound("USER_NOT_FOUND", "user not found")


def user_not_machine() -> FailedPrecondition:
    return FailedPrecondition("USER_NOT_MACHINE", "the user is not a machine user")
