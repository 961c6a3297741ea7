"""Clients written for ZITADEL, unmodified, against the service (tests/clients/): ZITADEL's official
Python SDK (PyPI zitadel-client) through Envoy, in its own virtual environment, and ZITADEL's Node
client (@zitadel/client, connect-es generated from ZITADEL's protos) over native gRPC and grpc-web."""

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
    assert seen["key_file_fields"] == ["key", "keyId", "type", "userId"]
    assert seen["generated_key_works"] is True
    assert seen["uploaded_key_content"] == ""
    assert seen["uploaded_key_works"] is True
    assert seen["listed"] == seen["added"]
    assert seen["removed_key"] != "accepted"


NODE_CLIENT = ROOT / "tests" / "clients" / "node"


async def test_zitadels_node_client_over_grpc_and_grpc_web(running: Running) -> None:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("no node and npm: `make test` installs them")
    if not (NODE_CLIENT / "node_modules").exists():
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
