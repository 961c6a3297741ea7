"""A failed RPC as an HTTP client reads it, for the adapters that answer errors in JSON (rest.py,
connect.py): the HTTP status of its gRPC code (status.HTTP_STATUS), a Retry-After header where the
error says when to try again, and a JSON body in the protocol's shape: google.rpc.Status for the
JSON API, the Connect error for the Connect call (JSON even where the call itself is binary)."""

import base64
import json
from typing import Any

from google.protobuf import json_format
from google.rpc import error_details_pb2

from server.transport.asgi import Send, respond
from server.transport.pipeline import Outcome
from server.transport.status import HTTP_STATUS

CONTENT_TYPE = "application/json"
# How each protocol's JSON is spaced, as it always was: the JSON API's compact, as Envoy's
# transcoder prints it; Connect's as json.dumps does by default.
Separators = tuple[str, str]
COMPACT: Separators = (",", ":")
SPACED: Separators = (", ", ": ")


async def respond_error(send: Send, outcome: Outcome, body: dict[str, Any], separators: Separators) -> None:
    """The error answer: body (status_json's or connect_error's) in JSON, with the HTTP status of
    the outcome's code."""
    headers = [("content-type", CONTENT_TYPE), *retry_after(outcome)]
    await respond(send, HTTP_STATUS[outcome.code], headers, json.dumps(body, separators=separators).encode())


def retry_after(outcome: Outcome) -> list[tuple[str, str]]:
    """A Retry-After header for an error that says when to try again (ErrorInfo's retry_after)."""
    info = error_details_pb2.ErrorInfo()
    for detail in () if outcome.status is None else outcome.status.details:
        if detail.Unpack(info) and "retry_after" in info.metadata:
            return [("retry-after", info.metadata["retry_after"])]
    return []


def status_json(outcome: Outcome) -> dict[str, Any]:
    """google.rpc.Status as JSON, {"code", "message", "details"}, each detail with its "@type":
    the shape Envoy's transcoder gives gRPC errors (convert_grpc_status)."""
    details = [] if outcome.status is None else list(outcome.status.details)
    return {
        "code": outcome.code.value[0],
        "message": outcome.message,
        "details": [json_format.MessageToDict(d, always_print_fields_with_no_presence=True) for d in details],
    }


def connect_error(outcome: Outcome) -> dict[str, Any]:
    """The Connect error body: the code's name in lower snake case, the message, and each detail
    as {"type", "value"} (the packed message, base64 without padding) with a readable "debug"."""
    error: dict[str, Any] = {"code": outcome.code.name.lower(), "message": outcome.message}
    details = []
    for packed in outcome.status.details if outcome.status is not None else ():
        detail: dict[str, Any] = {
            "type": packed.TypeName(),
            "value": base64.b64encode(packed.value).decode("ascii").rstrip("="),
        }
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest):
            message = kind()
            if packed.Unpack(message):
                detail["debug"] = json_format.MessageToDict(message)
        details.append(detail)
    if details:
        error["details"] = details
    return error
