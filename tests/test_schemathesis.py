"""schemathesis against a running service through Envoy, from the OpenAPI document it serves:
thousands of generated requests, no 5xx, and every answer as the document says (status code,
content type, body schema). Each operation documents only the statuses it can answer.

Three passes, each with the credentials its operations need, so that generated requests get past
authentication to what lies behind it:
- the RPCs, with the admin's bearer token;
- the token endpoint with a real client's secret by HTTP Basic (the credential check and the 200);
- the token endpoint with a wrong secret by HTTP Basic (invalid_client, and the failure limit's 429
  once the guesses add up).
The service's own counters prove that each pass reached what it was for.
"""

import asyncio
import re
import sys
from pathlib import Path

import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.metrics import calls_by_code
from server.transport.oauth import TOKEN_PATH
from tests.api import GrpcApi
from tests.processes import ServerProcess, start_with_envoy
from tests.world import World

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# About 2,500 cases in three passes, two minutes on a busy 2-core machine (100 took four, the
# longest file of the suite).
EXAMPLES_PER_OPERATION = 50
OAUTH_PATHS = "^/(oauth/|\\.well-known/)"
# The endpoints whose failures count against the caller's address (MS_SOURCE_FAILURE_LIMIT): the
# token endpoint, and the revocation reports, each of which counts as a failure. Left out of the
# first pass, so that the signed pass starts from an address that has not failed: with the first
# pass's reports still in the window, every token request was refused 429 (seen on a fast machine).
COUNTED_PATHS = "^/(oauth/|\\.well-known/|secrets/revoke)"


async def schemathesis(port: int, *options: str) -> int:
    """Runs schemathesis with these options; the number of cases, all of which passed."""
    run = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
        *options, "--checks", CHECKS, "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--request-timeout", "10", "--no-color",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(run.communicate(), 600))[0].decode()
    assert run.returncode == 0, output[-4000:]
    found = re.search(r"(\d+) generated, (\d+) passed", output)
    assert found, output[-2000:]
    generated, passed = int(found[1]), int(found[2])
    assert generated == passed
    return generated


async def token_answers(process: ServerProcess) -> dict[str, int]:
    """How often the token endpoint answered each HTTP status, from the service's metrics."""
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{process.metrics_port}/metrics")).text
    return calls_by_code(text, TOKEN_PATH)


@pytest.mark.timeout(600)  # three schemathesis runs; a slow machine took over 300 s at 200 examples
async def test_generated_requests_through_envoy(tmp_path: Path) -> None:
    # Low failure limits, so that the guessing pass reaches the 429 within its cases.
    process, token = await start_with_envoy(
        tmp_path, MS_SOURCE_FAILURE_LIMIT="5", MS_CLIENT_FAILURE_LIMIT="3"
    )
    try:
        port = process.envoy_port
        api = GrpcApi("grpc", f"127.0.0.1:{process.grpc_port}")
        try:
            world = await World.create(api, token)
            issued = await world.call(
                "AddSecret", user_pb.AddSecretRequest(user_id=await world.machine_user())
            )
            playground = await world.org()
        finally:
            await api.close()
        # The first pass acts in an organisation of its own: it lists the users (GET /users) and
        # calls the other operations on what it found, so in the admin's organisation it revoked
        # the admin's own token, and the signed pass's secret, half-way through.
        rpcs = await schemathesis(
            port,
            "--header", f"Authorization: Bearer {token}",
            "--header", f"x-zitadel-orgid: {playground}",
            "--exclude-path-regex", COUNTED_PATHS,
        )  # fmt: skip
        assert rpcs >= 1000, f"only {rpcs} cases"
        signed = await schemathesis(
            port, "--auth", f"{issued.client_id}:{issued.client_secret}", "--include-path-regex", OAUTH_PATHS
        )
        assert (await token_answers(process)).get("200", 0) > 0, "no request got past the credential check"
        # Not the token revocation endpoint (RFC 7009): its guesses would spend the source's
        # allowance before the token endpoint's own 401s, which this pass is for (the signed pass
        # generates its requests; test_token_revocation.py its refusals and limits).
        guessed = await schemathesis(
            port,
            "--auth", "guesser:wrong",
            "--include-path-regex", COUNTED_PATHS,
            "--exclude-path-regex", "^/oauth/v2/revoke",
        )  # fmt: skip
        answers = await token_answers(process)
        assert answers.get("401", 0) > 0, answers
        assert answers.get("429", 0) > 0, answers
        print(f"schemathesis: {rpcs} + {signed} + {guessed} cases, all passed; token endpoint {answers}")
        assert process.alive  # still serving
    finally:
        await process.stop()
