"""A real browser: the example page in headless Chromium, calling the API from another origin.

The page (examples/browser/) uses connect-es, a standard grpc-web client from npm; its bundle is
built here from npm packages, and playwright-core drives Debian's Chromium. Without Chromium or
npm the test is skipped with the reason, unless MS_REQUIRE_BROWSER=1 (as CI sets it).
"""

import base64
import functools
import hashlib
import re
import ssl
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests import chromium
from tests.service import Running, config_for, start_service
from tests.tls_files import make_ca, server_files

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "browser"


@pytest.fixture(scope="module")
def bundle() -> None:
    chromium.require_tools("the browser test is")
    chromium.npm_build(EXAMPLE)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def page_servers(bundle: None) -> Iterator[tuple[str, str]]:
    """The page from two origins: one the service allows, one it does not."""
    handler = functools.partial(QuietHandler, directory=str(EXAMPLE))
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), handler) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield (f"http://127.0.0.1:{servers[0].server_port}", f"http://127.0.0.1:{servers[1].server_port}")
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
async def browser_service(
    page_servers: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    allowed, _ = page_servers
    running = await start_service(
        config_for(tmp_path_factory.mktemp("browser"), envoy=True, cors_origins=(allowed,))
    )
    yield running
    await running.service.stop(0)


async def drive(page_origin: str, token: str, *apis: str, chromium_args: str = "") -> list[dict[str, object]]:
    args = [f"{page_origin}/index.html", token, *apis]
    return await chromium.drive(EXAMPLE, args, timeout_s=120, env={"CHROMIUM_ARGS": chromium_args})  # type: ignore[no-any-return]


async def test_the_page_creates_a_secret_over_sonora_and_envoy(
    browser_service: Running, page_servers: tuple[str, str]
) -> None:
    allowed, _ = page_servers
    service = browser_service.service
    apis = (f"http://127.0.0.1:{service.http_port}", f"http://127.0.0.1:{service.envoy_port}")
    results = await drive(allowed, browser_service.admin_token, *apis)
    assert [r["api"] for r in results] == list(apis)
    for result in results:
        created = result["created"]
        assert isinstance(created, dict)
        assert created["error"] == "", result
        assert str(created["clientId"]).startswith("browser-")
        assert re.fullmatch(r"msk_[0-9A-Za-z]{61}", str(created["clientSecret"]))
        assert created["sequence"] == "2"
        # The code, and the reason from grpc-status-details-bin, decoded by a standard client.
        assert result["unknown"] == "5 NotFound USER_NOT_FOUND"
        assert result["problems"] == []


async def test_a_page_from_an_origin_not_allowed_gets_nothing(
    browser_service: Running, page_servers: tuple[str, str]
) -> None:
    _, stranger = page_servers
    service = browser_service.service
    apis = (f"http://127.0.0.1:{service.http_port}", f"http://127.0.0.1:{service.envoy_port}")
    for result in await drive(stranger, browser_service.admin_token, *apis):
        created = result["created"]
        assert isinstance(created, dict)
        assert created["clientSecret"] == ""
        # The browser refused to hand over the answer; the page says what that probably means.
        error = str(created["error"])
        assert error.startswith("2 Unknown: no answer reached this page. Probably refused by CORS"), result
        assert f"({stranger}) in MS_CORS_ORIGINS" in error


async def test_the_page_works_over_https(bundle: None, tmp_path: Path) -> None:
    """The page and the API over https:// (MS_TLS_CERT_FILE): Chromium trusts the throwaway
    certificate by its key's hash, and nothing else it would not trust anyway."""
    ca = make_ca(tmp_path)
    files = server_files(ca, tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(files.cert_file, files.key_file)
    page = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(EXAMPLE)))
    page.socket = context.wrap_socket(page.socket, server_side=True)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    origin = f"https://127.0.0.1:{page.server_port}"
    config = replace(
        config_for(tmp_path, envoy=True, cors_origins=(origin,)),
        tls_cert_file=str(files.cert_file),
        tls_key_file=str(files.key_file),
    )
    running = await start_service(config)
    try:
        service = running.service
        apis = (f"https://127.0.0.1:{service.http_port}", f"https://127.0.0.1:{service.envoy_port}")
        spki = files.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
        results = await drive(
            origin, running.admin_token, *apis, chromium_args=f"--ignore-certificate-errors-spki-list={pin}"
        )
    finally:
        await running.service.stop(0)
        page.shutdown()
        page.server_close()
    assert [r["api"] for r in results] == list(apis)
    for result in results:
        created = result["created"]
        assert isinstance(created, dict)
        assert created["error"] == "", result
        assert re.fullmatch(r"msk_[0-9A-Za-z]{61}", str(created["clientSecret"]))
        assert result["unknown"] == "5 NotFound USER_NOT_FOUND"
        assert result["problems"] == []
