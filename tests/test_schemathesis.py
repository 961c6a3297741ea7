"""schemathesis against a running service through Envoy, from the OpenAPI document it serves:
thousands of generated requests, no 5xx, and every answer as the document says (status code,
content type, body schema)."""

import asyncio
import re
import sys
from pathlib import Path

from tests.processes import start_with_envoy

CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
EXAMPLES_PER_OPERATION = 200


async def test_generated_requests_through_envoy(tmp_path: Path) -> None:
    process, token = await start_with_envoy(tmp_path)
    try:
        port = process.envoy_port
        run = await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "schemathesis"), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--header", f"Authorization: Bearer {token}", "--checks", CHECKS,
            "--max-examples", str(EXAMPLES_PER_OPERATION), "--request-timeout", "10", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        output = (await asyncio.wait_for(run.communicate(), 600))[0].decode()
        assert run.returncode == 0, output[-4000:]
        found = re.search(r"(\d+) generated, (\d+) passed", output)
        assert found, output[-2000:]
        generated, passed = int(found[1]), int(found[2])
        assert generated == passed
        assert generated >= 2000, f"only {generated} cases"
        print(f"schemathesis: {generated} cases, all passed")
        assert process.process.returncode is None  # still serving
    finally:
        await process.stop()
