"""The web console (console/, built into server/console/): its build is the committed one, its
answers carry the headers that keep it to its own code, and a person can do the whole job with it
in a real browser.

The flow is console/drive.mjs: playwright-core driving Debian's Chromium against a real service,
through Envoy at 1280 and 390 px wide and through the service's own HTTP port at 1280. Screenshots of
every step go to SCREENSHOTS (build/console-screenshots/, not committed); docs/console.md shows
four of them, copied into docs/images/console/. Without Chromium or npm the tests are skipped with the
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
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import RSAKey
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
WIDTHS = [1280, 390]


@dataclass(frozen=True)
class Scene:
    """What the browser meets, made over the API (console_service's, once per module)."""

    config: dict[str, Any]
    # Every secret and token the scene issued.
    issued: list[str]


async def make_scene(running: Running) -> Scene:
    """A machine user with a secret and no role, whose name is markup (it may sign in, and may do
    nothing); a user manager for each width, each with a secret (the limits part deletes the one it
    signed in with); a user for each width whose life the sections part runs through; and the
    organisation FLEET with FLEET_SIZE machine users, fleet-00 with two secrets."""
    api = client("grpc", running.service)
    admin = [("authorization", f"Bearer {running.admin_token}")]

    async def call(method: str, request: Any, metadata: list[tuple[str, str]] = admin) -> Any:
        return await api.call(method, request, metadata)

    async def machine_user(name: str, display: str, metadata: list[tuple[str, str]] = admin) -> str:
        made = await call(
            "AddMachineUser", user_pb.AddMachineUserRequest(user_name=name, name=display), metadata
        )
        return str(made.user_id)

    try:
        refused_id = await machine_user("reader-nobody", MARKUP_NAME)
        refused = await call("AddSecret", user_pb.AddSecretRequest(user_id=refused_id))
        managers, subjects, keyholders, issued = {}, {}, {}, [refused.client_secret]
        for width in WIDTHS:
            manager_id = await machine_user(f"manager-{width}", "Manages machine users")
            await call(
                "AddOrgMember", org_pb.AddOrgMemberRequest(user_id=manager_id, roles=["ORG_USER_MANAGER"])
            )
            request = user_pb.CreateSecretRequest(user_id=manager_id, description="manager's own")
            secret = await call("CreateSecret", request)
            managers[width] = {
                "clientId": secret.client_id,
                "clientSecret": secret.client_secret,
                "userId": manager_id,
            }
            issued.append(secret.client_secret)
            subject_id = await machine_user(f"subject-{width}", "Lives its whole life in the console")
            subjects[width] = {"userId": subject_id, "userName": f"subject-{width}"}
            holder_id = await machine_user(f"keyholder-{width}", "Signs in with keys and platform tokens")
            keyholders[width] = {"userId": holder_id, "userName": f"keyholder-{width}"}
        fleet = await call("AddOrganization", org_pb.AddOrganizationRequest(name=FLEET))
        in_fleet = [*admin, ("x-zitadel-orgid", fleet.org_id)]
        fleet_ids = [
            await machine_user(f"fleet-{n:02}", f"Fleet worker {n}", in_fleet) for n in range(FLEET_SIZE)
        ]
        for n in range(2):
            request = user_pb.CreateSecretRequest(user_id=fleet_ids[0], description=f"fleet secret {n}")
            issued.append((await call("CreateSecret", request, in_fleet)).client_secret)
        found = await call("ListUsers", user_pb.ListUsersRequest(user_name_prefix="admin"))
        admin_id = next(user.id for user in found.users if user.user_name == "admin")
        config = {
            "adminToken": running.admin_token,
            "adminUserId": admin_id,
            "refused": {
                "clientId": refused.client_id,
                "clientSecret": refused.client_secret,
                "userId": refused_id,
            },
            "managers": managers,
            "subjects": subjects,
            "keyholders": keyholders,
            # A cluster's keys, given inline to a trusted issuer; a public key of one's own.
            "jwks": json.dumps({"keys": [RSAKey.generate_key(2048).as_dict(private=False)]}),
            "publicKey": rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
            .decode(),
            "limited": {"userId": fleet_ids[0]},
            "markupName": MARKUP_NAME,
            "otherOrg": FLEET,
        }
        return Scene(config, [running.admin_token, *issued])
    finally:
        await api.close()


@pytest.fixture(scope="module")
async def scene(console_service: Running) -> Scene:
    return await make_scene(console_service)


async def drive(config: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return await chromium.drive(SOURCES, [json.dumps(config)], timeout_s=420)  # type: ignore[no-any-return]
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nsee {config['screenshots']}/failure.png") from None


async def drive_part(
    part: str, door: str, widths: list[int], scene: Scene, folder: Path
) -> list[dict[str, Any]]:
    """The part of drive.mjs at each width, through door; its screenshots in folder. Checks what
    every part must: no console error, no nameless control, no sideways scroll, no axe-core
    violation, and no call to another origin."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    config = {
        **scene.config,
        "part": part,
        "console": f"{door}/console/",
        "screenshots": str(folder),
        "widths": widths,
    }
    results = await drive(config)
    for result in results:
        assert result["problems"] == [], (part, door, result["width"], "\n".join(result["problems"]))
        assert {re.match(r"https?://[^/]+", url).group(0) for url in result["requests"]} == {door}  # type: ignore[union-attr]
    return results


def assert_nothing_leaked(
    results: list[dict[str, Any]], issued: list[str], running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    """No secret or token in an address the page asked for, a log line, or the store."""
    requested = "\n".join(url for result in results for url in result["requests"])
    logged = "\n".join(record.getMessage() for record in caplog.records)
    store = running.raw_store()
    for secret in issued:
        assert secret not in requested
        assert secret not in logged
        assert secret.encode() not in store


async def run_curl(line: str) -> dict[str, Any]:
    """The dialog's curl line, run as a person would paste it (in a thread, as drive)."""
    assert shutil.which("curl") is not None
    command = ["bash", "-c", line + " -w '\\n%{http_code}'"]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=30)
    body, _, code = done.stdout.rpartition("\n")
    return {"status": int(code), **json.loads(body)}


GONE = {"document": False, "storage": False, "address": False, "memory": False}


@pytest.mark.parametrize("door", ["envoy", "http"])
async def test_a_person_manages_machine_users_and_secrets_in_chromium(
    tools: Path, console_service: Running, scene: Scene, door: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The core job, and defects 1 to 8, 11 and 14 of issue 35, at 1280 and 390 px through Envoy
    (and at 1280 through the service's own HTTP port), by keyboard where a person would."""
    caplog.set_level(logging.DEBUG)
    envoy, http_port = doors(console_service)
    url, widths = (envoy, WIDTHS) if door == "envoy" else (http_port, [1280])
    results = await drive_part("core", url, widths, scene, SCREENSHOTS / f"core-{door}")
    issued = list(scene.issued)
    for result in results:
        where = f"{url} at {result['width']} px"
        assert result["steps"] == [
            "1-sign-in", "1-sign-in-refused", "1-returned", "1-users", "1-other-org", "1-page-2",
            "2-new-user-too-long", "2-new-user", "2-search", "2-user", "3-new-secret", "3-secret-dialog",
            "3-close-asked", "3-secrets", "4-rotate", "4-secret-dialog", "4-rotated", "5-confirm",
            "5-deleted", "6-session-ended", "7-signed-out", "8-session-ended", "8-dark",
        ], where  # fmt: skip
        # 1. A wrong token and a wrong secret: one error style, with focus on it.
        for wrong in (result["wrongPat"], result["wrongSecret"]):
            assert wrong["kind"] == "alert"
            assert wrong["focus"].startswith("div.problem"), where
        # Signed in by keyboard, with a visible focus ring, back on the page the link asked for.
        assert result["focusOutline"]["style"] == "solid"
        assert float(result["focusOutline"]["width"].removesuffix("px")) >= 2
        assert result["returnedTo"] == f"#/users/{scene.config['refused']['userId']}"
        assert result["storage"] == {
            "session": ["machine-secrets.org", "machine-secrets.token", "machine-secrets.who"],
            "local": 0,
        }
        # Whose token it is, from GetMe (defect 8), at every width.
        assert result["who"] == {"text": "Signed in as admin (personal access token)", "visible": True}
        assert (result["markupShownAsText"], result["images"]) == (1, 0)
        # An arrow key in the picker switches nothing; Switch does. Paging keeps focus on the pager,
        # a few Tabs from the heading, with a choice of page size.
        assert result["arrowKept"]["users"] == 1
        assert result["arrowKept"]["focus"].startswith("select")
        assert 0 < result["tabsToNext"] <= 8, result["tabsToNext"]
        # A page of 20 at 1280 px, of 10 at 390 px (where each row is a card).
        if result["width"] > 600:
            assert result["otherOrgPages"] == [
                ["Page 1: 1 to 20, more follow", 20, True],
                [f"Page 2: 21 to {FLEET_SIZE}", FLEET_SIZE - 20, False],
                ["Page 1: 1 to 20, more follow", 20, True],
                [f"Page 1: 1 to {FLEET_SIZE}", FLEET_SIZE, False],
            ]
            assert result["focusAfterNext"] == "button.secondary: Previous"  # Next is off on the last page
        else:
            assert result["otherOrgPages"] == [
                ["Page 1: 1 to 10, more follow", 10, True],
                ["Page 2: 11 to 20, more follow", 10, True],
                ["Page 1: 1 to 10, more follow", 10, True],
                [f"Page 1: 1 to {FLEET_SIZE}", FLEET_SIZE, False],
            ]
            assert result["focusAfterNext"] == "button.secondary: Next"
        assert result["focusAfterPrevious"] == "button.secondary: Next"
        assert result["focusAfterSize"].startswith("select: Per page")
        # 2. Each create dialog names the organisation; text over the limit is counted and refused.
        assert result["newUserOrg"] == "In organisation default"
        assert result["newSecretOrg"] == "In organisation default"
        assert result["overLimit"]["count"] == "1048 of 500 characters: 548 too many"
        assert "“Description (optional)” is longer than the service accepts" in result["overLimit"]["refusal"]
        assert result["overLimit"]["focus"].startswith("textarea")
        assert result["withinLimit"] == "40 of 500 characters"
        assert result["toastOverlaps"] is False
        assert result["found"] >= 1
        assert result["countBefore"] == "0 of 5 live secrets"
        # 3. The dialog gave the secret, the copy button copied it without moving the box, it said
        # it is shown once, and every way out asked first.
        first, second = result["secrets"]["first"], result["secrets"]["second"]
        assert (first["copied"], first["copiedLabel"], first["boxKept"]) == (
            True,
            "Copied client secret",
            True,
        )
        assert first["escape"]["open"] is True
        assert first["escape"]["focus"] == "button.secondary: Back to it"
        assert first["back"] == {"asking": False, "focus": "button.done: Done: I have stored it"}
        for secret in (first, second):
            assert secret["clientId"] == result["userName"]
            assert re.fullmatch(r"msk_[0-9A-Za-z]{61}", secret["clientSecret"]), where
            assert "will not be shown again" in secret["warning"]
            assert (
                secret["environment"]
                == f"export CLIENT_ID='{secret['clientId']}' CLIENT_SECRET='{secret['clientSecret']}'"
            )
            # Closing the dialog let the secret go: not in the page, its storage, its address or
            # (after a garbage collection) its memory.
            assert secret["afterClose"] == GONE
            issued.append(secret["clientSecret"])
        # The check finds a secret where there is one: while the dialog was open.
        assert first["whileOpen"] == {"document": True, "storage": False, "address": False, "memory": True}
        assert first["exchange"] == {"status": 200, "tokenType": "Bearer"}
        assert result["countAfter"] == "1 of 5 live secrets"
        # Times say their zone.
        assert result["timeText"].endswith("UTC"), result["timeText"]
        assert result["timeTitle"].endswith(" UTC")
        # 4. Rotated with a day's grace: the new one is marked (and never expires), the old one
        # retires in a day.
        rows = {row["Description"]: row for row in result["afterRotation"]}
        assert sorted(rows) == ["first: the nightly job", "second: after rotation"]
        assert rows["first: the nightly job"]["State"] == "ActiveRetiring in 1 day"
        assert rows["second: after rotation"]["State"] == "ActiveNewNever expires"
        assert rows["second: after rotation"]["Expires"] == "Never"
        assert rows["first: the nightly job"]["Last used"] != "Never"  # the exchange above
        # 5. The confirmation starts on Cancel; one secret is left.
        assert result["confirmFocus"] == "Cancel"
        assert result["afterDelete"] == 1
        # 6. The session ended with a dialog open: no dialog left, the sign-in has focus, and
        # signing in again returned to the user's page.
        ended = result["endedWithDialog"]
        assert ended["dialogs"] == 0
        assert ended["focus"] == "input: Personal access token"
        assert "Sign in again" in ended["words"]
        assert result["endedReturnedTo"] is True
        # 7. Signed out: nothing is kept. 8. A token that stopped working returns to sign-in.
        assert result["signedOut"] == {"notice": "You have signed out.", "session": 0, "local": 0}
        assert "Sign in again" in result["ended"]
        assert result["darkGround"] == "rgb(18, 22, 30)"
        # The lines work as written: the new secret earns a token, the deleted one is refused.
        assert second["curl"].startswith(f"curl -sS '{url}/oauth/v2/token'")
        current = await run_curl(second["curl"])
        assert (current["status"], current["token_type"]) == (200, "Bearer")
        deleted = await run_curl(first["curl"])
        assert (deleted["status"], deleted["error"]) == (401, "invalid_client")
        from_environment = await run_curl(
            f"{second['environment']}; curl -sS '{url}/oauth/v2/token' -d grant_type=client_credentials "
            '--data-urlencode "client_id=$CLIENT_ID" --data-urlencode "client_secret=$CLIENT_SECRET"'
        )
        assert (from_environment["status"], from_environment["token_type"]) == (200, "Bearer")
        issued += [current["access_token"], from_environment["access_token"]]
    assert_nothing_leaked(results, issued, console_service, caplog)


async def test_the_console_shows_what_a_caller_may_not_do_in_chromium(
    tools: Path, console_service: Running, scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """Defects 9, 10 and 13 of issue 35, and the organisation's secret policy: a user without roles,
    a user manager, the secret signed in with, and the live-secret limit, at 1280 and 390 px."""
    caplog.set_level(logging.DEBUG)
    envoy, _ = doors(console_service)
    results = await drive_part("limits", envoy, WIDTHS, scene, SCREENSHOTS / "limits")
    for result in results:
        width = result["width"]
        assert result["steps"] == [
            "1-no-roles", "2-manager-policy", "2-more-power", "2-own-secret", "3-policy", "3-at-limit"
        ]  # fmt: skip
        # Without roles: the refusal names what is missing, and creating says why it cannot.
        assert "your account lacks the permission “user.read”" in result["refusal"]
        assert "PERMISSION_DENIED" in result["refusal"]
        assert result["who"] == {"text": "Signed in as reader-nobody (client secret)", "visible": True}
        # Known before any refusal (defect 9): GetMe says it holds nothing here, while the list's
        # answer was still held back.
        assert result["beforeRefusal"] == {"disabled": "true", "alerts": 0}
        assert result["noRoles"]["disabled"] == "true"
        assert result["noRoles"]["why"] == result["noRoles"]["title"]
        assert "lacks the permission “user.write”" in result["noRoles"]["why"]
        assert result["noRoles"]["dialogs"] == 0
        assert result["noRoles"]["focus"] == "button: New machine user"
        # A user manager may create users, not change the policy or grant roles.
        assert result["managerCreate"] is None
        assert result["managerPolicy"]["disabled"] == "true"
        assert "“policy.write”" in result["managerPolicy"]["why"]
        # Its own roles are shown (ListOrgMembers); it may not end a membership.
        assert result["managerRoles"]["held"] == "ORG_USER_MANAGER"
        assert result["managerRoles"]["remove"] == "true"
        assert "“org.member.write”" in result["managerRoles"]["why"]
        # A user with more power than the caller: what would act on it says so before any call
        # (on hover and beside it), and does nothing.
        more = result["morePower"]
        assert more["why"].startswith("admin holds more power than you do: it is an IAM_OWNER"), more
        assert (more["disabled"], more["newSecret"], more["dialogs"]) == ("true", "true", 0)
        assert more["title"] == more["why"]
        # The secret it signed in with: warned of, and deleting it ended the session.
        assert result["ownSecret"].startswith("This is the secret you signed in with.")
        assert result["afterOwnSecret"]["dialogs"] == 0
        assert "Sign in again" in result["afterOwnSecret"]["words"], width
        # The policy as saved; at its limit, "New secret" says why it does nothing.
        assert result["policySaved"] == "2"
        assert result["atLimit"] == {
            "count": "2 of 2 live secrets",
            "disabled": "true",
            "why": "At the organisation's limit of 2 live secrets: delete one, or rotate, to make another.",
        }
        assert [row["State"] for row in result["atLimitStates"]] == ["ActiveNever expires"] * 2
    assert_nothing_leaked(results, scene.issued, console_service, caplog)


async def test_a_machine_users_whole_life_in_chromium(
    tools: Path, console_service: Running, scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """Section 2 of issue 35: personal access tokens, roles, deactivation, history and removal, at
    1280 and 390 px."""
    caplog.set_level(logging.DEBUG)
    envoy, _ = doors(console_service)
    results = await drive_part("sections", envoy, WIDTHS, scene, SCREENSHOTS / "sections")
    issued = list(scene.issued)
    for result in results:
        width = result["width"]
        assert result["steps"] == [
            "1-new-token", "1-token-dialog", "1-tokens", "1-revoke", "2-roles", "2-remove-member",
            "3-deactivate", "4-history", "5-remove",
        ]  # fmt: skip
        token = result["token"]
        assert result["tokenOrg"] == "In organisation default"
        assert "will not be shown again" in token["warning"]
        assert (token["works"], token["afterRevoke"]) == (200, 401)
        assert token["afterClose"] == GONE
        assert [row["Expires"] != "Never" for row in token["listed"]] == [True]
        issued.append(token["token"])
        assert result["granted"] == f"ORG_USER_MANAGER granted to subject-{width}."
        # The tab shows the roles the user holds, before, after the grant and after the removal.
        assert result["heldBefore"] == f"subject-{width} holds no roles in default."
        assert result["heldAfterGrant"] == "ORG_USER_MANAGER"
        assert result["heldAfterRemove"] == f"subject-{width} holds no roles in default."
        assert result["focusAfterGrant"].startswith("h2"), result["focusAfterGrant"]
        assert result["focusAfterRemove"].startswith("h2"), result["focusAfterRemove"]
        assert "Its roles here end at once" in result["removeMember"]
        assert "stop working" in result["deactivateSays"]
        assert "cannot be undone" in result["removeSays"]
        # History, newest first: who (by name), when and from where.
        history = result["history"]
        assert [row["What"] for row in history][:4] == [
            "user.reactivated",
            "user.deactivated",
            "user.pat.removed",
            "user.pat.added",
        ], history
        assert history[-1]["What"] == "user.machine.added"
        assert {row["Who"] for row in history} == {"admin with a personal access token"}, history
        # The address as the service decided it (behind its own Envoy, the forwarded one).
        assert all(re.fullmatch(r"[0-9.]+ \(grpc(-web)?\)", row["From"]) for row in history), history
        assert result["removedListed"] == 0
    assert_nothing_leaked(results, issued, console_service, caplog)


def test_the_consoles_limits_are_the_services() -> None:
    """console/src/limits.ts holds the service's limits, as the Python declares them."""
    from server import limits
    from server.domain import secret_policy, validation

    text = (SOURCES / "src" / "limits.ts").read_text()
    declared = {name: int(value) for name, value in re.findall(r"^\s+(\w+): (\d+),", text, re.MULTILINE)}
    assert declared == {
        "userName": limits.MAX_USER_NAME_LENGTH,
        "name": validation.MAX_NAME_LENGTH,
        "userDescription": validation.MAX_DESCRIPTION_LENGTH,
        "secretDescription": secret_policy.MAX_SECRET_DESCRIPTION_LENGTH,
        "defaultMaxSecrets": secret_policy.DEFAULT_MAX_SECRETS,
    }


async def test_keys_federated_credentials_issuers_and_projects_in_chromium(
    tools: Path, console_service: Running, scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """Section 2 of issue 35, the rest: a machine user's keys (a key file shown once, with a
    download; a public key uploaded) and federated credentials, the organisation's trusted issuers,
    and a project with a role, an API application and a user grant, at 1280 and 390 px."""
    caplog.set_level(logging.DEBUG)
    envoy, _ = doors(console_service)
    results = await drive_part("credentials", envoy, WIDTHS, scene, SCREENSHOTS / "credentials")
    issued = list(scene.issued)
    for result in results:
        width = result["width"]
        holder = scene.config["keyholders"][width]
        assert result["steps"] == [
            "1-trust-issuer", "1-issuers", "2-add-key", "2-key-dialog", "2-upload-key", "2-keys",
            "2-remove-key", "3-add-federated", "3-federated", "4-add-role", "4-app-dialog", "4-grant",
            "4-project",
        ]  # fmt: skip
        assert result["issuerOrg"] == result["keyOrg"] == "In organisation default"
        [issuer] = result["issuers"]
        assert issuer["Issuer"] == f"https://k8s-{width}.example.test"
        assert (issuer["Keys from"], issuer["Description"]) == ("Given inline", f"The {width} px cluster")
        # The key file: shown once, downloaded as is, ZITADEL's shape; gone with its dialog.
        key = result["key"]
        assert "will not be shown again" in key["warning"]
        assert key["downloaded"] is True
        assert key["downloadName"] == f"{key['fields']['keyId']}.json"
        assert key["fields"] == {
            "type": "serviceaccount", "userId": holder["userId"], "keyId": key["fields"]["keyId"], "pem": True
        }  # fmt: skip
        assert key["afterClose"] == GONE
        assert key["focusAfterClose"] == "h2: Keys", key["focusAfterClose"]
        assert result["roleDialogFocus"].startswith("input: Key"), result["roleDialogFocus"]
        assert [(row["Type"], row["Expires"] == "Never") for row in key["listed"]] == [
            ("RSA (RS256)", True),
            ("RSA (RS256)", False),
        ]
        assert key["confirmFocus"] == "button.secondary: Cancel"
        assert len(key["afterRemove"]) == 1
        assert key["afterRemove"][0]["Key id"] != key["fields"]["keyId"]
        # The federated credential: the trusted issuer offered, the subject said in words.
        assert result["federatedIssuer"] == issuer["Issuer"]
        [federated] = result["federated"]
        assert federated["Accepts"] == "The Kubernetes service account “deployer” in namespace “ci”"
        assert federated["Last used"] == "Never"
        # The application's secret works at the introspection endpoint, and left with its dialog.
        app = result["app"]
        assert app["introspection"] == {"status": 200, "body": {"active": False}}
        assert app["afterClose"] == GONE
        assert app["curl"].startswith("curl -sS ")
        issued.append(app["clientSecret"])
        rows = {tuple(sorted(row)): row for row in result["project"]}
        assert rows[("Actions", "Granted", "Roles", "User")]["Roles"] == "invoice.read"
        assert rows[("Actions", "Display name", "Group", "Key")]["Display name"] == "Reads invoices"
        assert result["projectListed"] == 0
        assert "refused at once" in result["untrustSays"]
    assert_nothing_leaked(results, issued, console_service, caplog)


def test_the_consoles_roles_are_the_services() -> None:
    """console/src/api.ts gives each role the permissions server/domain/permissions.py gives it:
    the console's pre-refusal of a user with more power is the service's rule."""
    from server.domain.permissions import ROLE_PERMISSIONS

    text = (SOURCES / "src" / "api.ts").read_text()
    block = text.split("export const ROLE_PERMISSIONS", 1)[1].split("};", 1)[0]
    named = {
        group: set(re.findall(r'"([a-z._]+)"', text.split(f"const {group} = ", 1)[1].split(";", 1)[0]))
        for group in ("PROJECT_PERMISSIONS", "WEB_KEY_PERMISSIONS")
    }
    declared = {
        role: set(re.findall(r'"([a-z._]+)"', body)).union(*(named[g] for g in named if g in body))
        for role, body in re.findall(r"^  (\w+): (.*),$", block, re.MULTILINE)
    }
    assert declared == {role: set(permissions) for role, permissions in ROLE_PERMISSIONS.items()}
