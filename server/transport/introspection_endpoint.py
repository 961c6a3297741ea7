"""`POST /oauth/v2/introspect` (RFC 7662): an API application asks whether an access token is
active, and what it says (server/domain/introspection.py).

The request is a form (§2.1): `token`, and optionally `token_type_hint` (read and ignored: every
token here is an access token). The application authenticates as at the token endpoint, by HTTP
Basic (`client_secret_basic`), by form fields, or by `client_assertion_type` and
`client_assertion` (`private_key_jwt`, RFC 7523 §2.2; `client_id` optional, the assertion's iss
names it then), never two of them; a failure is 401 invalid_client (with a Basic challenge when
it tried the header), 429 slow_down past the failure limits. An assertion's `aud` may name the
issuer (with or without a slash), this endpoint, or the token endpoint. The answer is
§2.2's JSON: `{"active": false}` alone for a token that is not active for this application.
"""

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from server.domain.errors import InvalidClient
from server.domain.introspection import Introspected, Introspection
from server.limits import MAX_TOKEN_FORM_BYTES
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
    INTROSPECT_PATH,
    MAX_FORM_FIELDS,
    TOKEN_PATH,
    Discovery,
    InvalidClientError,
    assertion_client,
    client_credentials,
)
from server.transport.status import domain_error


@dataclass(frozen=True)
class IntrospectionRequest:
    client_id: str
    client_secret: str = field(repr=False)
    token: str = field(repr=False)
    challenge: bool  # it tried the Authorization header: a failure answers with a challenge
    client_assertion: str = field(default="", repr=False)  # private_key_jwt instead of a secret


class IntrospectionEndpoint:
    """parse → authenticate the application and introspect (the domain's Introspection) → render."""

    def __init__(
        self,
        introspection: Introspection,
        discovery: Discovery,
        metrics: Metrics,
        body: AdmittedBody,
        client_address: ClientAddress,
    ) -> None:
        self._introspection = introspection
        self._discovery = discovery
        self._metrics = metrics
        self._body = body
        self._client_address = client_address

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started, caller = time.perf_counter(), "-"
        try:
            headers = header_lists(scope)
            if scope["method"] != "POST":
                raise InvalidRequest("introspection takes POST", 405)
            if media_type(headers) != "application/x-www-form-urlencoded":
                raise InvalidRequest("the body must be application/x-www-form-urlencoded")
            source = self._client_address.of(scope, headers)
            async with self._body.read(receive, source, MAX_TOKEN_FORM_BYTES) as body:
                request = _parse(body, headers)
                answer_of = await self._introspect(request, source, self._discovery.issuer_of(scope))
            answer = EndpointAnswer(200, answer_of.claims)
            caller = "app:" + answer_of.app_id
        except OAuthError as error:
            answer = error.answer()
            if isinstance(error, InvalidClientError | SlowDown):
                self._metrics.authentication_failures.labels(error.error).inc()
        await answer.send(send, scope, self._metrics, started, caller)

    async def _introspect(self, request: IntrospectionRequest, source: str, issuer: str) -> Introspected:
        try:
            # What a client assertion's aud may name: the issuer (as discovery may give it), or
            # the endpoint it was sent to, or the token endpoint (authlib's PrivateKeyJWT).
            audiences = {
                audience
                for known in self._discovery.issuers()
                for audience in (known, known + "/", known + INTROSPECT_PATH, known + TOKEN_PATH)
            }
            return await self._introspection.introspect(
                request.client_id,
                request.client_secret,
                request.token,
                source,
                issuer,
                request.client_assertion,
                audiences,
            )
        except Exception as error:
            if isinstance(domain_error(error), InvalidClient):
                raise InvalidClientError(request.challenge) from None
            raise known_failure(error, INTROSPECT_PATH) from None


def _parse(body: bytes, headers: dict[str, list[str]]) -> IntrospectionRequest:
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):
        raise InvalidRequest("a parameter is repeated")
    authorization = headers.get("authorization", [])
    assertion = ""
    if "client_assertion" in form or "client_assertion_type" in form:
        (client_id, assertion), client_secret = assertion_client(form, authorization), ""
    else:
        client_id, client_secret = client_credentials(form, authorization)
    token = form.get("token")
    if token is None:
        raise InvalidRequest("token is required")
    return IntrospectionRequest(
        client_id, client_secret, token, challenge=bool(authorization), client_assertion=assertion
    )
