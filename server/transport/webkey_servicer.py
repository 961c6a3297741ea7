"""ZITADEL's web key API (zitadel.webkey.v2.WebKeyService): the signing keys of JWT access tokens,
for an IAM_OWNER (its permissions are IAM_OWNER's alone). The schedule that makes and rotates them
without anyone asking is domain/signing_keys.py's; these are the requests on demand."""

from zitadel.webkey.v2 import key_pb2
from zitadel.webkey.v2 import webkey_service_pb2 as webkey

from server.domain.commands import Commands
from server.domain.errors import FieldViolation, InvalidArgument, NotFound
from server.domain.permissions import CallContext
from server.domain.queries import Queries
from server.domain.signing_keys import ES256, RS256
from server.store.contract import WebKeyRecord
from server.transport.conversions import optional_timestamp, timestamp

STATES = {
    "initial": key_pb2.STATE_INITIAL,
    "active": key_pb2.STATE_ACTIVE,
    "inactive": key_pb2.STATE_INACTIVE,
}


def _algorithm(request: webkey.CreateWebKeyRequest) -> str:
    """The algorithm a request asks for ("" for none: the service's setting). Only what the
    service makes: RSA 2048 with SHA-256, ECDSA P-256."""
    match request.WhichOneof("key"):
        case "rsa":
            if request.rsa.bits not in (key_pb2.RSA_BITS_UNSPECIFIED, key_pb2.RSA_BITS_2048):
                raise InvalidArgument([FieldViolation("rsa.bits", "only RSA_BITS_2048 is served")])
            if request.rsa.hasher not in (key_pb2.RSA_HASHER_UNSPECIFIED, key_pb2.RSA_HASHER_SHA256):
                raise InvalidArgument([FieldViolation("rsa.hasher", "only RSA_HASHER_SHA256 is served")])
            return RS256
        case "ecdsa":
            if request.ecdsa.curve not in (key_pb2.ECDSA_CURVE_UNSPECIFIED, key_pb2.ECDSA_CURVE_P256):
                raise InvalidArgument([FieldViolation("ecdsa.curve", "only ECDSA_CURVE_P256 is served")])
            return ES256
        case "ed25519":
            raise InvalidArgument([FieldViolation("ed25519", "Ed25519 keys are not served")])
    return ""


def web_key_proto(key: WebKeyRecord, state: str) -> key_pb2.WebKey:
    proto = key_pb2.WebKey(
        id=key.key_id,
        creation_date=timestamp(key.created_at),
        change_date=timestamp(key.signs_from or key.created_at),
        state=STATES[state],
    )
    if key.algorithm == ES256:
        proto.ecdsa.curve = key_pb2.ECDSA_CURVE_P256
    else:
        proto.rsa.CopyFrom(key_pb2.RSA(bits=key_pb2.RSA_BITS_2048, hasher=key_pb2.RSA_HASHER_SHA256))
    return proto


class WebKeyService:
    def __init__(self, commands: Commands, queries: Queries) -> None:
        self._commands = commands
        self._queries = queries

    async def CreateWebKey(
        self, request: webkey.CreateWebKeyRequest, ctx: CallContext
    ) -> webkey.CreateWebKeyResponse:
        made = await self._commands.create_web_key(ctx, _algorithm(request))
        return webkey.CreateWebKeyResponse(id=made.key_id, creation_date=timestamp(made.created_at))

    async def ActivateWebKey(
        self, request: webkey.ActivateWebKeyRequest, ctx: CallContext
    ) -> webkey.ActivateWebKeyResponse:
        signs_from = await self._commands.activate_web_key(ctx, request.id)
        return webkey.ActivateWebKeyResponse(change_date=timestamp(signs_from))

    async def DeleteWebKey(
        self, request: webkey.DeleteWebKeyRequest, ctx: CallContext
    ) -> webkey.DeleteWebKeyResponse:
        # As ZITADEL: a key that is not there is the state asked for (no deletion date then).
        try:
            deleted = await self._commands.delete_web_key(ctx, request.id)
        except NotFound:
            deleted = None
        return webkey.DeleteWebKeyResponse(deletion_date=optional_timestamp(deleted))

    async def ListWebKeys(
        self, request: webkey.ListWebKeysRequest, ctx: CallContext
    ) -> webkey.ListWebKeysResponse:
        keys = await self._queries.web_keys()
        return webkey.ListWebKeysResponse(web_keys=[web_key_proto(key, state) for key, state in keys])
