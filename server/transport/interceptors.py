"""The cross-cutting work every call passes, as grpc.aio server interceptors.

    AccessLog      outermost: one log line per call (method, code, duration, caller id)
    ErrorMapping   domain errors to google.rpc.Status; anything unexpected to INTERNAL
    MetadataLimit  metadata over MAX_METADATA_BYTES to RESOURCE_EXHAUSTED
    Authentication `authorization: Bearer <token>` to a Principal
    OrgContext     `x-zitadel-orgid` (or the caller's own organisation) to a CallContext, checked
                   for the permission the method needs

Each wraps the behaviour of a unary handler, so it runs with the call's metadata and inside the
call's task. They pass what they learn down through one context variable, the CallScope. The
grpc-web adapter runs these very objects, in the same order, around the same servicers.

The outermost serves each unary method to grpc.aio as a stream-unary one and reads the request
itself (`single_message`): grpc.aio 1.85 never answers a unary call that half-closes without a
whole message (an empty body, a frame cut short), it leaves the stream open until the client goes
away; a request stream simply ends, and the call gets INVALID_ARGUMENT at once. Reading it there
also bounds how long a request may take to arrive (DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf.message import DecodeError
from grpc import aio

from server.domain import permissions as perm
from server.domain.access import Access
from server.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from server.domain.permissions import CallContext, Principal
from server.transport import status
from server.transport.metrics import CallCounters

log = logging.getLogger("machinesecrets.access")

ORG_HEADER = "x-zitadel-orgid"
# The most metadata a call may carry, counted as HTTP/2 counts a header list (RFC 9113 §6.5.2:
# name, value and 32 octets an entry).
MAX_METADATA_BYTES = 16 * 1024
PUBLIC_METHOD_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

# The permission each method needs in the context organisation. A method missing here is refused:
# a new RPC is closed until it is named.
REQUIRED_PERMISSION = {
    "/machinesecrets.v1.UserService/AddSecret": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/RemoveSecret": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/AddMachineUser": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/AddHumanUser": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/AddPersonalAccessToken": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/GetUserByID": perm.USER_READ,
    "/machinesecrets.v1.UserService/ListPersonalAccessTokens": perm.USER_READ,
    "/machinesecrets.v1.UserService/RemovePersonalAccessToken": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/DeactivateUser": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/ReactivateUser": perm.USER_WRITE,
    "/machinesecrets.v1.UserService/RemoveUser": perm.USER_WRITE,
    "/machinesecrets.v1.OrgService/AddOrganization": perm.ORG_CREATE,
    "/machinesecrets.v1.OrgService/AddOrgMember": perm.ORG_MEMBER_WRITE,
    "/machinesecrets.v1.OrgService/RemoveOrgMember": perm.ORG_MEMBER_WRITE,
}

Behavior = Callable[[Any, Any], Awaitable[Any]]


def not_one_message() -> InvalidArgument:
    return InvalidArgument([FieldViolation("request", "a unary call needs exactly one message frame")])


def request_too_slow(timeout_s: float) -> DeadlineExceeded:
    return DeadlineExceeded("REQUEST_TOO_SLOW", f"the request did not arrive within {timeout_s:g} s")


@dataclass(frozen=True)
class UnreadRequest:
    """In place of a unary call's request that could not be read: the error the call ends with."""

    error: DomainError


async def single_message(requests: AsyncIterator[Any], timeout_s: float) -> Any:
    """The request of a unary call, read from its request stream to the client's half-close: the
    message, or an UnreadRequest for none (an empty or cut-short body), more than one, or a
    stream that did not end within timeout_s."""
    messages = []
    try:
        async with asyncio.timeout(timeout_s):
            async for message in requests:
                messages.append(message)
                if len(messages) > 1:
                    return UnreadRequest(not_one_message())
    except TimeoutError:
        return UnreadRequest(request_too_slow(timeout_s))
    return messages[0] if messages else UnreadRequest(not_one_message())


@dataclass
class CallScope:
    method: str
    principal: Principal | None = None
    context: CallContext | None = None
    code: grpc.StatusCode = grpc.StatusCode.OK


_scope: ContextVar[CallScope] = ContextVar("machinesecrets_call_scope")


def call_context() -> CallContext:
    """The checked context of the current call, for servicers."""
    context = _scope.get().context
    if context is None:  # only if a servicer runs outside the interceptor chain: a wiring bug
        raise RuntimeError("no call context: the servicer ran without the interceptors")
    return context


def metadata_values(context: Any, key: str) -> list[str]:
    return [value for name, value in context.invocation_metadata() or () if name == key]


if TYPE_CHECKING:  # grpc-stubs makes the interceptor generic; grpcio's class is not subscriptable
    _ServerInterceptor = aio.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = aio.ServerInterceptor


class UnaryInterceptor(_ServerInterceptor):
    """Wraps the behaviour of unary-unary handlers with `around`; other handlers pass untouched.

    grpc.aio asks every interceptor for a handler on every call; the wrapped handler depends only
    on the method and the handler below, so it is made once and kept.
    """

    wraps_public_methods = False
    # Set on the layer that serves the method to grpc as stream-unary and reads the one request
    # message itself, waiting this long for it (see the module's docstring): the outermost's work.
    request_read_timeout_s: float | None = None
    # Whether this layer receives the request as bytes and parses it itself (inside `around`, so
    # that a message that does not parse is its error to map, not grpc's: grpc answers UNKNOWN
    # with the parser's exception text).
    parses_requests = False

    def __init__(self) -> None:
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler[Any, Any], grpc.RpcMethodHandler[Any, Any]]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or handler.unary_unary is None:
            return handler
        if not self.wraps_public_methods and method.startswith(PUBLIC_METHOD_PREFIXES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        inner: Behavior = handler.unary_unary
        deserialize = handler.request_deserializer
        next_step = inner
        if self.parses_requests:
            parse = deserialize or (lambda raw: raw)

            async def parse_then_call(raw: Any, context: Any) -> Any:
                if isinstance(raw, UnreadRequest):
                    raise raw.error
                try:
                    request = parse(raw)
                except DecodeError:
                    raise InvalidArgument([FieldViolation("request", "the message does not parse")]) from None
                return await inner(request, context)

            next_step, deserialize = parse_then_call, None

        async def behavior(request: Any, context: Any) -> Any:
            return await self.around(method, request, context, next_step)

        if self.request_read_timeout_s is not None:
            timeout_s = self.request_read_timeout_s

            async def from_stream(requests: AsyncIterator[Any], context: Any) -> Any:
                return await behavior(await single_message(requests, timeout_s), context)

            wrapped = grpc.stream_unary_rpc_method_handler(
                from_stream,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        else:
            wrapped = grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=deserialize,
                response_serializer=handler.response_serializer,
            )
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        raise NotImplementedError


class AccessLog(UnaryInterceptor):
    wraps_public_methods = True

    def __init__(self, counters: CallCounters, request_read_timeout_s: float) -> None:
        super().__init__()
        self._counters = counters
        self.request_read_timeout_s = request_read_timeout_s

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        scope = CallScope(method)
        token = _scope.set(scope)
        started = time.perf_counter()
        try:
            return await call_next(request, context)
        finally:
            _scope.reset(token)
            caller = scope.principal.user_id if scope.principal else "-"
            millis = (time.perf_counter() - started) * 1000
            self._counters.count(method, scope.code.name)
            log.info("%s %s %.1fms caller=%s", method, scope.code.name, millis, caller)


class ErrorMapping(UnaryInterceptor):
    wraps_public_methods = True
    parses_requests = True

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        scope = _scope.get()
        try:
            return await call_next(request, context)
        except DomainError as error:
            scope.code = status.code_of(error)
            details = status.rich_status(scope.code, error)
        except aio.AbortError:
            raise  # a handler aborted on its own: its status is set already
        except Exception:
            # Logged here with its traceback; the caller learns only that it was internal.
            log.exception("unexpected error in %s", method)
            scope.code = grpc.StatusCode.INTERNAL
            details = status.internal_status()
        await context.abort(
            scope.code,
            details.message,
            trailing_metadata=((status.STATUS_DETAILS_KEY, details.SerializeToString()),),
        )


class MetadataLimit(UnaryInterceptor):
    """One limit on metadata for every transport, enforced before any of it is read.

    grpc core has a limit of its own, but it holds a client to it only once the client has
    acknowledged the server's SETTINGS: a first request sent at once (as curl and h2 send it)
    passes with any amount. Envoy and uvicorn have their own, larger or different, limits.
    """

    wraps_public_methods = True

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        size = sum(len(key) + len(value) + 32 for key, value in context.invocation_metadata() or ())
        if size > MAX_METADATA_BYTES:
            raise ResourceExhausted(
                "METADATA_TOO_LARGE",
                f"the metadata of the call is larger than {MAX_METADATA_BYTES} bytes",
                {"limit": str(MAX_METADATA_BYTES)},
            )
        return await call_next(request, context)


class Authentication(UnaryInterceptor):
    def __init__(self, access: Access) -> None:
        super().__init__()
        self._access = access

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        _scope.get().principal = await self._access.authenticate(
            bearer_token(metadata_values(context, "authorization"))
        )
        return await call_next(request, context)


def bearer_token(values: Iterable[str]) -> str:
    """The token of exactly one `authorization: Bearer <token>` header (RFC 6750 §2.1)."""
    values = list(values)
    if not values:
        raise Unauthenticated("TOKEN_MISSING", "an authorization header with a bearer token is required")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("TOKEN_MALFORMED", "the authorization header must be `Bearer <token>`")
    return token


class OrgContext(UnaryInterceptor):
    def __init__(self, access: Access) -> None:
        super().__init__()
        self._access = access

    async def around(self, method: str, request: Any, context: Any, call_next: Behavior) -> Any:
        scope = _scope.get()
        assert scope.principal is not None, "OrgContext runs after Authentication"
        orgs = metadata_values(context, ORG_HEADER)
        if len(orgs) > 1:
            raise InvalidArgument([FieldViolation(ORG_HEADER, "must be sent at most once")])
        required = REQUIRED_PERMISSION.get(method)
        if required is None:
            raise PermissionDenied("METHOD_NOT_AUTHORISED", "no permission is defined for this method")
        scope.context = await self._access.enter_organisation(
            scope.principal, orgs[0].strip() if orgs else "", required
        )
        return await call_next(request, context)


def interceptors(
    access: Access, counters: CallCounters, request_read_timeout_s: float
) -> list[UnaryInterceptor]:
    """The chain, outermost first, for every transport."""
    return [
        AccessLog(counters, request_read_timeout_s),
        ErrorMapping(),
        MetadataLimit(),
        Authentication(access),
        OrgContext(access),
    ]
