"""The web console's files, served at /console/ from the API's own origin (so the console needs no
CORS), on the HTTP port and through Envoy.

The files are the committed build in server/console/ (`make console` makes them from console/), read
once at start. Every answer carries the headers that keep the page to its own code: a
Content-Security-Policy that allows scripts, styles, images and calls from this origin only (no
inline script, no framing), nosniff, no Referer (the console's addresses name users), and no-cache
with an ETag, so a new build is picked up at once and an unchanged one costs a 304.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.transport.asgi import Receive, Send, first, header_lists

CONSOLE_PREFIX = "/console"
BUILD = Path(__file__).resolve().parent.parent / "console"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),  # frame-ancestors' older spelling, for older browsers
    ("cross-origin-opener-policy", "same-origin"),
    ("cache-control", "no-cache"),
)
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


@dataclass(frozen=True)
class File:
    body: bytes
    content_type: str
    etag: str


def read_build(directory: Path = BUILD) -> dict[str, File]:
    """The console's files by their path under /console/; the index also answers /console/."""
    files: dict[str, File] = {}
    for path in sorted(directory.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            body = path.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[path.relative_to(directory).as_posix()] = File(body, content_type, etag)
    if "index.html" in files:
        files[""] = files["index.html"]
    return files


class ConsoleFiles:
    def __init__(self, files: dict[str, File]) -> None:
        self._files = files

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, [("allow", "GET, HEAD")], b"the console's files are read with GET\n")
        elif path == CONSOLE_PREFIX:
            # Relative addresses in the page resolve against /console/, not /.
            await _send(send, 308, [("location", CONSOLE_PREFIX + "/")], b"")
        elif (file := self._files.get(path.removeprefix(CONSOLE_PREFIX + "/"))) is None:
            await _send(send, 404, [("content-type", "text/plain; charset=utf-8")], b"no such file\n")
        elif first(header_lists(scope), "if-none-match") == file.etag:
            await _send(send, 304, [("etag", file.etag)], b"")
        else:
            headers = [("content-type", file.content_type), ("etag", file.etag)]
            await _send(send, 200, headers, file.body, head=method == "HEAD")


async def _send(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False
) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in (*headers, *SECURITY_HEADERS)]
    if status != 304:
        raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": b"" if head else body, "more_body": False})
