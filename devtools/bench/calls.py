"""The requests h2load sends: each transport's framing of a call, and the paths of the methods
measured. Built once before the rounds, so that every round sends the same bytes."""

import base64
import struct
from urllib.parse import urlencode

from devtools.bench.load import Request
from server.transport.oauth import CLIENT_ASSERTION_TYPE, JWT_BEARER, TOKEN_PATH

ADD_SECRET = "/machinesecrets.v1.UserService/AddSecret"
GET_USER = "/machinesecrets.v1.UserService/GetUserByID"
LIST_USERS = "/machinesecrets.v1.UserService/ListUsers"
ROTATE_SECRET = "/machinesecrets.v1.UserService/RotateSecret"
# The same request bytes as AddSecret's: its one field, user_id = 1.
GENERATE_SECRET = "/zitadel.management.v1.ManagementService/GenerateMachineSecret"


def framed(message: bytes) -> bytes:
    return struct.pack(">BI", 0, len(message)) + message


def grpc_request(port: int, method: str, message: bytes, token: str) -> Request:
    headers = (("content-type", "application/grpc"), ("te", "trailers"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}{method}", framed(message), headers)


def grpc_web_request(port: int, method: str, message: bytes, token: str) -> Request:
    headers = (
        ("content-type", "application/grpc-web+proto"),
        ("x-grpc-web", "1"),
        ("authorization", f"Bearer {token}"),
    )
    return Request(f"http://127.0.0.1:{port}{method}", framed(message), headers, http1=True)


def json_add_secret(port: int, user_id: str, token: str) -> Request:
    headers = ((":method", "PUT"), ("content-type", "application/json"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}/users/{user_id}/secret", b"{}", headers, http1=True)


def json_get_user(port: int, user_id: str, token: str) -> Request:
    headers = ((":method", "GET"), ("authorization", f"Bearer {token}"))
    return Request(f"http://127.0.0.1:{port}/users/{user_id}", b"", headers, http1=True)


def token_request(port: int, client_id: str, secret: str) -> Request:
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    headers = (("content-type", "application/x-www-form-urlencoded"), ("authorization", f"Basic {basic}"))
    return Request(
        f"http://127.0.0.1:{port}{TOKEN_PATH}", b"grant_type=client_credentials", headers, http1=True
    )


def jwt_bearer_request(port: int, assertion: str) -> Request:
    """The JWT profile grant (RFC 7523 §2.1). The same assertion every time: one without a jti is
    not replay-checked (as ZITADEL's SDKs send them), so it buys a token until it expires."""
    body = urlencode({"grant_type": JWT_BEARER, "assertion": assertion}).encode()
    headers = (("content-type", "application/x-www-form-urlencoded"),)
    return Request(f"http://127.0.0.1:{port}{TOKEN_PATH}", body, headers, http1=True)


def federated_request(port: int, client_id: str, assertion: str) -> Request:
    """The federated exchange: client credentials with the platform's token as client_assertion."""
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": CLIENT_ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    headers = (("content-type", "application/x-www-form-urlencoded"),)
    return Request(f"http://127.0.0.1:{port}{TOKEN_PATH}", urlencode(form).encode(), headers, http1=True)
