"""A client of the service that the behaviour tests use, whatever the transport.

Every transport answers the same way: a response message, or an ApiError with the gRPC code, the
message, and the google.rpc.Status details (ErrorInfo reason, BadRequest field violations).
"""

import base64
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from urllib.parse import quote, quote_plus, unquote

import grpc
import httpx
import pytest
from google.api import annotations_pb2
from google.protobuf import json_format, message, message_factory
from google.rpc import error_details_pb2, status_pb2
from machinesecrets.v1 import audit_service_pb2, org_service_pb2, project_service_pb2, user_service_pb2
from zitadel.auth.v1 import auth_pb2
from zitadel.internal_permission.v2 import internal_permission_service_pb2
from zitadel.management.v1 import management_pb2
from zitadel.org.v2 import org_service_pb2 as org_service_v2_pb2
from zitadel.user.v2 import user_service_pb2 as user_service_v2_pb2
from zitadel.webkey.v2 import webkey_service_pb2

from server.transport.oauth import TOKEN_PATH
from tests.codes import HTTP_STATUS_OF, grpc_code

SERVICES = {
    "UserService": user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    "OrgService": org_service_pb2.DESCRIPTOR.services_by_name["OrgService"],
    "AuditService": audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
    "ProjectService": project_service_pb2.DESCRIPTOR.services_by_name["ProjectService"],
    "ManagementService": management_pb2.DESCRIPTOR.services_by_name["ManagementService"],
    "UserServiceV2": user_service_v2_pb2.DESCRIPTOR.services_by_name["UserService"],
    "OrganizationServiceV2": org_service_v2_pb2.DESCRIPTOR.services_by_name["OrganizationService"],
    "InternalPermissionService": internal_permission_service_pb2.DESCRIPTOR.services_by_name[
        "InternalPermissionService"
    ],
    "AuthService": auth_pb2.DESCRIPTOR.services_by_name["AuthService"],
    "WebKeyService": webkey_service_pb2.DESCRIPTOR.services_by_name["WebKeyService"],
}
# A native method by its name ("AddSecret"), any method by "Service.Method"
# ("ManagementService.GenerateMachineSecret").
METHODS = {
    **{f"{name}.{m.name}": m for name, s in SERVICES.items() for m in s.methods},
    **{
        m.name: m
        for s in reversed(list(SERVICES.values()))
        for m in s.methods
        if s.name != "ManagementService"
    },
}
Metadata = Sequence[tuple[str, str]]


def method_path(name: str) -> str:
    method = METHODS[name]
    return f"/{method.containing_service.full_name}/{method.name}"


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


async def expect_error(code: grpc.StatusCode, reason: str, call: object) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await call  # type: ignore[misc]
    assert (caught.value.code, caught.value.reason) == (code, reason), caught.value
    return caught.value


class Api(Protocol):
    name: str
    # The x-request-id the service answered the last call with (response header, or gRPC's
    # initial metadata).
    request_id: str | None

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        """The response, or raises ApiError."""
        ...

    async def close(self) -> None: ...


class GrpcApi:
    """Native gRPC over a real channel."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.request_id: str | None = None
        self._channel = grpc.aio.insecure_channel(target)

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        stub = self._channel.unary_unary(
            method_path(method),
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class(method).FromString,
        )
        call = stub(request, metadata=tuple(metadata), timeout=30)
        try:
            response = await call
            self.request_id = _first(await call.initial_metadata(), "x-request-id")
            return response  # type: ignore[no-any-return]
        except grpc.aio.AioRpcError as error:
            self.request_id = _first(error.initial_metadata(), "x-request-id")
            trailers = cast(Iterable[tuple[str, Any]], error.trailing_metadata() or ())
            details = next((v for k, v in trailers if k == "grpc-status-details-bin"), None)
            raise ApiError.from_status(error.code(), error.details() or "", details) from None

    async def close(self) -> None:
        await self._channel.close(None)


def _first(metadata: Any, key: str) -> str | None:
    return next((str(v) for k, v in metadata or () if k == key), None)


def frame(payload: bytes, flags: int = 0, length: int | None = None) -> bytes:
    """A gRPC (and grpc-web) frame; length, if given, is the length prefix whatever the payload."""
    return struct.pack(">BI", flags, len(payload) if length is None else length) + payload


def grpc_web_frames(body: bytes) -> tuple[list[bytes], list[bytes]]:
    """The message frames and the trailer frames of a grpc-web body, each as its payload."""
    messages: list[bytes] = []
    trailer_blocks: list[bytes] = []
    while len(body) >= 5:
        flags, length = struct.unpack(">BI", body[:5])
        payload, body = body[5 : 5 + length], body[5 + length :]
        (trailer_blocks if flags & 0x80 else messages).append(payload)
    return messages, trailer_blocks


def trailer_map(blocks: list[bytes]) -> dict[str, str]:
    """`key: value` lines of trailer blocks, keys lower-cased."""
    trailers = {}
    for block in blocks:
        for line in block.decode("ascii").split("\r\n"):
            if line:
                key, _, value = line.partition(":")
                trailers[key.strip().lower()] = value.strip()
    return trailers


def _b64decode_pieces(data: bytes) -> bytes:
    """Decodes base64 made of several separately padded pieces (as Envoy sends grpc-web-text)."""
    return b"".join(base64.b64decode(p) for p in re.findall(rb"[^=]*=*", b"".join(data.split())) if p)


HTTP_TO_GRPC = {
    400: grpc.StatusCode.INTERNAL,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.UNIMPLEMENTED,
    429: grpc.StatusCode.UNAVAILABLE,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.UNAVAILABLE,
}


class GrpcWebApi:
    """grpc-web over HTTP/1.1, binary (`application/grpc-web+proto`) or text (base64)."""

    def __init__(self, name: str, base_url: str, *, text: bool) -> None:
        self.name = name
        self._base_url = base_url
        self._text = text
        self.request_id: str | None = None
        self._client = httpx.AsyncClient(timeout=30)

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        body = frame(request.SerializeToString())
        content_type = "application/grpc-web-text" if self._text else "application/grpc-web+proto"
        headers = [("content-type", content_type), ("x-grpc-web", "1"), ("accept", content_type)]
        answer = await self._client.post(
            self._base_url + method_path(method),
            content=base64.b64encode(body) if self._text else body,
            headers=[*headers, *metadata],
        )
        self.request_id = answer.headers.get("x-request-id")
        if answer.status_code != 200:
            # A proxy's own answer (Envoy with no server behind it): its grpc-status, else the
            # HTTP status read as gRPC's doc/http-grpc-status-mapping.md says.
            if "grpc-status" in answer.headers:
                code = grpc_code(int(answer.headers["grpc-status"]))
            else:
                code = HTTP_TO_GRPC.get(answer.status_code, grpc.StatusCode.UNKNOWN)
            raise ApiError(code, unquote(answer.headers.get("grpc-message", answer.text)))
        assert answer.headers["content-type"].startswith(content_type), answer.headers["content-type"]
        data = _b64decode_pieces(answer.content) if self._text else answer.content
        # A trailers-only answer keeps its status in the headers and has no frames.
        messages, blocks = grpc_web_frames(data)
        trailers = {k.lower(): v for k, v in answer.headers.items() if k.lower().startswith("grpc-")}
        trailers |= trailer_map(blocks)
        code = grpc_code(int(trailers["grpc-status"]))
        if code != grpc.StatusCode.OK:
            encoded = trailers.get("grpc-status-details-bin")
            details = base64.b64decode(encoded + "=" * (-len(encoded) % 4)) if encoded else None
            raise ApiError.from_status(code, unquote(trailers.get("grpc-message", "")), details)
        assert len(messages) == 1, messages
        return response_class(method).FromString(messages[0])

    async def close(self) -> None:
        await self._client.aclose()


def http_rule(method: str) -> tuple[str, str, str]:
    """(HTTP method, path template, body) of an RPC's google.api.http binding."""
    rule = METHODS[method].GetOptions().Extensions[annotations_pb2.http]
    verb = rule.WhichOneof("pattern")
    return verb.upper(), getattr(rule, verb), rule.body


class JsonApi:
    """JSON over HTTP/1.1 through Envoy's transcoder, as curl or a script would call it."""

    def __init__(self, name: str, base_url: str) -> None:
        self.name = name
        self._base_url = base_url
        self.request_id: str | None = None
        self._client = httpx.AsyncClient(timeout=30)

    @property
    def base_url(self) -> str:
        return self._base_url

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        verb, template, body_rule = http_rule(method)
        fields = json_format.MessageToDict(request, preserving_proto_field_name=True)
        path_fields = re.findall(r"{(\w+)}", template)
        path = template
        for name in path_fields:
            path = path.replace(f"{{{name}}}", quote(str(fields.pop(name, "")), safe=""))
        body, query = None, None
        rest = {
            k: v for k, v in json_format.MessageToDict(request).items() if k not in map(_camel, path_fields)
        }
        if body_rule == "*":
            body = json.dumps(rest)
        elif rest:  # a call without a body takes its other fields as query parameters
            query = {k: [str(i) for i in v] if isinstance(v, list) else str(v) for k, v in rest.items()}
        answer = await self._client.request(
            verb,
            self._base_url + path,
            params=query,
            content=body,
            headers=[("content-type", "application/json"), *metadata],
        )
        self.request_id = answer.headers.get("x-request-id")
        payload = answer.json()
        if answer.status_code == 200:
            return json_format.ParseDict(payload, response_class(method)())
        code = grpc_code(payload["code"])
        # Envoy answers a body or headers over its limits itself, with the more precise 413 or 431.
        allowed = {HTTP_STATUS_OF[code], *([413, 431] if code == grpc.StatusCode.RESOURCE_EXHAUSTED else [])}
        assert answer.status_code in allowed, (answer.status_code, payload)
        assert answer.headers["content-type"] == "application/json"
        error = ApiError(code, payload["message"])
        for detail in payload.get("details", []):
            if detail["@type"].endswith("/google.rpc.ErrorInfo"):
                error.reason, error.metadata = detail["reason"], detail.get("metadata", {})
            elif detail["@type"].endswith("/google.rpc.BadRequest"):
                error.violations = {v["field"]: v["description"] for v in detail["fieldViolations"]}
        raise error

    async def close(self) -> None:
        await self._client.aclose()


class ConnectApi:
    """The Connect protocol's unary call: POST to the method's gRPC path, the message in proto3
    JSON (as ZITADEL's SDKs make it) or, binary, in protobuf (`application/proto`, as `buf curl`
    and connect-es with useBinaryFormat make it). Errors are {"code", "message", "details"} in JSON
    either way."""

    def __init__(self, name: str, base_url: str, *, binary: bool = False) -> None:
        self.name = name
        self._base_url = base_url
        self._binary = binary
        self.request_id: str | None = None
        self._client = httpx.AsyncClient(timeout=30)

    async def call(self, method: str, request: message.Message, metadata: Metadata) -> message.Message:
        content_type = "application/proto" if self._binary else "application/json"
        # A message stand-in without a descriptor (a test's raw bytes) goes as it is.
        body = (
            json_format.MessageToJson(request)
            if hasattr(request, "DESCRIPTOR") and not self._binary
            else request.SerializeToString()
        )
        answer = await self._client.post(
            self._base_url + method_path(method),
            content=body,
            headers=[("content-type", content_type), *metadata],
        )
        self.request_id = answer.headers.get("x-request-id")
        if answer.status_code == 200:
            assert answer.headers["content-type"] == content_type, answer.headers
            if self._binary:
                return response_class(method).FromString(answer.content)
            return json_format.ParseDict(answer.json(), response_class(method)())
        assert answer.headers["content-type"] == "application/json", answer.headers
        payload = answer.json()
        code = grpc.StatusCode[payload["code"].upper()]
        assert answer.status_code == HTTP_STATUS_OF[code], (answer.status_code, payload)
        error = ApiError(code, payload["message"])
        for detail in payload.get("details", []):
            value = base64.b64decode(detail["value"] + "=" * (-len(detail["value"]) % 4))
            if detail["type"] == "google.rpc.ErrorInfo":
                info = error_details_pb2.ErrorInfo.FromString(value)
                error.reason, error.metadata = info.reason, dict(info.metadata)
            elif detail["type"] == "google.rpc.BadRequest":
                bad = error_details_pb2.BadRequest.FromString(value)
                error.violations = {v.field: v.description for v in bad.field_violations}
        raise error

    async def close(self) -> None:
        await self._client.aclose()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


async def exchange(
    base: str, client_id: str, secret: str, method: str = "basic", **form: str
) -> httpx.Response:
    """A client-credentials token request to the token endpoint at base, by HTTP Basic or by form."""
    form = {"grant_type": "client_credentials", **form}
    headers = {}
    if method == "basic":  # RFC 6749 §2.3.1: each part form-encoded, then Basic
        raw = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(raw).decode()
    else:
        form |= {"client_id": client_id, "client_secret": secret}
    async with httpx.AsyncClient() as http:
        return await http.post(base + TOKEN_PATH, data=form, headers=headers)
