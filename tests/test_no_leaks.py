"""Secrets stay where they belong: a full scenario at DEBUG level, then every log line, every error
message the clients saw and every byte of the store are searched for every secret and token the
service issued."""

import base64
import json
import logging
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.app.v1 import app_pb2
from zitadel.management.v1 import management_pb2 as mgmt

from server.domain.credentials import token_hash
from server.logs import TEXT_FORMAT, JsonFormatter
from tests.api import ApiError
from tests.service import Running
from tests.world import World, unique_name

M = "ManagementService."


async def test_no_secret_or_token_leaves_its_place(
    world: World, running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    issued: list[str] = [world.admin_token]
    errors: list[str] = []
    user_id = await world.machine_user()
    await world.grant(user_id, ["ORG_USER_MANAGER"])
    for _ in range(3):  # rotations
        answer = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
        issued.append(answer.client_secret)
    client_id, secret = answer.client_id, answer.client_secret
    created = await world.call("CreateSecret", user_pb.CreateSecretRequest(user_id=user_id, description="d"))
    rotate = user_pb.RotateSecretRequest(user_id=user_id)
    rotate.grace_period.FromSeconds(60)
    rotated = await world.call("RotateSecret", rotate)
    issued += [created.client_secret, rotated.client_secret]
    listed = await world.call("ListSecrets", user_pb.ListSecretsRequest(user_id=user_id))
    errors.append(str(listed))  # an answer too: it must hold no secret
    pat = await world.token_for(user_id)
    issued.append(pat)
    base = f"http://127.0.0.1:{running.service.http_port}"
    async with httpx.AsyncClient() as http:
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        token_answer = await http.post(
            base + "/oauth/v2/token",
            data={"grant_type": "client_credentials"},
            headers={"authorization": f"Basic {basic}"},
        )
        access = token_answer.json()["access_token"]
        issued.append(access)
        for wrong in (
            issued[1],
            secret[:-1] + ("y" if secret.endswith("x") else "x"),
            secret + "x" * 80,
        ):  # an old, a near and a long secret
            failed = await http.post(
                base + "/oauth/v2/token",
                data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": wrong},
            )
            errors.append(failed.text)
        # A leaked secret, reported: revoked, and nothing of it logged or stored.
        reported = await http.post(
            base + "/secrets/revoke", json={"secrets": [created.client_secret, "msk_x"]}
        )
        errors.append(reported.text)
    # A machine key: its private key (a line of its PEM), the assertions it signs, and the token
    # they buy are kept nowhere; a refused assertion is not logged either.
    key = await world.call("AddKey", user_pb.AddKeyRequest(user_id=user_id))
    key_file = json.loads(key.key_content)
    private = RSAKey.import_key(key_file["key"])
    now = int(time.time())
    claims = {"iss": user_id, "sub": user_id, "aud": base, "iat": now, "exp": now + 600}
    assertion = jwt.encode({"alg": "RS256", "kid": key.key_id}, claims, private)
    refused = jwt.encode({"alg": "RS256", "kid": key.key_id}, {**claims, "aud": "elsewhere"}, private)
    async with httpx.AsyncClient() as http:
        bearer = "urn:ietf:params:oauth:grant-type:jwt-bearer"
        by_key = await http.post(
            base + "/oauth/v2/token", data={"grant_type": bearer, "assertion": assertion}
        )
        key_access = by_key.json()["access_token"]
        errors.append(
            (
                await http.post(base + "/oauth/v2/token", data={"grant_type": bearer, "assertion": refused})
            ).text
        )
    await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=key_access)
    issued += [key_file["key"].splitlines()[5], assertion, refused, key_access]
    # A workload's platform token (issue 34, an issuer's inline keys: nothing fetched): neither it,
    # a refused one, nor the access token it buys is kept.
    platform = RSAKey.generate_key(2048, parameters={"kid": "k8s"})
    cluster = f"https://{unique_name('cluster')}.example.com"
    jwks = json.dumps({"keys": [platform.as_dict(private=False)]})
    with_keys = org_pb.AddTrustedIssuerRequest(issuer=cluster, jwks=jwks)
    await world.call("AddTrustedIssuer", with_keys)
    federated = user_pb.AddFederatedCredentialRequest(
        user_id=user_id, issuer=cluster, subject="pod", audience="ms"
    )
    await world.call("AddFederatedCredential", federated)
    workload = {"iss": cluster, "sub": "pod", "aud": "ms", "iat": now, "exp": now + 600}
    platform_token = jwt.encode({"alg": "RS256", "kid": "k8s"}, workload, platform)
    wrong_platform = jwt.encode({"alg": "RS256", "kid": "k8s"}, {**workload, "sub": "other"}, platform)
    async with httpx.AsyncClient() as http:
        exchanged = []
        for token in (platform_token, wrong_platform):
            form = {
                "grant_type": "client_credentials",
                "client_id": client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": token,
            }
            exchanged.append(await http.post(base + "/oauth/v2/token", data=form))
    assert exchanged[0].status_code == 200, exchanged[0].text
    federated_access = exchanged[0].json()["access_token"]
    errors.append(exchanged[1].text)
    await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=federated_access)
    issued += [platform_token, wrong_platform, federated_access]
    # An API application's key (private_key_jwt at introspection): its private key, the assertions
    # it signs (accepted and refused), and the token they introspect are kept nowhere.
    project = await world.call(M + "AddProject", mgmt.AddProjectRequest(name=unique_name("leaks")))
    app = await world.call(
        M + "AddAPIApp",
        mgmt.AddAPIAppRequest(
            project_id=project.id, name="rs", auth_method_type=app_pb2.API_AUTH_METHOD_TYPE_PRIVATE_KEY_JWT
        ),
    )
    app_key = await world.call(
        M + "AddAppKey", mgmt.AddAppKeyRequest(project_id=project.id, app_id=app.app_id)
    )
    app_key_file = json.loads(app_key.key_details)
    app_private = RSAKey.import_key(app_key_file["key"])
    app_claims = {"iss": app.client_id, "sub": app.client_id, "aud": base, "iat": now, "exp": now + 600}
    app_assertion = jwt.encode({"alg": "RS256", "kid": app_key.id}, app_claims, app_private)
    app_refused = jwt.encode({"alg": "RS256", "kid": app_key.id}, {**app_claims, "aud": "x"}, app_private)
    async with httpx.AsyncClient() as http:
        for client_assertion in (app_assertion, app_refused):
            answer = await http.post(
                base + "/oauth/v2/introspect",
                data={
                    "token": access,
                    "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    "client_assertion": client_assertion,
                },
            )
            errors.append(answer.text if answer.status_code != 200 else "")
    issued += [app_key_file["key"].splitlines()[5], app_assertion, app_refused]
    for token in (access, pat, access + "x", "Bearer " + secret):  # used well, and badly
        try:
            await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
        except ApiError as error:
            errors.append(f"{error.message} {error.reason} {error.metadata} {error.violations}")
    for bad_id in (secret, access):  # secrets where ids belong
        with pytest.raises(ApiError) as caught:
            await world.call("AddSecret", user_pb.AddSecretRequest(user_id=bad_id))
        errors.append(f"{caught.value.message} {caught.value.violations}")
    # Nor their hashes: the bcrypt hashes the store keeps, and the SHA-256 of each token.
    hashes = [stored.hash for stored in await running.service.store.secrets(user_id)]
    hashes += [token_hash(token) for token in (world.admin_token, pat, access, key_access, federated_access)]
    await world.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user_id))

    # Everything logged in this process but by the test's own HTTP client (which logs the URLs it
    # calls, where this test put a secret on purpose).
    # Each record as both of the service's formats write it (MS_LOG_FORMAT): every field of it.
    service_records = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
    formats = (logging.Formatter(TEXT_FORMAT, defaults={"request_id": "-"}), JsonFormatter())
    logs = "\n".join(f.format(r) for r in service_records for f in formats)
    assert "AddSecret" in logs  # the log was captured at all
    store = running.raw_store()
    written = files_written(running)
    assert any(path.name == "envoy.log" for path in written)  # Envoy's log is searched too
    for value in issued:
        assert value not in logs
        assert value not in "\n".join(errors)
        assert value.encode() not in store
        for path, content in written.items():
            # The admin's token file holds the admin's token: that is what it is for.
            if not (path == Path(running.config.admin_pat_file) and value == world.admin_token):
                assert value.encode() not in content, path
    # The store keeps the hashes (searched above for what it must not keep); no other file may.
    besides_the_store = {p: c for p, c in written.items() if not p.name.startswith("ms.db")}
    for hashed in hashes:
        assert hashed not in logs
        assert hashed not in "\n".join(errors)
        for path, content in besides_the_store.items():
            assert hashed.encode() not in content, path


def files_written(running: Running) -> dict[Path, bytes]:
    """Every file the service writes: in its folder (the store, the admin's token file) and in
    Envoy's (its configuration and its log)."""
    folders = [Path(running.config.admin_pat_file).parent]
    if running.service.envoy is not None:
        folders.append(running.service.envoy.folder)
    return {path: path.read_bytes() for folder in folders for path in folder.rglob("*") if path.is_file()}
