"""The JWT profile grant (RFC 7523 §2.1) and private_key_jwt (§2.2) at the token endpoint, directly
and through Envoy, on both stores: what is accepted, and that every refusal is the one
invalid_grant (or invalid_client) answer; authlib's clients; a replay refused by a second process
on the same PostgreSQL database; and a fuzz of assertions."""

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import authlib.deprecate  # noqa: F401 - installs an "always" filter of its own when first imported
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from joserfc import jws, jwt
from joserfc.jwk import RSAKey
from machinesecrets.v1 import audit_service_pb2 as audit_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.assertions import CLOCK_SKEW, MAX_ASSERTION_LIFETIME
from server.limits import MAX_ASSERTION_LENGTH
from tests import postgres
from tests.api import GrpcApi
from tests.processes import ServerProcess
from tests.service import Running
from tests.world import World, unique_name

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.oauth2.rfc7523 import PrivateKeyJWT

TOKEN_PATH = "/oauth/v2/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFUSED = {"error": "invalid_grant", "error_description": "the assertion is invalid"}
# A refusal's status is its own; the limits on failures are not this file's subject.
NO_LIMITS = {"MS_SOURCE_FAILURE_LIMIT": "100000", "MS_CLIENT_FAILURE_LIMIT": "100000"}


@dataclass
class KeyHolder:
    user_id: str
    user_name: str
    key_id: str
    key: RSAKey


async def key_holder(world: World, roles: list[str] | None = None) -> KeyHolder:
    user_name = unique_name("jwt-bot")
    user_id = await world.machine_user(user_name=user_name)
    if roles:
        await world.grant(user_id, roles)
    added = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id))
    content = json.loads(added.key_content)
    return KeyHolder(user_id, user_name, added.key_id, RSAKey.import_key(content["key"]))


def signed(
    holder: KeyHolder, audience: str | list[str], header: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body: dict[str, Any] = {
        "iss": holder.user_id,
        "sub": holder.user_id,
        "aud": audience,
        "iat": now,
        "exp": now + 600,
        "jti": str(uuid.uuid4()),
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": holder.key_id, **(header or {})}, body, holder.key)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """The algorithm-confusion attack: HMAC keyed with the public key's PEM."""
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(mac)


async def grant(base: str, assertion: str, **form: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            base + TOKEN_PATH, data={"grant_type": JWT_BEARER, "assertion": assertion, **form}
        )


def endpoints(running: Running) -> dict[str, str]:
    return {
        "direct": f"http://127.0.0.1:{running.service.http_port}",
        "envoy": f"http://127.0.0.1:{running.service.envoy_port}",
    }


@pytest.fixture
async def admin(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


@pytest.mark.parametrize("endpoint", ["direct", "envoy"])
async def test_an_assertion_buys_a_token_that_calls_the_api(
    admin: World, running: Running, endpoint: str
) -> None:
    holder = await key_holder(admin, ["ORG_USER_MANAGER"])
    base = endpoints(running)[endpoint]
    answer = await grant(
        base, signed(holder, base), scope="openid urn:zitadel:iam:org:project:id:zitadel:aud"
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()
    assert set(token) == {"access_token", "token_type", "expires_in", "scope"}
    assert token["scope"] == "openid urn:zitadel:iam:org:project:id:zitadel:aud"
    read = user_pb.GetUserByIDRequest(user_id=holder.user_id)
    assert (await admin.call("GetUserByID", read, token=token["access_token"])).user.id == holder.user_id
    # The audit names the key as the token's actor.
    listed = audit_pb.ListUserEventsRequest(user_id=holder.user_id, page_size=100)
    events = (await admin.call("ListUserEvents", listed)).events
    [issued] = [e for e in events if e.event_type == "token.access.key.added"]
    assert (issued.actor.credential_kind, issued.actor.credential_id) == ("machine_key", holder.key_id)
    assert "token_hash" not in issued.payload.fields
    [added] = [e for e in events if e.event_type == "user.machine.key.added"]
    assert "public_key" not in added.payload.fields  # key material is not shown by the audit


@pytest.mark.parametrize("endpoint", ["direct", "envoy"])
async def test_every_refusal_is_the_same_invalid_grant(admin: World, running: Running, endpoint: str) -> None:
    holder = await key_holder(admin)
    other = await key_holder(admin)
    base = endpoints(running)[endpoint]
    now = int(time.time())
    public_pem = holder.key.as_pem(private=False)
    removed = await key_holder(admin)
    await admin.call("RemoveKey", user_pb.RemoveKeyRequest(user_id=removed.user_id, key_id=removed.key_id))
    replayed = signed(holder, base)
    assert (await grant(base, replayed)).status_code == 200
    skew, longest = int(CLOCK_SKEW.total_seconds()), int(MAX_ASSERTION_LIFETIME.total_seconds())
    header, payload, _ = signed(holder, base).split(".")
    unsigned_header = base64.urlsafe_b64encode(b'{"alg":"none","kid":"%s"}' % holder.key_id.encode())
    cases = {
        "unknown key": signed(holder, base, header={"kid": "123"}),
        "no key id": jwt.encode({"alg": "RS256"}, {"iss": holder.user_id}, holder.key),
        "a removed key": signed(removed, base),
        "signed by another key": jwt.encode(
            {"alg": "RS256", "kid": holder.key_id},
            {"iss": holder.user_id, "sub": holder.user_id, "aud": base, "iat": now, "exp": now + 60},
            other.key,
        ),
        "another user's key id": signed(other, base, iss=holder.user_id, sub=holder.user_id),
        "wrong audience": signed(holder, "https://elsewhere.example"),
        "a replay": replayed,
        "alg none": unsigned_header.decode().rstrip("=") + "." + payload + ".",
        # joserfc refuses to make an HMAC key of a public key: the attacker's JWS is made by hand.
        "ES256 named for an RSA key": hs256_with(
            public_pem,
            {"alg": "ES256", "kid": holder.key_id},
            {"iss": holder.user_id, "sub": holder.user_id, "aud": base, "iat": now, "exp": now + 60},
        ),
        "HS256 with the public key": hs256_with(
            public_pem,
            {"alg": "HS256", "kid": holder.key_id},
            {"iss": holder.user_id, "sub": holder.user_id, "aud": base, "iat": now, "exp": now + 60},
        ),
        "expired": signed(holder, base, iat=now - 2000, exp=now - skew - 1),
        "valid too long": signed(holder, base, exp=now + longest + skew + 10),
        "no iat": signed(holder, base, iat=None),
        "no exp": signed(holder, base, exp=None),
        "iat in the future": signed(holder, base, iat=now + skew + 10),
        "nbf in the future": signed(holder, base, nbf=now + skew + 10),
        "iss is not sub": signed(holder, base, sub=other.user_id),
        "iss is the user name": signed(holder, base, iss=holder.user_name, sub=holder.user_name),
        "exp is text": signed(holder, base, exp=str(now + 60)),
        "truncated signature": signed(holder, base)[:-10],
        "padded signature": signed(holder, base) + "AAAA",
        "header only": header,
        "garbage": "not.a.jwt",
        "too long": signed(holder, base, padding="x" * MAX_ASSERTION_LENGTH),
    }
    for what, assertion in cases.items():
        answer = await grant(base, assertion)
        assert (answer.status_code, answer.json()) == (400, REFUSED), what
        assert answer.headers["cache-control"] == "no-store", what
    # A user switched off: its key buys nothing.
    await admin.call("DeactivateUser", user_pb.DeactivateUserRequest(user_id=holder.user_id))
    assert (await grant(base, signed(holder, base))).json() == REFUSED
    assert (await grant(base, "")).json()["error"] == "invalid_request"


async def test_an_expired_key_is_refused(admin: World, running: Running) -> None:
    user_id = await admin.machine_user()
    soon = user_pb.AddKeyRequest(user_id=user_id)
    soon.expiration_date.FromSeconds(int(time.time()) + 2)
    added = await admin.call("AddKey", soon)
    holder = KeyHolder(user_id, "", added.key_id, RSAKey.import_key(json.loads(added.key_content)["key"]))
    base = endpoints(running)["direct"]
    answer = await grant(base, signed(holder, base))
    assert answer.status_code == 200
    assert answer.json()["expires_in"] <= 2  # a token never outlives its key
    await asyncio.sleep(2.5)
    assert (await grant(base, signed(holder, base))).json() == REFUSED
    [listed] = (await admin.call("ListKeys", user_pb.ListKeysRequest(user_id=user_id))).keys
    assert listed.state == user_pb.KEY_STATE_EXPIRED


async def test_authlibs_jwt_bearer_grant_and_private_key_jwt(admin: World, running: Running) -> None:
    holder = await key_holder(admin, ["ORG_USER_MANAGER"])
    base = endpoints(running)["envoy"]
    async with httpx.AsyncClient() as http:
        discovery = (await http.get(base + "/.well-known/openid-configuration")).json()
    assert "private_key_jwt" in discovery["token_endpoint_auth_methods_supported"]
    assert JWT_BEARER in discovery["grant_types_supported"]
    token_endpoint = discovery["token_endpoint"]
    # The JWT bearer grant, its assertion made by authlib's own JWTBearerGrant.sign.
    from authlib.oauth2.rfc7523 import JWTBearerGrant

    assertion = JWTBearerGrant.sign(
        holder.key,
        issuer=holder.user_id,
        audience=discovery["issuer"],
        subject=holder.user_id,
        header={"alg": "RS256", "kid": holder.key_id},
    )
    async with AsyncOAuth2Client(scope="api") as oauth:
        token = await oauth.fetch_token(
            token_endpoint,
            grant_type=JWT_BEARER,
            assertion=assertion.decode() if isinstance(assertion, bytes) else assertion,
        )
    assert token["token_type"] == "Bearer"
    # private_key_jwt on the client-credentials grant: the client id is the user name.
    private_pem = holder.key.as_pem(private=True).decode()
    async with AsyncOAuth2Client(
        client_id=holder.user_name,
        client_secret=private_pem,
        token_endpoint_auth_method="private_key_jwt",
        scope="api",
    ) as oauth:
        oauth.register_client_auth_method(PrivateKeyJWT(token_endpoint, headers={"kid": holder.key_id}))
        token = await oauth.fetch_token(token_endpoint, grant_type="client_credentials")
    read = user_pb.GetUserByIDRequest(user_id=holder.user_id)
    assert (await admin.call("GetUserByID", read, token=token["access_token"])).user.id == holder.user_id
    # Without a kid, the client's keys are tried; a key of another client never passes.
    other = await key_holder(admin)
    async with AsyncOAuth2Client(
        client_id=holder.user_name,
        client_secret=other.key.as_pem(private=True).decode(),
        token_endpoint_auth_method="private_key_jwt",
    ) as oauth:
        oauth.register_client_auth_method(PrivateKeyJWT(token_endpoint))
        with pytest.raises(Exception, match="invalid_client"):
            await oauth.fetch_token(token_endpoint, grant_type="client_credentials")


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_replay_is_refused_by_another_process_on_the_same_database(
    tmp_path: Path, backend: str
) -> None:
    with postgres.throwaway_database() as url:
        processes = [await ServerProcess.start(url, tmp_path, **NO_LIMITS) for _ in range(2)]
        try:
            api = GrpcApi("grpc", f"127.0.0.1:{processes[0].grpc_port}")
            world = await World.create(api, (tmp_path / "admin.pat").read_text().strip())
            holder = await key_holder(world)
            await api.close()
            bases = [f"http://127.0.0.1:{p.http_port}" for p in processes]
            assertion = signed(holder, bases)  # either process is its audience
            first, second = await asyncio.gather(grant(bases[0], assertion), grant(bases[1], assertion))
            assert sorted([first.status_code, second.status_code]) == [200, 400], (first.text, second.text)
            for base in bases:
                assert (await grant(base, assertion)).json() == REFUSED
        finally:
            for process in processes:
                await process.stop()


@st.composite
def hostile_assertions(draw: st.DrawFn, holder: KeyHolder, good: str) -> str:
    """An assertion that was used already, then one thing changed (or nothing: a replay): its
    header, a claim, its encoding, its signature cut or padded, or its parts swapped."""
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    texts = st.text(max_size=20) | st.integers() | st.none() | st.booleans() | st.floats(allow_nan=True)

    def b64(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    choice = draw(st.integers(0, 6))
    if choice == 0:  # a header changed, re-encoded, the signature kept
        name = draw(st.sampled_from(["alg", "kid", "typ", "crit", "jku", "x5u", "jwk"]))
        changed = {"alg": "RS256", "kid": holder.key_id, name: draw(texts)}
        return b64(changed) + "." + payload + "." + signature
    if choice == 1:  # a claim changed, the signature kept
        name = draw(st.sampled_from(["iss", "sub", "aud", "exp", "iat", "nbf", "jti"]))
        return header + "." + b64({**claims, name: draw(texts)}) + "." + signature
    if choice == 2:  # the signature cut or padded
        cut = draw(st.integers(0, len(signature)))
        pad = draw(
            st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=8)
        )
        return header + "." + payload + "." + signature[:cut] + pad
    if choice == 3:  # an encoding changed: standard base64, padding, spaces
        part = draw(st.sampled_from(["header", "payload", "signature"]))
        pieces = {"header": header, "payload": payload, "signature": signature}
        raw = base64.urlsafe_b64decode(pieces[part] + "==")
        pieces[part] = draw(
            st.sampled_from(
                [
                    base64.b64encode(raw).decode(),
                    pieces[part] + "==",
                    " " + pieces[part],
                    pieces[part].upper(),
                ]
            )
        )
        return ".".join(pieces.values())
    if choice == 4:  # parts swapped, dropped or repeated
        parts = draw(st.permutations([header, payload, signature]))
        return ".".join(parts[: draw(st.integers(1, 5))])
    if choice == 5:  # a JWS JSON serialisation, or another document
        return draw(st.sampled_from([json.dumps({"payload": payload, "signature": signature}), "{}", "null"]))
    return draw(st.text(max_size=200))


@pytest.fixture
async def fuzz_target(admin: World, running: Running) -> tuple[KeyHolder, str]:
    return await key_holder(admin), endpoints(running)["direct"]


async def test_a_fuzz_of_assertions_accepts_nothing_and_never_fails(
    fuzz_target: tuple[KeyHolder, str],
) -> None:
    holder, base = fuzz_target
    good = signed(holder, base)
    assert (await grant(base, good)).status_code == 200
    drawn: list[str] = []

    # Drawn first, then sent: hypothesis' given is synchronous, the client is not.
    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(hostile_assertions(holder, good))
    def draw(assertion: str) -> None:
        drawn.append(assertion)

    draw()
    async with httpx.AsyncClient(base_url=base) as http:
        for assertion in drawn:
            answer = await http.post(TOKEN_PATH, data={"grant_type": JWT_BEARER, "assertion": assertion})
            # Never a token, never a 500: the one refusal (an empty assertion: a malformed request).
            assert answer.status_code == 400, (assertion, answer.status_code, answer.text)
            assert answer.json()["error"] in ("invalid_grant", "invalid_request"), assertion
    # A new assertion still works: the fuzz refused what was wrong, not everything.
    assert (await grant(base, signed(holder, base))).status_code == 200
    # A JWS signed well over a payload that is no JSON object is refused too.
    odd = jws.serialize_compact({"alg": "RS256", "kid": holder.key_id}, b"[1,2]", holder.key)
    assert (await grant(base, odd)).json() == REFUSED
