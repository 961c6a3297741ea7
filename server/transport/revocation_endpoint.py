"""`POST /secrets/revoke`: whoever holds a leaked secret reports it, and it stops working at once.

The body is JSON, `{"secrets": ["msk_…", …]}`, at most 100 strings, of which at most
MS_SOURCE_FAILURE_LIMIT well-formed ones (each costs a bcrypt check, and counts against the
source's allowance); no credential is needed. The answer, `{"received": n}`, says nothing about
what matched (server/domain/revocation.py). Errors are the token endpoint's shape,
`{"error", "error_description"}`, with the same codes: 400 for a body that is not such a list,
429 slow_down with Retry-After past the limit per source or while this process has too many
reports to check, 503 when the store is away.
"""

import json
import time
from typing import Any

from server.actor import anonymous
from server.domain.revocation import MAX_SECRETS_PER_REPORT, SecretRevocation, candidates
from server.limits import MAX_SECRET_LENGTH
from server.logs import REQUEST_ID
from server.metrics import Metrics
from server.transport.asgi import Receive, Send, header_lists, media_type
from server.transport.forwarded import ClientAddress
from server.transport.http_endpoint import (
    AdmittedBody,
    EndpointAnswer,
    InvalidRequest,
    OAuthError,
    known_failure,
)

REVOKE_PATH = "/secrets/revoke"


class RevocationEndpoint:
    """parse → revoke (the domain's SecretRevocation) → one answer, whatever matched."""

    def __init__(
        self,
        revocation: SecretRevocation,
        metrics: Metrics,
        body: AdmittedBody,
        client_address: ClientAddress,
    ) -> None:
        self._revocation = revocation
        self._metrics = metrics
        self._body = body
        self._client_address = client_address

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        headers = header_lists(scope)
        try:
            _check_json_post(scope, headers)
            source = self._client_address.of(scope, headers)
            async with self._body.read(receive, source) as body:
                reported = _parse(body)
                # More than a source may report in a window could never be checked: refused for
                # good, not "later" (checksums are public: this tells the sender nothing new).
                if len(candidates(reported)) > (most := self._revocation.max_candidates):
                    raise InvalidRequest(f"at most {most} well-formed secrets in one report")
                try:
                    await self._revocation.revoke(reported, source, anonymous(source, REQUEST_ID.get()))
                except Exception as error:
                    raise known_failure(error, REVOKE_PATH) from None
            answer = EndpointAnswer(200, {"received": len(reported)})
        except OAuthError as error:
            answer = error.answer()
        await answer.send(send, scope, self._metrics, started)


def _check_json_post(scope: dict[str, Any], headers: dict[str, list[str]]) -> None:
    """What the request's head must be, checked before its body is read."""
    if scope["method"] != "POST":
        raise InvalidRequest("revocation takes POST", 405)
    if media_type(headers) != "application/json":
        raise InvalidRequest("the body must be application/json", 415)


def _parse(body: bytes) -> list[str]:
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
