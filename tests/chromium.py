"""What the browser tests share: Debian's Chromium, an npm package built from its lock file, and a
node script (playwright-core) that drives the browser and prints what it saw as JSON.

Without Chromium or npm the tests are skipped with the reason, unless MS_REQUIRE_BROWSER=1 (as CI
sets it), where a missing tool fails them.
"""

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def require_tools(what: str) -> None:
    """Skip (or, where the browser tests are required, fail) when Chromium, node or npm is missing."""
    if not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (make test installs Debian's chromium)"
    elif shutil.which("npm") is None or shutil.which("node") is None:
        reason = "no node/npm to build the page"
    else:
        return
    if os.environ.get("MS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{what} required here: {reason}")
    pytest.skip(reason)


def npm_build(folder: Path, *build_args: str) -> None:
    """`npm ci` then `npm run build` in folder. A clean run says nothing to worry about: no engine
    the packages refuse, no unapproved install script (the versions are pinned to ones that support
    the Node that is installed)."""
    build = ["npm", "run", "build", *(["--", *build_args] if build_args else [])]
    for command in (["npm", "ci", "--no-audit", "--no-fund"], build):
        done = subprocess.run(command, cwd=folder, check=True, capture_output=True, text=True, timeout=300)
        assert "npm warn" not in done.stdout + done.stderr, done.stdout + done.stderr


async def drive(folder: Path, args: list[str], timeout_s: float, env: dict[str, str] | None = None) -> Any:
    """What `node drive.mjs ARGS` in folder printed, as JSON; a failure shows the end of its stderr."""
    # In a thread: the service under test runs in this very event loop.
    result = await asyncio.to_thread(
        subprocess.run,
        ["node", "drive.mjs", *args],
        cwd=folder, capture_output=True, text=True, timeout=timeout_s, check=False,
        env={**os.environ, "CHROMIUM": CHROMIUM, **(env or {})},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)
