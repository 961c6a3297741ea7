"""The OAuth2 token endpoint (RFC 6749 §4.4, client credentials; RFC 7523 §2.1, the JWT profile
grant) and its discovery document.

Errors are RFC 6749 §5.2 JSON: {"error", "error_description"} (http_endpoint.py, which the
revocation endpoint shares). Client authentication is HTTP Basic (`client_secret_basic`, §2.3.1),
form fields (`client_secret_post`), or an assertion signed by a machine key (`private_key_jwt`,
RFC 7523 §2.2), or a workload's platform token of a trusted issuer (the same form fields, its iss
a URL: domain/federation.py), never two of them. The JWT profile grant needs no client authentication: its
assertion is the grant (domain/jwt_profile.py).
"""

import base64
import binascii
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from server.actor import TRANSPORT_OAUTH, Actor
from server.domain import scopes as project_scopes
from server.domain.assertions import ALGORITHMS
from server.domain.client_credentials import AccessToken, ClientCredentials
from server.domain.errors import InvalidClient, InvalidGrant
from server.domain.errors import InvalidScope as ScopeRefused
from server.domain.federation import Federation, federated_issuer
from server.domain.jwt_profile import JwtProfile
from server.domain.signing_keys import KeyRing
from server.limits import (
    MAX_ASSERTION_LENGTH,
    MAX_SCOPE_LENGTH,
    MAX_SECRET_LENGTH,
    MAX_TOKEN_FORM_BYTES,
    MAX_USER_NAME_LENGTH,
)
from server.logs import REQUEST_ID
from server.metrics import Metrics
from server.store.contract import StoreError
from server.transport.asgi import Receive, Send, first, header_lists, media_type, respond
from server.transport.forwarded import ClientAddress
from server.transport.http import respond_json
from server.transport.http_endpoint import (
    AdmittedBody,
    EndpointAnswer,
    InvalidRequest,
    OAuthError,
    SlowDown,
    known_failure,
)
from server.transport.status import domain_error

TOKEN_PATH = "/oauth/v2/token"
INTROSPECT_PATH = "/oauth/v2/introspect"
KEYS_PATH = "/oauth/v2/keys"  # the JWKS of JWT access tokens (RFC 7517), as ZITADEL serves it
REVOCATION_PATH = "/oauth/v2/revoke"  # RFC 7009 (not /secrets/revoke, the leaked-secret report)
DISCOVERY_PATH = "/.well-known/openid-configuration"
METADATA_PATH = "/.well-known/oauth-authorization-server"  # RFC 8414 §3: the same document
# Every access token is for this API: `api`, the native scope, is what it grants. The scopes that
# ZITADEL's clients send are accepted and change nothing, so that those clients work unmodified:
# OpenID Connect's (no ID token or refresh token is issued), ZITADEL's audience scope (the audience
# is this API), and ZITADEL's organisation scope (an organisation is chosen per call, by
# x-zitadel-orgid). docs/zitadel.md.
DEFAULT_SCOPE = "api"
SUPPORTED_SCOPES = (
    DEFAULT_SCOPE,
    "openid",
    "profile",
    "email",
    "offline_access",
    "urn:zitadel:iam:org:project:id:zitadel:aud",
    project_scopes.ALL_ROLES,
    project_scopes.RESOURCE_OWNER,
    project_scopes.METADATA,
)
# Patterns of scopes that name a project or a role (server/domain/scopes.py), for discovery.
PROJECT_SCOPE_PATTERNS = (
    "urn:zitadel:iam:org:project:id:{projectId}:aud",
    "urn:zitadel:iam:org:project:role:{roleKey}",
)
ORGANISATION_SCOPE = re.compile(r"urn:zitadel:iam:org:id:[1-9][0-9]{0,18}")
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# An API application authenticates with its secret, or with an assertion one of its keys signed.
INTROSPECTION_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "private_key_jwt"]
# A machine user revokes its tokens by whatever authenticates it at the token endpoint; an API
# application by its secret (token_revocation_endpoint.py).
REVOCATION_AUTH_METHODS = AUTH_METHODS
# No ID token is issued (client credentials only), but OpenID Connect Discovery requires both
# (§3), and validators such as authlib's refuse a document without them.
SUBJECT_TYPES = ["public"]
ID_TOKEN_SIGNING_ALGS = ["RS256"]
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"  # RFC 7523 §2.1
GRANT_TYPES = [CLIENT_CREDENTIALS, JWT_BEARER]
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
MAX_FORM_FIELDS = 16
# The longest Basic credentials a client can have: its id and secret form-encoded (§2.3.1), each
# character at most 4 bytes of UTF-8 and each byte at most 3 characters (%XX), then base64. Longer
# ones are refused before they are decoded.
MAX_BASIC_LENGTH = 4 * -(-((MAX_USER_NAME_LENGTH + MAX_SECRET_LENGTH) * 12 + 1) // 3)


class InvalidClientError(OAuthError):
    """§5.2: 401, with a WWW-Authenticate challenge when the client tried the Authorization
    header. The one answer to every failed client authentication."""

    error = "invalid_client"
    status = 401

    def __init__(self, challenge: bool, description: str = "client authentication failed") -> None:
        super().__init__(description)
        self.challenge = challenge

    def headers(self) -> list[tuple[str, str]]:
        return [("www-authenticate", 'Basic realm="machine-secrets"')] if self.challenge else []


class InvalidGrantError(OAuthError):
    """§5.2: the one answer to every refused assertion of the JWT profile grant."""

    error = "invalid_grant"

    def __init__(self) -> None:
        super().__init__("the assertion is invalid")


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


@dataclass(frozen=True)
class TokenRequest:
    """A token request as read from HTTP: who claims to be the client, and what it asks for."""

    client_id: str
    client_secret: str = field(repr=False)
    scope: str
    source: str  # the client's address, for the limits on failed attempts
    challenge: bool  # it tried the Authorization header: a failure answers with a challenge
    # private_key_jwt: the client's assertion, instead of a secret ("" for a secret).
    client_assertion: str = field(default="", repr=False)


@dataclass(frozen=True)
class AssertionGrant:
    """RFC 7523 §2.1: the assertion is the grant; no client authenticates."""

    assertion: str = field(repr=False)
    scope: str
    source: str


class TokenEndpoint:
    """parse → authenticate and exchange (the domain's ClientCredentials) → render."""

    def __init__(
        self,
        credentials: ClientCredentials,
        jwt_profile: JwtProfile,
        metrics: Metrics,
        body: AdmittedBody,
        client_address: ClientAddress,
        federation: Federation | None = None,
        discovery: "Discovery | None" = None,
    ) -> None:
        self._federation = federation
        # The issuer a JWT access token names: the one discovery gives at the address called.
        self._discovery = discovery
        self._credentials = credentials
        self._jwt_profile = jwt_profile
        self._metrics = metrics
        self._body = body
        self._client_address = client_address

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        started, caller = time.perf_counter(), "-"
        try:
            headers = header_lists(scope)
            _check_form_post(scope, headers)
            source = self._client_address.of(scope, headers)
            issuer = "" if self._discovery is None else self._discovery.issuer_of(scope)
            async with self._body.read(receive, source, MAX_TOKEN_FORM_BYTES) as body:
                token = await self._exchange(_parse(body, headers, source), issuer)
            answer = EndpointAnswer(200, _render(token))
            caller = token.user_id
            self._metrics.tokens_issued.inc()
        except OAuthError as error:
            answer = error.answer()
            if isinstance(error, InvalidClientError | InvalidGrantError | SlowDown):
                self._metrics.authentication_failures.labels(error.error).inc()
        await answer.send(send, scope, self._metrics, started, caller)

    async def _exchange(self, request: TokenRequest | AssertionGrant, issuer: str) -> AccessToken:
        try:
            origin = Actor(request_id=REQUEST_ID.get(), peer=request.source, transport=TRANSPORT_OAUTH)
            if isinstance(request, AssertionGrant):
                return await self._jwt_profile.exchange(
                    request.assertion, request.scope, request.source, origin, issuer
                )
            if (
                request.client_assertion
                and self._federation is not None
                and federated_issuer(request.client_assertion, request.client_id)
            ):  # a workload's platform token (issue 34), not an assertion signed by a machine key
                return await self._federation.authenticate_client(
                    request.client_id, request.client_assertion, request.scope, request.source, origin, issuer
                )
            if request.client_assertion:
                return await self._jwt_profile.authenticate_client(
                    request.client_id, request.client_assertion, request.scope, request.source, origin, issuer
                )
            return await self._credentials.exchange(
                request.client_id, request.client_secret, request.scope, request.source, origin, issuer
            )
        except Exception as error:
            refused = domain_error(error)
            if isinstance(refused, InvalidGrant):
                raise InvalidGrantError() from None
            if isinstance(refused, InvalidClient):
                challenge = isinstance(request, TokenRequest) and request.challenge
                raise InvalidClientError(challenge) from None
            if isinstance(refused, ScopeRefused):
                raise InvalidScope(refused.message) from None
            raise known_failure(error, TOKEN_PATH) from None


def _check_form_post(scope: dict[str, Any], headers: dict[str, list[str]]) -> None:
    """What the request's head must be, checked before its body is read (§3.2)."""
    if scope["method"] != "POST":
        raise InvalidRequest("the token endpoint takes POST", 405)
    if media_type(headers) != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")


def _parse(body: bytes, headers: dict[str, list[str]], source: str) -> TokenRequest | AssertionGrant:
    try:
        # A token request has four parameters; thousands would cost milliseconds to split.
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the body is not a valid form") from None
    form = dict(pairs)
    if len(form) != len(pairs):  # §3.2: no parameter more than once
        raise InvalidRequest("a parameter is repeated")
    grant_type = form.get("grant_type")
    if not grant_type:
        raise InvalidRequest("grant_type is required")
    if grant_type == JWT_BEARER:
        assertion = form.get("assertion")
        if not assertion:
            raise InvalidRequest("assertion is required")
        if len(assertion) > MAX_ASSERTION_LENGTH:  # refused as any bad assertion, before parsing
            raise InvalidGrantError()
        return AssertionGrant(assertion, _scope(form.get("scope")), source)
    if grant_type != CLIENT_CREDENTIALS:
        raise UnsupportedGrantType(f"supported grant types: {' '.join(GRANT_TYPES)}")
    authorization = headers.get("authorization", [])
    if "client_assertion" in form or "client_assertion_type" in form:
        return _private_key_jwt(form, authorization, source)
    client_id, client_secret = client_credentials(form, authorization)
    # No client has a longer id or secret: refused as any unknown client is, before the domain
    # normalises the id (ClientCredentials checks the same limits).
    if len(client_id) > MAX_USER_NAME_LENGTH or len(client_secret) > MAX_SECRET_LENGTH:
        raise InvalidClientError(challenge=bool(authorization))
    return TokenRequest(
        client_id, client_secret, _scope(form.get("scope")), source, challenge=bool(authorization)
    )


def _private_key_jwt(form: dict[str, str], authorization: Sequence[str], source: str) -> TokenRequest:
    """RFC 7523 §2.2: the client authenticated by an assertion its key signed."""
    client_id, assertion = assertion_client(form, authorization)
    return TokenRequest(
        client_id, "", _scope(form.get("scope")), source, challenge=False, client_assertion=assertion
    )


def assertion_client(form: dict[str, str], authorization: Sequence[str]) -> tuple[str, str]:
    """(client_id, client_assertion) of a form request whose client authenticates by an assertion
    (RFC 7523 §2.2: private_key_jwt, or a workload's platform token), at the token, revocation and
    introspection endpoints. client_id is optional (RFC 7521 §4.2); the assertion's iss names the
    client then (it is verified as iss = sub = the client id, whichever way the id came)."""
    if authorization or "client_secret" in form:
        raise InvalidRequest("send client credentials by one method only")
    if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
        raise InvalidRequest(f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}")
    assertion = form.get("client_assertion", "")
    if not assertion or len(assertion) > MAX_ASSERTION_LENGTH:
        raise InvalidClientError(challenge=False)
    client_id = form.get("client_id") or _unverified_issuer(assertion)
    if not client_id or len(client_id) > MAX_USER_NAME_LENGTH:
        raise InvalidClientError(challenge=False)
    return client_id, assertion


def _unverified_issuer(assertion: str) -> str:
    """The iss claim of an assertion, read without verifying it: only to name the client whose
    keys then verify it ("" when there is none)."""
    try:
        payload = assertion.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error, RecursionError):
        return ""
    issuer = claims.get("iss") if isinstance(claims, dict) else None
    return issuer if isinstance(issuer, str) else ""


def _render(token: AccessToken) -> dict[str, Any]:
    """§5.1's successful response."""
    return {
        "access_token": token.token,
        "token_type": "Bearer",
        "expires_in": token.expires_in,
        "scope": token.scope,
    }


def client_credentials(form: dict[str, str], authorization: Sequence[str]) -> tuple[str, str]:
    """(client_id, client_secret) of a form request: by HTTP Basic or form fields, never both
    (the token and introspection endpoints)."""
    return _client(form, _basic(authorization) if authorization else None)


def _client(form: dict[str, str], basic: tuple[str, str] | None) -> tuple[str, str]:
    """(client_id, client_secret) from exactly one of the two methods."""
    if basic is not None:
        if "client_secret" in form or form.get("client_id", basic[0]) != basic[0]:
            raise InvalidRequest("send client credentials by one method only")
        return basic
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    if not client_id or client_secret is None:
        raise InvalidClientError(challenge=False, description="client authentication is required")
    return client_id, client_secret


def _basic(values: Sequence[str]) -> tuple[str, str]:
    """RFC 7617 Basic credentials, each part form-encoded as RFC 6749 §2.3.1 says."""
    scheme, _, encoded = values[0].strip().partition(" ")
    if len(values) != 1 or scheme.lower() != "basic" or len(encoded) > MAX_BASIC_LENGTH:
        raise InvalidClientError(challenge=True)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClientError(challenge=True) from None
    client_id, colon, client_secret = decoded.partition(":")
    if not colon:
        raise InvalidClientError(challenge=True)
    return unquote_plus(client_id), unquote_plus(client_secret)


def _scope(requested: str | None) -> str:
    if requested is not None and len(requested) > MAX_SCOPE_LENGTH:
        raise InvalidScope(f"the scope must be at most {MAX_SCOPE_LENGTH} characters")
    if requested is None or not requested.strip():
        return DEFAULT_SCOPE
    scopes = requested.split()
    if not all(_supported(s) for s in scopes):
        raise InvalidScope(f"supported scopes: {' '.join((*SUPPORTED_SCOPES, *PROJECT_SCOPE_PATTERNS))}")
    return " ".join(dict.fromkeys(scopes))


def _supported(scope: str) -> bool:
    return (
        scope in SUPPORTED_SCOPES
        or bool(ORGANISATION_SCOPE.fullmatch(scope))
        or project_scopes.is_project_scope(scope)
    )


class Discovery:
    """The OpenID Provider Metadata subset a client-credentials client reads, at
    /.well-known/openid-configuration and, as RFC 8414 names it, at
    /.well-known/oauth-authorization-server: one document at both.

    Clients send their secrets to the token endpoint this names, so it is never taken from the
    request unchecked: it is MS_ISSUER when set, else the address the request reached if that is
    one of the addresses the service listens on (`allow`), else the first of those. The scheme is
    https when the service serves TLS, else http (a proxy that terminates TLS in front needs
    MS_ISSUER).
    """

    def __init__(self, issuer: str | None, scheme: str = "http") -> None:
        self._issuer = issuer
        self._scheme = scheme
        self._hosts: list[str] = []

    def allow(self, address: str) -> None:
        """An address (host:port) the service listens on, by which clients may find the token
        endpoint; a loopback one by the name localhost too."""
        host, _, port = address.rpartition(":")
        names = [host, "localhost"] if host in ("127.0.0.1", "::1", "[::1]") else [host]
        self._hosts += [f"{name}:{port}" for name in names if f"{name}:{port}" not in self._hosts]

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await respond_json(send, 405, {"error": "invalid_request", "error_description": "use GET"})
            return
        issuer = self.issuer_of(scope)
        await respond_json(
            send,
            200,
            {
                "issuer": issuer,
                "token_endpoint": issuer + TOKEN_PATH,
                "token_endpoint_auth_methods_supported": AUTH_METHODS,
                "token_endpoint_auth_signing_alg_values_supported": sorted(ALGORITHMS),
                "grant_types_supported": GRANT_TYPES,
                # RFC 7662: API applications introspect tokens (introspection_endpoint.py).
                "introspection_endpoint": issuer + INTROSPECT_PATH,
                "introspection_endpoint_auth_methods_supported": INTROSPECTION_AUTH_METHODS,
                "introspection_endpoint_auth_signing_alg_values_supported": sorted(ALGORITHMS),
                # The keys that verify JWT access tokens (JwksEndpoint).
                "jwks_uri": issuer + KEYS_PATH,
                # RFC 7009: a client revokes the tokens it holds (token_revocation_endpoint.py).
                "revocation_endpoint": issuer + REVOCATION_PATH,
                "revocation_endpoint_auth_methods_supported": REVOCATION_AUTH_METHODS,
                "revocation_endpoint_auth_signing_alg_values_supported": sorted(ALGORITHMS),
                # The scopes a client may send as they are, then those that name a project or a
                # role, as patterns (listing the projects would tell anyone their ids).
                "scopes_supported": [*SUPPORTED_SCOPES, *PROJECT_SCOPE_PATTERNS],
                "response_types_supported": ["token"],
                "subject_types_supported": SUBJECT_TYPES,
                "id_token_signing_alg_values_supported": ID_TOKEN_SIGNING_ALGS,
            },
            [("cache-control", "public, max-age=3600")],
        )

    def issuers(self) -> list[str]:
        """Every issuer this document may give: what an assertion's aud may name."""
        if self._issuer:
            return [self._issuer]
        return [f"{self._scheme}://{host}" for host in self._hosts]

    def issuer_of(self, scope: dict[str, Any]) -> str:
        """The issuer as a request to scope's address names it (the class's docstring says how)."""
        return self._issuer or self._origin(first(header_lists(scope), "host"))

    def _origin(self, host: str) -> str:
        host = host.strip().lower()
        return f"{self._scheme}://{host if host in self._hosts else self._hosts[0]}"


class JwksEndpoint:
    """GET /oauth/v2/keys: the JWKS (RFC 7517 §5) of the signing keys of JWT access tokens, public
    halves only: the key that signs, the next one (published MS_JWKS_CACHE_TTL and more before it
    signs) and the ones before (until every token they signed has expired). A resource server may
    cache it for MS_JWKS_CACHE_TTL, which the schedule of the keys counts on (domain/signing_keys.py):
    Cache-Control says so. The same document on every process of one store."""

    def __init__(self, keyring: KeyRing) -> None:
        self._keyring = keyring
        self._cache_control = f"public, max-age={int(keyring.times.jwks_ttl.total_seconds())}"

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await respond_json(
                send,
                405,
                {"error": "invalid_request", "error_description": "use GET"},
                [("allow", "GET, HEAD")],
            )
            return
        try:
            body = await self._keyring.jwks()
        except StoreError:
            await respond_json(
                send,
                503,
                {"error": "temporarily_unavailable", "error_description": "the keys cannot be read now"},
                [("retry-after", "1")],
            )
            return
        headers = [("content-type", "application/json"), ("cache-control", self._cache_control)]
        await respond(send, 200, headers, body)
