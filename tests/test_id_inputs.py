"""Every id a caller sends, as a field or as the `x-zitadel-orgid` header, from empty up to 100,000
characters, on every transport and store: a clear answer, never INTERNAL.

Found by a read of the code: `int()` of an organisation header of 5,000 digits raised (Python
refuses to convert integers of more than 4,300 digits), and the call answered INTERNAL.
"""

import json
from collections.abc import Callable
from urllib.parse import quote

import grpc
from google.protobuf import message
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.ids import is_id
from server.limits import MAX_ID_LENGTH
from tests.api import Api, ApiError
from tests.service import JSON_TRANSPORTS, Running

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
# Lengths around every limit on the way: 19 digits (63 bits), int()'s 4,300, the 16 KiB metadata
# limit, the 64 KiB message limit, and past them.
EDGES = [0, 1, 18, 19, 20, 4300, 4301, 5000, 16 * 1024, 64 * 1024, 100_000]
lengths = st.one_of(st.sampled_from(EDGES), st.integers(0, 40), st.integers(0, 100_000))


def repeated(alphabet: str) -> st.SearchStrategy[str]:
    """Strings of any length up to 100,000: a head, then one character over and over."""
    return st.builds(
        lambda n, head, fill: (head + fill * n)[:n],
        lengths,
        st.sampled_from(["", "1", "0", "-"]),
        st.sampled_from(alphabet),
    )


field_ids = st.one_of(
    # U+0661, ARABIC-INDIC DIGIT ONE: a digit to str.isdigit(), not to an id.
    repeated("9106a -\u0661"),
    st.from_regex(r"[1-9][0-9]{0,18}", fullmatch=True),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)
# HTTP clients refuse to send a header value with white space at either end.
header_ids = st.one_of(repeated("9106a-"), st.from_regex(r"[1-9][0-9]{0,18}", fullmatch=True))

Request = Callable[[str], message.Message]
# Every request field that holds an id, with the reason a well-formed id of no one gets.
ID_FIELDS: list[tuple[str, str, Request, str]] = [
    ("AddSecret", "user_id", lambda v: user_pb.AddSecretRequest(user_id=v), "USER_NOT_FOUND"),
    ("RemoveSecret", "user_id", lambda v: user_pb.RemoveSecretRequest(user_id=v), "USER_NOT_FOUND"),
    ("GetUserByID", "user_id", lambda v: user_pb.GetUserByIDRequest(user_id=v), "USER_NOT_FOUND"),
    (
        "AddPersonalAccessToken",
        "user_id",
        lambda v: user_pb.AddPersonalAccessTokenRequest(user_id=v),
        "USER_NOT_FOUND",
    ),
    (
        "ListPersonalAccessTokens",
        "user_id",
        lambda v: user_pb.ListPersonalAccessTokensRequest(user_id=v),
        "USER_NOT_FOUND",
    ),
    (
        "RemovePersonalAccessToken",
        "user_id",
        lambda v: user_pb.RemovePersonalAccessTokenRequest(user_id=v, token_id="1"),
        "USER_NOT_FOUND",
    ),
    ("DeactivateUser", "user_id", lambda v: user_pb.DeactivateUserRequest(user_id=v), "USER_NOT_FOUND"),
    ("ReactivateUser", "user_id", lambda v: user_pb.ReactivateUserRequest(user_id=v), "USER_NOT_FOUND"),
    ("RemoveUser", "user_id", lambda v: user_pb.RemoveUserRequest(user_id=v), "USER_NOT_FOUND"),
    (
        "AddOrgMember",
        "user_id",
        lambda v: org_pb.AddOrgMemberRequest(user_id=v, roles=["ORG_USER_MANAGER"]),
        "USER_NOT_FOUND",
    ),
    ("RemoveOrgMember", "user_id", lambda v: org_pb.RemoveOrgMemberRequest(user_id=v), "MEMBER_NOT_FOUND"),
]
# Over JSON these fields are path segments: Envoy matches no route for an empty one or one with
# a slash, and refuses a URL past its header limit itself.
PATH_FIELDS = {name for name, *_ in ID_FIELDS} - {"AddOrgMember"}
# What is too large to arrive: over the 64 KiB message limit, or the 16 KiB of metadata.
TOO_LARGE = {grpc.StatusCode.RESOURCE_EXHAUSTED}


async def outcome(
    api: Api, method: str, request: message.Message, metadata: list[tuple[str, str]]
) -> ApiError | None:
    try:
        await api.call(method, request, metadata)
    except ApiError as error:
        return error
    return None


@given(data=st.data())
@SETTINGS
async def test_id_fields(api: Api, running: Running, data: st.DataObject) -> None:
    method, name, build, reason = data.draw(st.sampled_from(ID_FIELDS), "rpc")
    value = data.draw(field_ids, "id")
    json_path = api.name == "envoy-json" and method in PATH_FIELDS
    # A path segment is sent percent-encoded, and no HTTP client sends a URL over 64 KiB.
    assume(not json_path or len(quote(value, safe="")) < 60_000)
    error = await outcome(api, method, build(value), [("authorization", f"Bearer {running.admin_token}")])
    assert error is not None, (method, value[:40])
    assert error.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), error
    # The size on the wire: UTF-8 bytes, or in a JSON body escaped as MessageToJson writes it.
    size = len(json.dumps(value)) if api.name in JSON_TRANSPORTS else len(value.encode())
    # Over JSON, Envoy passes the original path on as metadata, where it counts to that limit.
    if size > 60 * 1024 or (json_path and len(quote(value, safe="")) > 8 * 1024):
        assert error.code in TOO_LARGE | {grpc.StatusCode.INVALID_ARGUMENT}, (error, size)
    elif json_path and (not value or "/" in value or value != value.strip()):
        # No route, or a segment Envoy normalises: refused before the service, as not found.
        assert error.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), error
    elif is_id(value):
        assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, reason), (error, value)
    else:
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (error, value[:40], size)
        assert name in error.violations, error


@given(data=st.data())
@SETTINGS
async def test_the_organisation_header(api: Api, running: Running, data: st.DataObject) -> None:
    value = data.draw(header_ids, "org")
    metadata = [("authorization", f"Bearer {running.admin_token}"), ("x-zitadel-orgid", value)]
    error = await outcome(
        api, "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id="1"), metadata
    )
    assert error is not None
    assert error.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (error, len(value))
    if api.name == "envoy-grpc" and len(value) > 64 * 1024:
        # Envoy's HTTP/2 codec (nghttp2) takes no header field over 64 KiB: it ends the client's
        # connection with COMPRESSION_ERROR, which grpc reports as UNAVAILABLE. The service is
        # never reached; other connections are untouched.
        assert error.code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE), error
    elif len(value) > 16 * 1024:
        assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "METADATA_TOO_LARGE"), error
    elif len(value) > 15 * 1024:  # the metadata limit, with the transport's own headers
        assert error.code in TOO_LARGE | {grpc.StatusCode.INVALID_ARGUMENT}, (error, len(value))
    elif len(value) > MAX_ID_LENGTH:  # longer than any id: refused before anything reads it
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT, (error, len(value))
        assert "x-zitadel-orgid" in error.violations, error
    elif not value.strip():  # the caller's own organisation: the call goes on, to the user
        assert error.reason == "USER_NOT_FOUND", error
    else:
        assert (error.code, error.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ORGANIZATION_NOT_FOUND"), (
            error,
            value[:40],
        )
