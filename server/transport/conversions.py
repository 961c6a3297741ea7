"""Values between the domain and the proto messages, for every API that serves them: the native
one (servicers.py) and ZITADEL's (zitadel_management.py, zitadel_v2.py). Each API's own message
shapes stay with its handlers; what they share is here."""

from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from machinesecrets.v1 import object_pb2
from zitadel.user.v1 import user_pb2 as zitadel_user_v1_pb2
from zitadel.user.v2 import user_pb2 as zitadel_user_v2_pb2
from zitadel.v1 import object_pb2 as zitadel_object_pb2

from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.machine_key_material import NO_EXPIRY_SHOWN
from server.domain.model import Details, UserProfile, UserView
from server.store.contract import ACCESS_TOKEN_BEARER, ACCESS_TOKEN_JWT

MAX_DURATION_SECONDS = 315_576_000_000  # google.protobuf.Duration's range: 10,000 years
D = TypeVar("D", object_pb2.ObjectDetails, zitadel_object_pb2.ObjectDetails)


def timestamp(moment: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def optional_timestamp(moment: datetime | None) -> timestamp_pb2.Timestamp | None:
    return None if moment is None else timestamp(moment)


def zitadel_key_expiration(moment: datetime | None) -> timestamp_pb2.Timestamp:
    """A key's expiration date under ZITADEL's names: a key without one shows ZITADEL's own
    stand-in, 9999-12-31T23:59:59Z, which its clients read (the Terraform provider's
    zitadel_machine_key sets expiration_date from it; an absent one would read as 1970)."""
    return timestamp(NO_EXPIRY_SHOWN if moment is None else moment)


def details_proto(details: Details, kind: type[D] = object_pb2.ObjectDetails) -> D:  # type: ignore[assignment]
    """Details as machinesecrets.v1's ObjectDetails, or as ZITADEL's v1 one (same numbers)."""
    return kind(
        sequence=details.sequence,
        creation_date=timestamp(details.creation_date),
        change_date=timestamp(details.change_date),
        resource_owner=details.resource_owner,
    )


def field_if_set(message: Message, name: str) -> Any:
    """A message field's value, or None when it is unset (fields with presence only)."""
    return getattr(message, name) if message.HasField(name) else None


def expiration_of(request: Message) -> datetime | None:
    """The request's expiration_date (a Timestamp, the same field in every API that takes one) as
    a time; None when it is unset."""
    return time_of(request, "expiration_date")


def time_of(request: Message, field: str) -> datetime | None:
    """A Timestamp field of the request as a time; None when it is unset."""
    stamp: timestamp_pb2.Timestamp | None = field_if_set(request, field)
    if stamp is None:
        return None
    try:
        return stamp.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as error:  # seconds or nanos outside the Timestamp range
        raise InvalidArgument([FieldViolation(field, "must be a valid timestamp")]) from error


def duration(span: duration_pb2.Duration | None, field: str) -> timedelta | None:
    """A Duration field (None: unset) as a span."""
    if span is None:
        return None
    if not -MAX_DURATION_SECONDS <= span.seconds <= MAX_DURATION_SECONDS or not -(10**9) < span.nanos < 10**9:
        raise InvalidArgument([FieldViolation(field, "must be a valid duration")])
    return span.ToTimedelta()


def optional_duration(span: timedelta | None) -> duration_pb2.Duration | None:
    if span is None:
        return None
    message = duration_pb2.Duration()
    message.FromTimedelta(span)
    return message


def fill_zitadel_machine(
    machine: zitadel_user_v1_pb2.Machine | zitadel_user_v2_pb2.MachineUser,
    view: UserView,
    profile: UserProfile,
) -> None:
    """A machine user's fields in ZITADEL's v1 Machine or v2 MachineUser, which name them alike
    (each API sets its own access_token_type)."""
    machine.name = profile.name
    machine.description = profile.description
    machine.has_secret = view.has_secret
    machine.access_token_type = access_token_type_number(profile.access_token_type)  # type: ignore[assignment]


def zitadel_login_names(user_name: str) -> dict[str, Any]:
    """A user's login names as ZITADEL's APIs show them: its user name alone, the service having
    no organisation domains to append."""
    return {"login_names": [user_name], "preferred_login_name": user_name}


# The access token types by their enum numbers, alike in the native API and ZITADEL's v1 and v2
# (ACCESS_TOKEN_TYPE_BEARER = 0, ACCESS_TOKEN_TYPE_JWT = 1).
ACCESS_TOKEN_TYPES = (ACCESS_TOKEN_BEARER, ACCESS_TOKEN_JWT)


def access_token_type_of(number: int) -> str:
    """The domain's name of an AccessTokenType number; INVALID_ARGUMENT for one no API defines."""
    if not 0 <= number < len(ACCESS_TOKEN_TYPES):
        raise InvalidArgument([FieldViolation("access_token_type", "must be BEARER or JWT")])
    return ACCESS_TOKEN_TYPES[number]


def access_token_type_number(name: str) -> int:
    return ACCESS_TOKEN_TYPES.index(name) if name in ACCESS_TOKEN_TYPES else 0


def text_matches(method: int, value: str, wanted: str) -> bool:
    """ZITADEL's text filters (zitadel.v1.TextQueryMethod and zitadel.filter.v2.TextFilterMethod
    number them alike): equals, starts with, contains, ends with, each also ignoring case. An
    unknown method matches nothing."""
    if method % 2:  # the odd ones ignore case
        value, wanted = value.casefold(), wanted.casefold()
    match method // 2:
        case 0:
            return value == wanted
        case 1:
            return value.startswith(wanted)
        case 2:
            return wanted in value
        case 3:
            return value.endswith(wanted)
    return False
