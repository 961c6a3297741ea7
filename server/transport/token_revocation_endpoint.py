"""`POST /oauth/v2/revoke` (RFC 7009): a client ends an access token it holds
(server/domain/token_revocation.py says which tokens a client holds).

The request is a form (§2.1): `token`, and optionally `token_type_hint`, read and ignored (every
token here is an access token, and §2.1 lets the server look beyond a wrong hint). The client
authenticates as at the token endpoint: by HTTP Basic (`client_secret_basic`) or form fields
(`client_secret_post`), never both; or by `client_assertion` (`private_key_jwt`). A failure is 401
invalid_client (with a Basic challenge when it tried the header), 429 slow_down past the failure
limits, 400 invalid_request for a form without a token. Otherwise the answer is 200 with an empty
JSON object, whether anything was revoked or not (§2.2).

Not `/secrets/revoke` (revocation_endpoint.py): that one takes reports of leaked secrets from
anyone; this one takes tokens from the client that holds them.
"""

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from server.actor import TRANSPORT_OAUTH, Actor
from server.domain.errors import InvalidClient
from server.domain.token_revocation import TokenRevocation
from server.limits import MAX_TOKEN_FORM_BYTES
from server.logs import REQUEST_ID
from server.metrics import Metrics
from server.transport.asgi import Receive, Send, header_lists, media_type
from server.transport.forwarded import ClientAddress
from server.transport.http_endpoint import (
    AdmittedBody,
    EndpointAnswer,
    InvalidRequest,
    OAuthError,
    SlowDown,
    known_failure,
)
from server.transport.oauth import (
    MAX_FORM_FIELDS,
    REVOCATION_PATH,
    InvalidClientError,
    assertion_client,
    client_credentials,
)
from server.transport.status import domain_error


@dataclass(frozen=True)
class TokenRevocationRequest:
    client_id: str
    client_secret: str = field(repr=False)
    client_assertion: str = field(repr=False)  # "" unless private_key_jwt
    token: str = field(repr=False)
    challenge: bool  # it tried the Authorization header: a failure answers with a challenge


class TokenRevocationEndpoint:
    """parse → authenticate the client and revoke (the domain's TokenRevocation) → 200."""

    def __init__(
        self, revocation: TokenRevocation, metrics: Metrics, body: AdmittedBody, client_address: ClientAddress
    ) -> None:
        self._revocation = revocation
        self._metrics = metrics
        self._body = body
        self._client_address = client_address

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started, caller = time.perf_counter(), "-"
        try:
            headers = header_lists(scope)
            if scope["method"] != "POST":
                raise InvalidRequest("revocation takes POST", 405)
            if media_type(headers) != "application/x-www-form-urlencoded":
                raise InvalidRequest("the body must be application/x-www-form-urlencoded")
            source = self._client_address.of(scope, headers)
            async with self._body.read(receive, source, MAX_TOKEN_FORM_BYTES) as body:
                caller = await self._revoke(_parse(body, headers), source)
            answer = EndpointAnswer(200, {})
        except OAuthError as error:
            answer = error.answer()
            if isinstance(error, InvalidClientError | SlowDown):
                self._metrics.authentication_failures.labels(error.error).inc()
        await answer.send(send, scope, self._metrics, started, caller)

    async def _revoke(self, request: TokenRevocationRequest, source: str) -> str:
        origin = Actor(request_id=REQUEST_ID.get(), peer=source, transport=TRANSPORT_OAUTH)
        try:
            return await self._revocation.revoke(
                request.client_id,
                request.client_secret,
                request.client_assertion,
                request.token,
                source,
                origin,
            )
        except Exception as error:
            if isinstance(domain_error(error), InvalidClient):
                raise InvalidClientError(request.challenge) from None
            raise known_failure(error, REVOCATION_PATH) from None


def _parse(body: bytes, headers: dict[str, list[str]]) -> TokenRevocationRequest:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise InvalidRequest("a parameter is repeated")
    authorization = headers.get("authorization", [])
    client_assertion = ""
    if "client_assertion" in form or "client_assertion_type" in form:
        client_id, client_assertion = assertion_client(form, authorization)
        client_secret = ""
    else:
        client_id, client_secret = client_credentials(form, authorization)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    return TokenRevocationRequest(
        client_id, client_secret, client_assertion, token, challenge=bool(authorization)
    )
