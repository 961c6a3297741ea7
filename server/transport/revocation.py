"""`POST /secrets/revoke`: whoever holds a leaked secret reports it, and it stops working at once.

The body is JSON, `{"secrets": ["msk_…", …]}`, at most 100 strings; no credential is needed. The
answer, `{"received": n}`, says nothing about what matched (server/domain/revocation.py). Errors
are the token endpoint's shape, `{"error", "error_description"}`, with the same codes: 400 for a
body that is not such a list, 429 with Retry-After past the limit per source, 503 when the store
is away.
"""

import json
import time
from typing import Any

from server.domain.revocation import MAX_SECRETS_PER_REPORT, SecretRevocation
from server.limits import MAX_SECRET_LENGTH
from server.metrics import Metrics
from server.transport.asgi import Receive, Send, first, header_lists
from server.transport.forwarded import ClientAddress
from server.transport.oauth import Answer, InvalidRequest, OAuthError, known_failure, read_request_body

REVOKE_PATH = "/secrets/revoke"


class RevocationEndpoint:
    """parse → revoke (the domain's SecretRevocation) → one answer, whatever matched."""

    def __init__(
        self,
        revocation: SecretRevocation,
        metrics: Metrics,
        read_timeout_s: float,
        client_address: ClientAddress,
    ) -> None:
        self._revocation = revocation
        self._metrics = metrics
        self._read_timeout_s = read_timeout_s
        self._client_address = client_address

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_lists(scope)
        try:
            reported = await self._parse(scope, headers, receive)
            source = self._client_address.of(scope, headers)
            try:
                await self._revocation.revoke(reported, source)
            except Exception as error:
                raise known_failure(error, REVOKE_PATH) from None
            answer = Answer(200, {"received": len(reported)})
        except OAuthError as error:
            answer = error.answer()
        await answer.send(send, scope, self._metrics, started)

    async def _parse(
        self, scope: dict[str, Any], headers: dict[str, list[str]], receive: Receive
    ) -> list[str]:
        if scope["method"] != "POST":
            raise InvalidRequest("revocation takes POST", 405)
        if first(headers, "content-type").split(";")[0].strip().lower() != "application/json":
            raise InvalidRequest("the body must be application/json", 415)
        body = await read_request_body(receive, self._read_timeout_s)
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's stack
            raise InvalidRequest("the body is not valid JSON") from None
        if not isinstance(document, dict) or set(document) != {"secrets"}:
            raise InvalidRequest('the body must be {"secrets": ["msk_...", ...]}')
        reported = document["secrets"]
        if not isinstance(reported, list) or not all(isinstance(text, str) for text in reported):
            raise InvalidRequest('"secrets" must be a list of strings')
        if not 1 <= len(reported) <= MAX_SECRETS_PER_REPORT:
            raise InvalidRequest(f'"secrets" must hold 1 to {MAX_SECRETS_PER_REPORT} strings')
        if any(len(text) > MAX_SECRET_LENGTH for text in reported):
            raise InvalidRequest(f"a string is longer than {MAX_SECRET_LENGTH} characters: no secret is")
        return reported
