"""The documentation's examples, run as they are written, in any order, against one service: each
block marked `<!-- example: NAME -->` in README.md and the pages of docs/ (`, after OTHER` runs it
in the same shell after OTHER, on any page). The curl blocks run through bash, the Python one with
the project's interpreter, from a folder whose `.data/admin.pat` is the service's admin token; only
the default ports are changed to the ones the test's service has. "As written" is README.md, then
the pages in the site's navigation order (mkdocs.yml)."""

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.service import Running, config_for, start_service

ROOT = Path(__file__).resolve().parent.parent
MARKED = re.compile(r"<!-- example: ([a-z-]+)(?:, after ([a-z-]+))?[^>]*-->\n```(sh|python)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Example:
    name: str
    language: str
    code: str


def pages() -> list[Path]:
    """README.md, then every page of the site in the order of its navigation."""
    _, _, navigation = (ROOT / "mkdocs.yml").read_text().partition("\nnav:\n")
    nav = re.findall(r"^ +- (?:[^:]+: )?([\w/-]+\.md)$", navigation, re.M)
    return [ROOT / "README.md", *(ROOT / "docs" / page for page in nav)]


def examples() -> list[Example]:
    """The marked examples of every page, each with what it runs after folded in."""
    found = [example for page in pages() for example in MARKED.findall(page.read_text())]
    runs = []
    for name, after, language, code in found:
        if after:
            continue  # run within the example it continues
        chain = [code]
        for other, other_after, _, more in found:
            if other_after == name:
                chain.append(more)
                name = f"{name}+{other}"
        runs.append(Example(name, language, "\n".join(chain)))
    return runs


def test_every_page_of_the_site_is_searched_for_examples() -> None:
    assert {p.name for p in pages()} == {"README.md"} | {p.name for p in (ROOT / "docs").glob("*.md")}


def test_the_pages_mark_their_examples() -> None:
    names = [e.name for e in examples()]
    assert names == [
        "json-curl",
        "client-credentials+rotation",
        "python",
        "introspection",
        "jwt",
        "introspection-with-a-key",
        "revocation",
        "audit",
    ]


async def run(example: Example, running: Running, folder: Path) -> str:
    service = running.service
    code = example.code.replace("127.0.0.1:8080", f"127.0.0.1:{service.envoy_port}")
    code = code.replace("127.0.0.1:50051", f"127.0.0.1:{service.grpc_port}")
    command = ["bash", "-euo", "pipefail", "-c", code]
    if example.language == "python":
        command = [sys.executable, "-c", code]
    done = await asyncio.create_subprocess_exec(
        *command, cwd=folder, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output = (await asyncio.wait_for(done.communicate(), 60))[0].decode()
    assert done.returncode == 0, f"{example.name}:\n{output}"
    return output


@pytest.mark.parametrize("order", ["as written", "reversed"])
async def test_every_example_runs_in_any_order_on_one_store(order: str, tmp_path: Path) -> None:
    running = await start_service(config_for(tmp_path / "service", envoy=True))
    try:
        folder = tmp_path / "shell"
        (folder / ".data").mkdir(parents=True)
        (folder / ".data" / "admin.pat").write_text(running.admin_token + "\n")
        ordered = examples() if order == "as written" else examples()[::-1]
        outputs = {example.name: await run(example, running, folder) for example in ordered}
    finally:
        await running.service.stop(0)
    # What each shows a reader, as its page says it will.
    assert '"clientId":"build-bot"' in outputs["json-curl"]
    assert '"userName":"deployer"' in outputs["client-credentials+rotation"]
    assert '"description":"deploy 2026-12"' in outputs["client-credentials+rotation"]
    assert outputs["revocation"].strip() == '{"received": 1}'
    introspected, revoked, after = json_values(outputs["introspection"])
    assert introspected["active"] is True
    assert (revoked, after) == ({}, {"active": False})
    assert introspected["username"] == "orders-client"
    assert list(introspected["urn:zitadel:iam:org:project:roles"]) == ["orders.read"]
    assert outputs["jwt"] == "billing-client True True\n"
    [by_key] = json_values(outputs["introspection-with-a-key"])
    assert (by_key["active"], by_key["username"]) == (True, "invoices-client")
    events, history, *stream = json_values(outputs["audit"])
    assert {e["eventType"] for e in events["events"]} == {"user.machine.added"}
    # The admin's history, newest first: its first token, and itself, made at the first start.
    assert [e["eventType"] for e in history["events"]] == ["user.pat.added", "user.machine.added"]
    assert [line["position"] for line in stream] == ["1", "2"]
    assert re.fullmatch(r"grpc-bot msk_[0-9A-Za-z]{61} 2\n", outputs["python"])


def json_values(text: str) -> list[Any]:
    """The JSON values one after the other in text (curl prints its answers back to back)."""
    decoder, values, at = json.JSONDecoder(), [], 0
    while at < len(text):
        if text[at].isspace():
            at += 1
            continue
        value, at = decoder.raw_decode(text, at)
        values.append(value)
    return values
