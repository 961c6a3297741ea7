"""The web console's files, served at /console/ from the API's own origin (so the console needs no
CORS), on the HTTP port and through Envoy.

The files are the committed build in server/console/ (`make console` makes them from console/), read
once at start. Every answer carries the headers that keep the page to its own code: a
Content-Security-Policy that allows scripts, styles, images and calls from this origin only (no
inline script, no framing), nosniff, no Referer (the console's addresses name users), and no-cache
with an ETag, so a new build is picked up at once and an unchanged one costs a 304. Files that
compress are also kept gzipped (the script goes from about 140 KB to 40 KB), and sent so to clients
whose Accept-Encoding allows it.
"""

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.transport.asgi import Receive, Send, header_lists, respond

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
class Encoded:
    """One file's bytes as sent, and the strong ETag that names exactly them."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> "Encoded":
        return cls(body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')


@dataclass(frozen=True)
class File:
    content_type: str
    identity: Encoded
    gzipped: Encoded | None  # None where gzip would not make it smaller (a PNG, say)


def read_build(directory: Path = BUILD) -> dict[str, File]:
    """The console's files by their path under /console/; the index also answers /console/."""
    files: dict[str, File] = {}
    for path in sorted(directory.rglob("*")):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            body = path.read_bytes()
            packed = gzip.compress(body, compresslevel=9, mtime=0)  # mtime 0: the same bytes each start
            gzipped = Encoded.of(packed) if len(packed) < len(body) else None
            files[path.relative_to(directory).as_posix()] = File(content_type, Encoded.of(body), gzipped)
    if "index.html" in files:
        files[""] = files["index.html"]
    return files


def accepts_gzip(accept_encoding: list[str]) -> bool:
    """Whether the Accept-Encoding values allow gzip (RFC 9110, 12.5.3): by name or by "*", with a
    weight above 0 ("gzip;q=0" refuses it)."""
    weights: dict[str, float] = {}
    for item in ",".join(accept_encoding).split(","):
        coding, *parameters = (part.strip() for part in item.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if coding:
            weights[coding.lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


def matches(if_none_match: list[str], etag: str) -> bool:
    """Whether If-None-Match names this ETag, by the weak comparison it calls for (RFC 9110, 13.1.2)."""
    tags = [tag.strip().removeprefix("W/") for value in if_none_match for tag in value.split(",")]
    return "*" in tags or etag in tags


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
        else:
            headers = header_lists(scope)
            chosen, encoding = file.identity, ""
            if file.gzipped is not None and accepts_gzip(headers.get("accept-encoding", [])):
                chosen, encoding = file.gzipped, "gzip"
            # A 304 carries only what a cache updates its copy with (RFC 9110, 15.4.5).
            validators = [("etag", chosen.etag)]
            if file.gzipped is not None:
                validators.append(("vary", "accept-encoding"))
            if matches(headers.get("if-none-match", []), chosen.etag):
                await _send(send, 304, validators, b"")
            else:
                content = [("content-type", file.content_type), *validators]
                if encoding:
                    content.append(("content-encoding", encoding))
                await _send(send, 200, content, chosen.body, head=method == "HEAD")


async def _send(
    send: Send, status: int, headers: list[tuple[str, str]], body: bytes, head: bool = False
) -> None:
    await respond(send, status, [*headers, *SECURITY_HEADERS], body, head=head)
