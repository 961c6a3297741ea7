"""Clients written for ZITADEL, unmodified, against the service (tests/clients/): ZITADEL's official
Python SDK (PyPI zitadel-client) through Envoy, in its own virtual environment, and ZITADEL's Node
client (@zitadel/client, connect-es generated from ZITADEL's protos) over native gRPC and grpc-web;
and key-based clients: the Python SDK's with_private_key, @zitadel/node's ServiceAccount and
openid-client 6 (tests/clients/node/machine_keys.mjs); and resource servers that introspect with an
application key file: passport-zitadel and @zitadel/node's Application (app_keys.mjs). Versions:
tests/clients/node/package.json."""

import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from server.domain.secret_format import SECRET_LENGTH
from tests.service import Running
from tests.world import unique_name

ROOT = Path(__file__).resolve().parent.parent
SDK_PYTHON = ROOT / ".venv-sdk" / "bin" / "python"


async def test_zitadels_python_sdk_runs_the_secret_lifecycle(running: Running) -> None:
    if not SDK_PYTHON.exists():
        pytest.fail("no .venv-sdk: `make test` makes it (ZITADEL's SDK in its own environment)")
    base = f"http://127.0.0.1:{running.service.envoy_port}"
    script = ROOT / "tests" / "clients" / "zitadel_sdk.py"
    # In a thread: the service runs on this test's event loop, and must go on answering.
    done = await asyncio.to_thread(
        subprocess.run,
        [str(SDK_PYTHON), str(script), base, running.admin_token, unique_name("s")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["has_secret"] is True
    assert seen["resource_owner"] == seen["org_id"]  # the organisation the request named
    assert seen["username"].startswith("sdk-bot-")
    assert seen["bot_created_username"] == seen["bot_created"]  # no username: the id, as in ZITADEL
    assert seen["old_secret"] != "accepted"
    assert seen["new_secret_works"] is True
    assert seen["deletion_date"] is True
    # As the SDK reports them: FAILED_PRECONDITION 400, NOT_FOUND 404, UNAUTHENTICATED 401.
    assert (seen["remove_again"], seen["unknown_user"], seen["bad_token"]) == (400, 404, 401)


async def test_zitadels_python_sdk_authenticates_with_machine_keys(running: Running, tmp_path: Path) -> None:
    """`Zitadel.with_private_key` (the JWT profile grant), with a key file from AddKey and with
    an uploaded public key, through Envoy."""
    if not SDK_PYTHON.exists():
        pytest.fail("no .venv-sdk: `make test` makes it (ZITADEL's SDK in its own environment)")
    base = f"http://127.0.0.1:{running.service.envoy_port}"
    script = ROOT / "tests" / "clients" / "zitadel_sdk_keys.py"
    done = await asyncio.to_thread(
        subprocess.run,
        [str(SDK_PYTHON), str(script), base, running.admin_token, unique_name("k"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["key_file_fields"] == ["expirationDate", "key", "keyId", "type", "userId"]
    assert seen["generated_key_works"] is True
    assert seen["uploaded_key_content"] == ""
    assert seen["uploaded_key_works"] is True
    assert seen["listed"] == seen["added"]
    assert seen["removed_key"] != "accepted"


NODE_CLIENT = ROOT / "tests" / "clients" / "node"


def node_clients_installed() -> bool:
    """Whether node_modules holds every package of package.json at its pinned version (a checkout
    that installed an older package.json has not)."""
    pinned = json.loads((NODE_CLIENT / "package.json").read_text())["dependencies"]
    for name, version in pinned.items():
        installed = NODE_CLIENT / "node_modules" / name / "package.json"
        if not installed.exists() or json.loads(installed.read_text())["version"] != version:
            return False
    return True


async def install_node_clients() -> None:
    """The Node clients, as package-lock.json pins them (npm ci, when node_modules does not hold
    them)."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("no node and npm: `make test` installs them")
    if not node_clients_installed():
        installed = await asyncio.to_thread(
            subprocess.run,
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_CLIENT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert installed.returncode == 0, installed.stderr[-3000:]


async def test_zitadels_node_client_over_grpc_and_grpc_web(running: Running) -> None:
    await install_node_clients()
    service = running.service
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "node",
            "zitadel_client.mjs",
            f"http://127.0.0.1:{service.grpc_port}",
            f"http://127.0.0.1:{service.http_port}",
            running.admin_token,
            unique_name("n"),
        ],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for transport in ("grpc", "grpc-web"):
        answer = seen[transport]
        assert answer["clientId"].startswith(f"node-{transport}-")
        lengths = (answer["secretLength"], answer["v2SecretLength"], answer["sequence"])
        assert lengths == (SECRET_LENGTH, SECRET_LENGTH, 2)  # the msk_ format, opaque to the client
        assert answer["hasSecret"] is True
        assert answer["username"] == answer["clientId"]
        assert answer["missing"] == 5  # NOT_FOUND, as connect-es reports it


async def test_node_key_clients_authenticate_with_machine_keys(running: Running) -> None:
    """@zitadel/node's ServiceAccount (a key file from AddMachineKey, its authenticate() and
    createServiceAccountInterceptor), and openid-client 6's PrivateKeyJwt client authentication
    and JWT profile grant (RS256 with the generated key, ES256 with an uploaded one), unmodified,
    through Envoy: one port for gRPC, discovery and the token endpoint, as ZITADEL serves them."""
    await install_node_clients()
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "node",
            "machine_keys.mjs",
            f"http://127.0.0.1:{running.service.envoy_port}",
            running.admin_token,
            unique_name("k"),
        ],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["keyFileFields"] == ["expirationDate", "key", "keyId", "type", "userId"]
    assert seen["serviceAccountToken"] is True, seen
    assert seen["interceptor"] is True, seen
    assert seen["privateKeyJwt"] == {"tokenType": "bearer", "works": True}, seen
    assert seen["jwtBearerRS256"] is True, seen
    assert seen["jwtBearerES256"] is True, seen


@pytest.mark.parametrize("endpoint", ["direct", "envoy"])
async def test_node_resource_servers_introspect_with_an_application_key(
    running: Running, endpoint: str
) -> None:
    """passport-zitadel's introspection strategy in its JWT-profile mode, and @zitadel/node's
    Application, unmodified, with a key file from AddAppKey (@zitadel/node's management client
    through Envoy); the OAuth endpoints on the HTTP port and through Envoy
    (tests/clients/node/app_keys.mjs)."""
    await install_node_clients()
    service = running.service
    authority = f"http://127.0.0.1:{service.http_port if endpoint == 'direct' else service.envoy_port}"
    done = await asyncio.to_thread(
        subprocess.run,
        [
            "node",
            "app_keys.mjs",
            f"http://127.0.0.1:{service.envoy_port}",
            authority,
            running.admin_token,
            unique_name("a"),
        ],
        cwd=NODE_CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["clientSecret"] == ""  # an application with private_key_jwt has none
    assert seen["keyFileFields"] == ["appId", "clientId", "key", "keyId", "type"]
    assert seen["keyFileIds"] is True
    assert len(seen["listed"]) == 1
    assert seen["got"] is True
    good = {"success": True, "sub": seen["userId"], "active": True}
    assert seen["passport"] == {
        "good": good,
        "again": good,
        "dead": {"success": False, "message": "Token is not active"},
    }, seen
    assert seen["application"] == {
        "status": 200,
        "active": True,
        "sub": seen["userId"],
        "aud": [seen["projectId"]],
    }, seen
    # Refused with 401 invalid_client: passport-zitadel's axios throws, and passport is told.
    assert "401" in seen["removed"].get("error", ""), seen
