"""The web console (console/, built into server/console/): its build is the committed one, its
answers carry the headers that keep it to its own code, and a person can do the whole job with it
in a real browser.

The flow is console/drive.mjs: playwright-core driving Debian's Chromium against a real service,
through Envoy at 1280 and 390 px wide and through the service's own HTTP port at 1280. Screenshots of
every step go to SCREENSHOTS (build/console-screenshots/, not committed); the README shows two of
them, copied into console/screenshots/. Without Chromium or npm the tests are skipped with the
reason, unless MS_REQUIRE_BROWSER=1 (as CI sets it).
"""

import asyncio
import gzip
import json
import logging
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.transport.console import BUILD
from tests import chromium
from tests.service import Running, client, config_for, start_service

SOURCES = Path(__file__).resolve().parent.parent / "console"
SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "console-screenshots"
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}
# The console's Content-Security-Policy, directive by directive, written here (not read from the
# server): its own files and calls only, no inline script or style, no plugins, no <base>, no form
# posts, no framing.
POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "form-action": ["'none'"],
    "frame-ancestors": ["'none'"],
}


def policy_of(header: str) -> dict[str, list[str]]:
    """A Content-Security-Policy header's directives and their sources (CSP 3, 2.2: directives
    split on ";", names case-insensitive, a repeated directive ignored)."""
    directives: dict[str, list[str]] = {}
    for directive in header.split(";"):
        name, *sources = directive.split()
        directives.setdefault(name.lower(), sources)
    return directives


def assert_secured(headers: httpx.Headers, where: object) -> None:
    assert {k: headers.get(k) for k in SECURITY_HEADERS} == SECURITY_HEADERS, where
    assert policy_of(headers["content-security-policy"]) == POLICY, where


def test_the_policy_check_refuses_a_looser_policy() -> None:
    """What assert_secured would let through: not a script source more."""
    strict = "; ".join(f"{name} {' '.join(sources)}" for name, sources in POLICY.items())
    assert policy_of(strict) == POLICY
    assert policy_of(strict.replace("script-src 'self'", "script-src *")) != POLICY
    assert policy_of(strict + "; script-src 'unsafe-inline'") == POLICY  # ignored, as browsers do


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The console's npm packages installed, and a fresh build of its sources (in a folder of its own)."""
    chromium.require_tools("the console tests are")
    fresh = tmp_path_factory.mktemp("console-build")
    chromium.npm_build(SOURCES, str(fresh))
    return fresh


def test_the_committed_build_is_in_step_with_its_sources(tools: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}

    committed, fresh = files(BUILD), files(tools)
    assert sorted(committed) == sorted(fresh), "run `make console` and commit server/console/"
    stale = [name for name in fresh if committed[name] != fresh[name]]
    assert stale == [], (
        f"{stale} differ from a build of console/: run `make console` and commit server/console/"
    )


@pytest.fixture(scope="module")
async def console_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    running = await start_service(config_for(tmp_path_factory.mktemp("console"), envoy=True))
    yield running
    await running.service.stop(0)


def doors(running: Running) -> list[str]:
    service = running.service
    return [f"http://127.0.0.1:{service.envoy_port}", f"http://127.0.0.1:{service.http_port}"]


async def test_every_console_answer_carries_the_security_headers(console_service: Running) -> None:
    for door in doors(console_service):
        async with httpx.AsyncClient(base_url=door) as http:
            pages = {
                "/console/": "text/html; charset=utf-8",
                "/console/index.html": "text/html; charset=utf-8",
                "/console/console.js": "text/javascript; charset=utf-8",
                "/console/console.css": "text/css; charset=utf-8",
                "/console/icon.svg": "image/svg+xml",
            }
            for path, content_type in pages.items():
                answer = await http.get(path)
                assert answer.status_code == 200, (door, path)
                assert answer.headers["content-type"] == content_type
                assert (
                    answer.content == (BUILD / (path.removeprefix("/console/") or "index.html")).read_bytes()
                )
                assert_secured(answer.headers, (door, path))
                # Unchanged: a 304 without the body, still with the headers.
                again = await http.get(path, headers={"if-none-match": answer.headers["etag"]})
                assert (again.status_code, again.content) == (304, b"")
                assert_secured(again.headers, (door, path, 304))
            for path, code in (
                ("/console/nothing.js", 404),
                ("/console/src/main.ts", 404),
                ("/console", 308),
            ):
                answer = await http.get(path, follow_redirects=False)
                assert answer.status_code == code, (door, path)
                assert_secured(answer.headers, (door, path))
            assert (await http.get("/console", follow_redirects=False)).headers["location"] == "/console/"
            refused = await http.post("/console/", content=b"x")
            assert (refused.status_code, refused.headers["allow"]) == (405, "GET, HEAD")
            head = await http.head("/console/console.js", headers={"accept-encoding": "identity"})
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len((BUILD / "console.js").read_bytes()))
    # The page loads its code from files: no inline script the policy would have to allow.
    index = (BUILD / "index.html").read_text()
    assert re.findall(r"<script[^>]*>", index) == ['<script type="module" src="console.js">']
    assert "style=" not in index
    assert "<style" not in index


@dataclass(frozen=True)
class Sent:
    """An answer with its body as sent: httpx's own `content` would undo a content-encoding."""

    status: int
    headers: httpx.Headers
    body: bytes


async def raw_get(http: httpx.AsyncClient, path: str, headers: dict[str, str]) -> Sent:
    async with http.stream("GET", path, headers=headers) as answer:
        body = b"".join([chunk async for chunk in answer.aiter_raw()])
    return Sent(answer.status_code, answer.headers, body)


# What the console's script is sent as, by the request's Accept-Encoding (RFC 9110, 12.5.3).
ENCODING_FOR = {
    "gzip, deflate, br, zstd": "gzip",  # a browser's
    "*": "gzip",
    "br;q=1, GZIP;q=0.5": "gzip",  # case-blind, any weight above 0
    "identity": None,
    "gzip;q=0": None,  # refused by name
    "br": None,
    "gzip;q=x": None,  # a weight that is not a number is taken as a refusal
}


async def test_the_console_is_sent_gzipped_to_clients_that_take_gzip(console_service: Running) -> None:
    script = (BUILD / "console.js").read_bytes()
    for door in doors(console_service):
        async with httpx.AsyncClient(base_url=door) as http:
            answers = {
                accept: await raw_get(http, "/console/console.js", {"accept-encoding": accept})
                for accept in ENCODING_FOR
            }
            for accept, answer in answers.items():
                assert answer.status == 200, (door, accept)
                assert answer.headers["vary"] == "accept-encoding"
                assert policy_of(answer.headers["content-security-policy"]) == POLICY
                assert answer.headers["content-length"] == str(len(answer.body))
                if answer.headers.get("content-encoding") == "gzip":
                    assert gzip.decompress(answer.body) == script
                else:
                    assert answer.body == script
            sent = {accept: answer.headers.get("content-encoding") for accept, answer in answers.items()}
            assert sent == ENCODING_FOR, door
            packed, plain = answers["gzip, deflate, br, zstd"], answers["identity"]
            assert len(packed.body) < len(plain.body) / 2  # the build is mostly text
            # Each encoding is its own representation, with its own ETag; If-None-Match is matched
            # against the one the request would get.
            assert packed.headers["etag"] != plain.headers["etag"]
            for accept, etag, code in (
                ("gzip", packed.headers["etag"], 304),
                ("gzip", f'"other", W/{packed.headers["etag"]}', 304),
                ("identity", packed.headers["etag"], 200),
                ("gzip", plain.headers["etag"], 200),
                ("identity", plain.headers["etag"], 304),
            ):
                again = await raw_get(
                    http, "/console/console.js", {"accept-encoding": accept, "if-none-match": etag}
                )
                assert again.status == code, (door, accept, etag)
                assert again.headers["etag"] == (packed if accept == "gzip" else plain).headers["etag"]
                if code == 304:  # no body, and of the representation only what a cache updates
                    assert (again.body, again.headers.get("content-length")) == (b"", None)
                    assert "content-encoding" not in again.headers
                    assert again.headers["vary"] == "accept-encoding"
            head = await http.head("/console/console.js", headers={"accept-encoding": "gzip"})
            assert (head.status_code, head.content) == (200, b"")
            assert head.headers["content-length"] == str(len(packed.body))


# A user's name is the user's to choose: the console must show it as text, never as markup.
MARKUP_NAME = '<img src=x onerror="alert(1)">'


FLEET = "Fleet"  # a second organisation, with more machine users than one page holds
FLEET_SIZE = 25


async def scene(running: Running) -> tuple[str, str]:
    """A machine user with a secret and no role (it may sign in, and may do nothing), whose name is
    markup; and the organisation FLEET with FLEET_SIZE machine users. Gives the user's client id
    and secret."""
    api = client("grpc", running.service)
    try:
        admin = [("authorization", f"Bearer {running.admin_token}")]
        request = user_pb.AddMachineUserRequest(user_name="reader-nobody", name=MARKUP_NAME)
        made = await api.call("AddMachineUser", request, admin)
        assert isinstance(made, user_pb.AddMachineUserResponse)
        secret = await api.call("AddSecret", user_pb.AddSecretRequest(user_id=made.user_id), admin)
        assert isinstance(secret, user_pb.AddSecretResponse)
        fleet = await api.call("AddOrganization", org_pb.AddOrganizationRequest(name=FLEET), admin)
        assert isinstance(fleet, org_pb.AddOrganizationResponse)
        in_fleet = [*admin, ("x-zitadel-orgid", fleet.org_id)]
        for n in range(FLEET_SIZE):
            request = user_pb.AddMachineUserRequest(user_name=f"fleet-{n:02}", name=f"Fleet worker {n}")
            await api.call("AddMachineUser", request, in_fleet)
        return secret.client_id, secret.client_secret
    finally:
        await api.close()


async def drive(config: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return await chromium.drive(SOURCES, [json.dumps(config)], timeout_s=300)  # type: ignore[no-any-return]
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nsee {config['screenshots']}/failure.png") from None


async def run_curl(line: str) -> dict[str, Any]:
    """The dialog's curl line, run as a person would paste it (in a thread, as drive)."""
    assert shutil.which("curl") is not None
    command = ["bash", "-c", line + " -w '\\n%{http_code}'"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=30)
    body, _, code = done.stdout.rpartition("\n")
    return {"status": int(code), **json.loads(body)}


async def test_a_person_manages_machine_users_and_secrets_in_chromium(
    tools: Path, console_service: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    refused_id, refused_secret = await scene(console_service)
    envoy, http_port = doors(console_service)
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    results: list[dict[str, Any]] = []
    for door, widths, folder in (
        (envoy, [1280, 390], SCREENSHOTS),
        (http_port, [1280], SCREENSHOTS / "http-port"),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "console": f"{door}/console/",
            "adminToken": console_service.admin_token,
            "refused": {"clientId": refused_id, "clientSecret": refused_secret},
            "markupName": MARKUP_NAME,
            "otherOrg": FLEET,
            "screenshots": str(folder),
            "widths": widths,
        }
        for result in await drive(config):
            results.append({**result, "door": door})
    issued = [console_service.admin_token, refused_secret]
    for result in results:
        where = f"{result['door']} at {result['width']} px"
        assert result["problems"] == [], where  # no console error, no nameless control, no sideways scroll
        assert result["steps"] == [
            "1-sign-in", "1-users", "1-other-org", "1-page-2", "2-new-user", "2-search", "2-user",
            "3-new-secret", "3-secret-dialog", "3-secrets", "4-rotate", "4-secret-dialog", "4-rotated",
            "5-confirm", "5-deleted", "6-refused", "7-signed-out", "8-session-ended",
        ]  # fmt: skip
        # 1. Signed in by keyboard, with a visible focus ring; the token in sessionStorage only.
        assert result["focusOutline"]["style"] == "solid"
        assert float(result["focusOutline"]["width"].removesuffix("px")) >= 2
        assert result["storage"] == {
            "session": ["machine-secrets.token", "machine-secrets.org", "machine-secrets.who"],
            "local": 0,
        }
        assert (result["markupShownAsText"], result["images"]) == (1, 0)
        # The organisation picked is the one acted in; its users come a page at a time.
        assert result["otherOrgPages"] == [
            ["Page 1", 20, True],
            ["Page 2", FLEET_SIZE - 20, False],
            ["Page 1", 20, True],
        ]
        # 2. The new user is found by its name's beginning.
        assert result["found"] >= 1
        # 3. The dialog gave the secret, the copy button copied it, and it said it is shown once.
        first, second = result["secrets"]["first"], result["secrets"]["second"]
        for secret in (first, second):
            assert secret["clientId"] == result["userName"]
            assert re.fullmatch(r"msk_[0-9A-Za-z]{61}", secret["clientSecret"]), where
            assert secret["copied"] is True
            assert "will not be shown again" in secret["warning"]
            # Closing the dialog let the secret go: not in the page, its storage, its address or
            # (after a garbage collection) its memory.
            assert secret["afterClose"] == {
                "document": False,
                "storage": False,
                "address": False,
                "memory": False,
            }
            issued.append(secret["clientSecret"])
        # The check finds a secret where there is one: while the dialog was open.
        assert first["whileOpen"] == {"document": True, "storage": False, "address": False, "memory": True}
        assert first["exchange"] == {"status": 200, "tokenType": "Bearer"}
        # 4. Rotated with a day's grace: two secrets; the old one expires now, the new one never.
        rows = {row["Description"]: row for row in result["afterRotation"]}
        assert sorted(rows) == ["first: the nightly job", "second: after rotation"]
        assert rows["first: the nightly job"]["Expires"] != "Never"
        assert rows["second: after rotation"]["Expires"] == "Never"
        assert {row["State"] for row in rows.values()} == {"Active"}
        assert rows["first: the nightly job"]["Last used"] != "Never"  # the exchange above
        assert result["timeTitle"].endswith(" UTC")  # local time shown, UTC on hover
        # 5. The confirmation starts on Cancel; one secret is left.
        assert result["confirmFocus"] == "Cancel"
        assert result["afterDelete"] == 1
        # 6. The refusal names what is missing, in words and by its reason.
        assert "your account lacks the permission “user.read”" in result["refusal"]
        assert "PERMISSION_DENIED" in result["refusal"]
        assert result["whoRefused"] == f"Signed in with {refused_id}"
        # 7. Signed out: nothing is kept. 8. A token that stopped working returns to sign-in.
        assert result["signedOut"] == {"notice": "You have signed out.", "session": 0, "local": 0}
        assert "Sign in again" in result["ended"]
        # The page only ever called its own origin.
        assert {re.match(r"https?://[^/]+", url).group(0) for url in result["requests"]} == {result["door"]}  # type: ignore[union-attr]
        # The curl lines work as written: the new secret earns a token, the deleted one is refused.
        assert second["curl"].startswith(f"curl -sS '{result['door']}/oauth/v2/token'")
        current = await run_curl(second["curl"])
        assert (current["status"], current["token_type"]) == (200, "Bearer")
        deleted = await run_curl(first["curl"])
        assert (deleted["status"], deleted["error"]) == (401, "invalid_client")
        issued.append(current["access_token"])
    # No secret or token in an address the page asked for, a log line, or the store.
    requested = "\n".join(url for result in results for url in result["requests"])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    store = console_service.raw_store()
    for secret in issued:
        assert secret not in requested
        assert secret not in logged
        assert secret.encode() not in store
