"""The one way a unary call is served, on every transport: a Pipeline of plain steps, built once
per method.

    read            the request, as the transport reads it, holding an unfinished place for
                    its address meanwhile (admission.py): the message's bytes, or the message
                    itself where the transport read JSON
    in flight       a place among MS_MAX_INFLIGHT, taken only once the request is whole
    parse           the bytes to the message
    path fields     a call Envoy transcoded from JSON acts on what its path names, whatever its
                    body says (path_fields.py)
    metadata limit  more than MAX_METADATA_BYTES of metadata is RESOURCE_EXHAUSTED
    authenticate    `authorization: Bearer <token>` to a Principal
    organisation    `x-zitadel-orgid` (or the caller's own organisation), or what the request
    and permission  addresses where the method's .proto says so (ZITADEL's v2), to a CallContext
                    checked for the permission the method declares in its .proto
    handler         the servicer's method: request and CallContext in, response out
    error mapping   any failure to a google.rpc.Status; anything unexpected to INTERNAL
    access log      one line and one count per call, whatever happened

A transport adapter turns what it received into a Call and a `read` function, runs the pipeline,
and writes the Outcome back in its own framing: `grpc_server.py` for grpc.aio, `grpcweb.py` for
grpc-web, `connect.py` for the Connect call (binary and JSON), `rest.py` for JSON on the native
API's own paths. None knows another's calling convention, and none has a step of its own.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass
from google.rpc import status_pb2
from machinesecrets.v1.options_pb2 import AuthOption

from server.actor import Actor
from server.domain.access import Access, invalid_token
from server.domain.errors import (
    DeadlineExceeded,
    DomainError,
    FieldViolation,
    InvalidArgument,
    ResourceExhausted,
    Unauthenticated,
)
from server.domain.permissions import ANY_CALLER, CallContext, Principal
from server.limits import MAX_BEARER_TOKEN_LENGTH, MAX_ID_LENGTH, MAX_METADATA_BYTES
from server.logs import REQUEST_ID
from server.metrics import Metrics
from server.transport import status
from server.transport.access_log import record_call
from server.transport.admission import Admission, source_of
from server.transport.methods import auth_option
from server.transport.path_fields import HttpBinding, check_transcoded, http_bindings

log = logging.getLogger("machinesecrets")

ORG_HEADER = "x-zitadel-orgid"

Metadata = Sequence[tuple[str, str | bytes]]
Handler = Callable[[Any, CallContext], Awaitable[Message]]


@dataclass(slots=True)
class Call:
    """One unary call, as a transport received it."""

    method: str  # "/package.Service/Method"
    transport: str  # "grpc" or "grpc-web"
    metadata: Metadata
    peer: str
    timeout_s: float | None = None  # the client's deadline, where the transport does not keep it


@dataclass(slots=True)
class Outcome:
    """How a call ended: the response, or the status of the error. Each transport writes the
    response in its own encoding: protobuf, or JSON straight from the message."""

    code: grpc.StatusCode
    response: Message | None = None
    status: status_pb2.Status | None = None

    @property
    def message(self) -> str:
        return "" if self.status is None else self.status.message


# What a transport's read step hands the pipeline: the request message's bytes (gRPC, grpc-web,
# binary Connect), which the pipeline parses once the call holds a place in flight, or the message
# itself, which a JSON transport fills from the JSON it read (rest.py, connect.py): JSON to the
# message, with no protobuf encoding and decoding between them that would do nothing.
Request = bytes | Message
Read = Callable[[], Awaitable[Request]]


class Runner(Protocol):
    """What a transport adapter serves: a Pipeline, or anything that answers like one."""

    method: str

    async def run(self, call: Call, read: Read) -> Outcome: ...


def not_one_message() -> InvalidArgument:
    return InvalidArgument([FieldViolation("request", "a unary call needs exactly one message frame")])


def request_too_slow(timeout_s: float) -> DeadlineExceeded:
    return DeadlineExceeded("REQUEST_TOO_SLOW", f"the request did not arrive within {timeout_s:g} s")


class Pipeline:
    def __init__(
        self,
        method: str,
        request_type: type[Message],
        response_type: type[Message],
        option: AuthOption,
        handler: Handler,
        access: Access,
        metrics: Metrics,
        admission: Admission,
        bindings: Sequence[HttpBinding] = (),
    ) -> None:
        self.method = method
        self._bindings = bindings  # its google.api.http rules, which name fields in the path
        self._admission = admission
        self.request_type = request_type
        self.response_type = response_type
        self._permission = option.permission
        # Where the organisation comes from (methods.py): a request field naming it, a request
        # field naming a user in it, or else the header.
        self._organisation_field = option.organization_field.split(".") if option.organization_field else None
        self._user_field = option.user_field.split(".") if option.user_field else None
        self._handler = handler
        self._access = access
        self._metrics = metrics

    async def run(self, call: Call, read: Read) -> Outcome:
        started = time.perf_counter()
        caller = "-"
        # A deadline of the pipeline's own only where the transport keeps none (grpc-web's
        # grpc-timeout); grpc.aio cancels the call itself. No timer at all costs least.
        deadline = None if call.timeout_s is None else asyncio.timeout(call.timeout_s)
        try:
            async with deadline or contextlib.nullcontext():
                await self._admission.arrived()
                async with self._admission.admitted(source_of(call.peer), read) as raw:
                    request = raw if isinstance(raw, Message) else self._parse(raw)
                    check_transcoded(self._bindings, request, call.metadata)
                    check_metadata_size(call.metadata)
                    principal = await self._access.authenticate(
                        bearer_token(metadata_values(call.metadata, "authorization"))
                    )
                    caller = principal.user_id
                    context = await self._enter(principal, request, call.metadata)
                    context = replace(context, actor=actor_of(principal, call))
                    response = await self._handler(request, context)
            outcome = Outcome(grpc.StatusCode.OK, response=response)
        except TimeoutError as error:
            if deadline is not None and deadline.expired():
                outcome = error_outcome(DeadlineExceeded("DEADLINE_EXCEEDED", "the call's deadline passed"))
            else:
                outcome = self._failed(call, error)
        except asyncio.CancelledError:  # the client went away, or its deadline passed (grpc.aio)
            self._log(call, grpc.StatusCode.CANCELLED, started, caller)
            raise
        except Exception as error:
            outcome = self._failed(call, error)
        self._log(call, outcome.code, started, caller)
        return outcome

    async def _enter(self, principal: Principal, request: Message, metadata: Metadata) -> CallContext:
        """The organisation step: the context organisation, checked for the method's permission."""
        if self._permission == ANY_CALLER:  # the caller's own reach: no organisation to enter
            return CallContext(principal, principal.org_id)
        if self._user_field is not None:
            user_id = string_field(request, self._user_field)
            return await self._access.enter_organisation_of_user(principal, user_id, self._permission)
        if self._organisation_field is not None:
            org_id = string_field(request, self._organisation_field)
            return await self._access.enter_organisation(principal, org_id, self._permission)
        return await self._access.enter_organisation(principal, org_header(metadata), self._permission)

    def _parse(self, raw: bytes) -> Message:
        try:
            return self.request_type.FromString(raw)
        except DecodeError:
            raise InvalidArgument([FieldViolation("request", "the message does not parse")]) from None

    def _failed(self, call: Call, error: Exception) -> Outcome:
        known = status.domain_error(error)
        if known is not None:
            if isinstance(known, Unauthenticated):
                self._metrics.authentication_failures.labels(known.reason).inc()
            return error_outcome(known)
        # Logged here with its traceback; the caller learns only that it was internal.
        log.error("unexpected error in %s", call.method, exc_info=error)
        return Outcome(grpc.StatusCode.INTERNAL, status=status.internal_status())

    def _log(self, call: Call, code: grpc.StatusCode, started: float, caller: str) -> None:
        record_call(self._metrics, call.method, call.transport, code.name, started, caller, call.peer)


def actor_of(principal: Principal, call: Call) -> Actor:
    """Who makes the call, for the events it writes: the caller by its credential, the call's
    request id, its client's address (as admission and the access log take it from the peer) and
    its transport."""
    return Actor(
        principal.user_id,
        principal.org_id,
        principal.credential_kind,
        principal.credential_id,
        REQUEST_ID.get(),
        source_of(call.peer),
        call.transport,
    )


def error_outcome(error: DomainError) -> Outcome:
    """The outcome of a call ended by a domain error, wherever in the call it was raised."""
    return Outcome(status.code_of(error), status=status.error_status(error))


def string_field(message: Message, path: list[str]) -> str:
    """A string field of the request, by its path (checked to exist at start); "" where unset."""
    for name in path[:-1]:
        message = getattr(message, name)
    return str(getattr(message, path[-1]))


def check_metadata_size(metadata: Metadata) -> None:
    """One limit on metadata for every transport, counted as HTTP/2 counts a header list
    (RFC 9113 §6.5.2: name, value and 32 octets an entry).

    grpc core has a limit of its own, but it holds a client to it only once the client has
    acknowledged the server's SETTINGS: a first request sent at once (as curl and h2 send it)
    passes with any amount. Envoy and uvicorn have their own, larger or different, limits.
    """
    size = sum(len(key) + len(value) + 32 for key, value in metadata)
    if size > MAX_METADATA_BYTES:
        raise ResourceExhausted(
            "METADATA_TOO_LARGE",
            f"the metadata of the call is larger than {MAX_METADATA_BYTES} bytes",
            {"limit": str(MAX_METADATA_BYTES)},
        )


def metadata_values(metadata: Metadata, key: str) -> list[str]:
    return [value for name, value in metadata if name == key and isinstance(value, str)]


def bearer_token(values: Iterable[str]) -> str:
    """The token of exactly one `authorization: Bearer <token>` header (RFC 6750 §2.1)."""
    values = list(values)
    if not values:
        raise Unauthenticated("TOKEN_MISSING", "an authorization header with a bearer token is required")
    scheme, _, token = values[0].strip().partition(" ")
    token = token.strip()
    if len(values) > 1 or scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated("TOKEN_MALFORMED", "the authorization header must be `Bearer` and one token")
    if len(token) > MAX_BEARER_TOKEN_LENGTH:  # no token is this long: the answer to an unknown one
        raise invalid_token()
    return token


def org_header(metadata: Metadata) -> str:
    """The organisation the call names, or "" for the caller's own."""
    orgs = metadata_values(metadata, ORG_HEADER)
    if len(orgs) > 1:
        raise InvalidArgument([FieldViolation(ORG_HEADER, "must be sent at most once")])
    if orgs and len(orgs[0]) > MAX_ID_LENGTH:
        raise InvalidArgument([FieldViolation(ORG_HEADER, f"must be at most {MAX_ID_LENGTH} characters")])
    return orgs[0].strip() if orgs else ""


async def single_message(requests: AsyncIterator[bytes], timeout_s: float) -> bytes:
    """The request of a unary call, read from a request stream to the client's half-close.

    Raises INVALID_ARGUMENT for none (an empty or cut-short body) or more than one, and
    DEADLINE_EXCEEDED for a stream that did not end within timeout_s.
    """
    messages = []
    try:
        async with asyncio.timeout(timeout_s):
            async for message in requests:
                messages.append(message)
                if len(messages) > 1:
                    raise not_one_message()
    except TimeoutError:
        raise request_too_slow(timeout_s) from None
    if not messages:
        raise not_one_message()
    return messages[0]


def build_pipelines(
    services: Mapping[ServiceDescriptor, object],
    access: Access,
    metrics: Metrics,
    admission: Admission,
) -> list[Pipeline]:
    """A Pipeline for every method of every service, with the servicer's method of that name as
    its handler and the permission its .proto declares. A method without either stops the start:
    a new RPC is closed until it is named."""
    pipelines = []
    for service, servicer in services.items():
        for method in service.methods:
            handler = getattr(servicer, method.name, None)
            if handler is None:
                raise TypeError(f"{type(servicer).__name__} has no handler for {method.full_name}")
            pipelines.append(
                Pipeline(
                    f"/{service.full_name}/{method.name}",
                    GetMessageClass(method.input_type),
                    GetMessageClass(method.output_type),
                    auth_option(method),
                    handler,
                    access,
                    metrics,
                    admission,
                    http_bindings(method),
                )
            )
    return pipelines
