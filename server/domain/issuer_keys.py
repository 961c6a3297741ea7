"""The keys of a trusted issuer (issue 34): inline, or fetched from its JWKS document.

A fetch is a request the service makes on a caller's behalf, to an address a caller chose: an SSRF
surface. So it is:
- HTTPS only, to a host whose every address is public (not loopback, private, link-local,
  multicast, reserved or unspecified), resolved once and connected to by the address checked
  (no second resolution for a rebinding DNS to answer differently); the certificate is checked
  against the host name. An origin that MS_FEDERATION_ALLOWED_ORIGINS names (scheme://host:port,
  e.g. http://127.0.0.1:9000 for a lab) is exempt from both rules;
- at most MAX_REDIRECTS redirects, each target checked by the same rules;
- FETCH_TIMEOUT in all, and at most MAX_DOCUMENT_BYTES of body;
- cached per issuer, for what Cache-Control's max-age says, within [MIN_CACHE, MAX_CACHE]
  (DEFAULT_CACHE without one), at most MAX_CACHED issuers;
- fetched again before that only for a kid the cache does not know (a rotation), at most once per
  issuer per REFETCH_INTERVAL;
- a fetch that fails is remembered: the issuer is not fetched again for REFETCH_INTERVAL, doubled
  per failure in a row up to MAX_BACKOFF, so that a failing issuer costs one fetch per back-off and
  not one per request. Meanwhile the keys fetched before serve, for at most STALE_GRACE past their
  freshness (an issuer that cannot be reached for longer has its tokens refused);
- fetched in threads of their own, at most MAX_FETCHES at once and one per organisation, never
  queued: a request that would wait for a thread is answered from the cache (or refused). A fetch
  ends at its deadline whatever the server sends (a timer shuts its socket: a socket's timeout
  bounds each read alone, and a server that drips its handshake or headers would hold the thread).
  Name resolution cannot be given a timeout in Python; a resolver that hangs holds one of these
  threads (the resolver's own timeouts end it), not the threads that hash secrets, nor the loop;
- cached at most MAX_CACHED_PER_ORG issuers per organisation, so that one organisation's many
  issuers cannot push the others' keys out.
Without a jwks_uri, the issuer's discovery document ({issuer}/.well-known/openid-configuration,
fetched by the same rules, its `issuer` the issuer exactly) names it.
"""

import asyncio
import concurrent.futures
import contextlib
import http.client
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc.jwk import KeySet, RSAKey

from server.domain.machine_key_material import MAX_RSA_BITS, MIN_RSA_BITS, acceptable_rsa
from server.store.contract import TrustedIssuerRecord

FETCH_TIMEOUT = 5.0  # seconds, a whole fetch (with its redirects)
MAX_DOCUMENT_BYTES = 64 * 1024  # a JWKS or discovery document; a JWKS inline too
MAX_REDIRECTS = 3
MAX_KEYS = 20  # keys of one issuer that are kept; a JWKS with more is refused
MIN_CACHE, DEFAULT_CACHE, MAX_CACHE = 300.0, 3600.0, 86400.0  # seconds
REFETCH_INTERVAL = 30.0  # seconds between two fetches of one issuer for an unknown kid
MAX_CACHED = 1000  # issuers whose keys are cached
MAX_CACHED_PER_ORG = 50
MAX_BACKOFF = 300.0  # seconds, the longest wait before an issuer that failed is fetched again
STALE_GRACE = 3600.0  # seconds past freshness that keys are still used while fetches fail
MAX_FETCHES = 4  # fetches at once, in this process
MAX_URL_LENGTH = 500
DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)


class FetchRefused(Exception):
    """A fetch that broke a rule, or failed: for logs and tests, never for a client."""


def origin_of(url: str) -> str:
    """scheme://host:port, lower case, with the scheme's port when it names none."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}:{port}"


def url_problem(url: str, allowed_origins: Collection[str]) -> str | None:
    """Why url may not be fetched (or be an issuer), or None: https, a host, no user, no
    fragment; http only for an allowed origin."""
    if not url or len(url) > MAX_URL_LENGTH:
        return f"must be a URL of 1 to {MAX_URL_LENGTH} characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a bad port
    except ValueError:
        return "must be a URL"
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return "must not contain white space or control characters"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return "must be an https URL"
    if parts.username is not None or parts.fragment or parts.query:
        return "must not have a user, a query or a fragment"
    if parts.scheme == "http" and origin_of(url) not in allowed_origins:
        return "must be an https URL (http only for an origin MS_FEDERATION_ALLOWED_ORIGINS names)"
    return None


def allowed_origins_of(text: str) -> frozenset[str]:
    """MS_FEDERATION_ALLOWED_ORIGINS: comma-separated origins; ValueError for one that is not."""
    origins = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
            raise ValueError(f"{item!r} is not an origin (scheme://host:port)")
        origins.add(origin_of(item))
    return frozenset(origins)


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def read_key_set(text: str) -> KeySet:
    """A JWKS document of public RSA and EC keys; ValueError if it is not one."""
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ValueError("larger than 64 KiB")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > MAX_KEYS:
        raise ValueError(f"not a JWKS of 1 to {MAX_KEYS} keys")
    public = []
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC"):
            continue  # a key of a kind no token here is verified with: ignored, as RFC 7517 §5 says
        if "d" in key:
            raise ValueError("holds a private key")
        public.append(key)
    if not public:
        raise ValueError("holds no RSA or EC key")
    try:
        key_set = KeySet.import_key_set({"keys": public})
    except Exception:
        raise ValueError("holds a key that cannot be read") from None
    for key in key_set.keys:
        if isinstance(key, RSAKey) and not (
            isinstance(key.raw_value, rsa.RSAPublicKey) and acceptable_rsa(key.raw_value)
        ):
            bounds = f"{MIN_RSA_BITS} to {MAX_RSA_BITS} bits with the exponent 65537"
            raise ValueError(f"holds an RSA key that is not of {bounds}")
    return key_set


@dataclass
class _Cached:
    org_id: str
    keys: KeySet | None  # None: never fetched successfully
    fresh_until: float  # monotonic
    refetched_at: float = field(default=-1e18)  # the last fetch for an unknown kid
    failures: int = 0  # fetches that failed in a row
    retry_at: float = field(default=-1e18)  # no fetch before this, after a failure

    def usable(self, now: float) -> KeySet | None:
        return self.keys if now < self.fresh_until + STALE_GRACE else None


@dataclass(frozen=True)
class _Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


class _Deadline:
    """Ends a fetch's socket at its deadline, from a timer thread: a socket's own timeout bounds
    each read alone, so a server that sends its handshake or its headers a byte now and then would
    hold the fetch's thread for good. shutdown() wakes a read blocked on the socket at once."""

    def __init__(self, seconds: float) -> None:
        self._sock: socket.socket | None = None
        self._expired = False
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self._expired:
                self._shut()

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self._expired = True
            self._shut()

    def _shut(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                # socket's own shutdown, also for a TLS socket: ssl's would first drop its TLS
                # object under the thread that is reading with it.
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """Connects to the address checked, and checks the certificate against the host name."""

    def __init__(
        self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext, deadline: _Deadline
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._tls = context
        self._deadline = deadline

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        # The deadline watches the TLS socket (wrapping detaches the plain one), from before the
        # handshake: a server may drip that too.
        tls = self._tls.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        self._deadline.watch(tls)
        try:
            tls.do_handshake()
        except BaseException:
            tls.close()
            raise
        self.sock = tls


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, deadline: _Deadline) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._deadline = deadline

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self._deadline.watch(self.sock)


class IssuerKeys:
    """The keys of the trusted issuers, by the rules above. One per process."""

    def __init__(self, allowed_origins: Collection[str] = frozenset()) -> None:
        self._allowed = frozenset(allowed_origins)
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._inline: OrderedDict[str, tuple[str, KeySet]] = OrderedDict()  # by issuer id
        self._locks: dict[str, asyncio.Lock] = {}
        self._tls = ssl.create_default_context()
        self._executor = concurrent.futures.ThreadPoolExecutor(MAX_FETCHES, thread_name_prefix="issuer-keys")
        self._fetch_slots = threading.BoundedSemaphore(MAX_FETCHES)
        self._fetching: set[str] = set()  # organisations with a fetch under way (on the loop only)

    @property
    def allowed_origins(self) -> frozenset[str]:
        return self._allowed

    async def keys(self, issuer: TrustedIssuerRecord, kid: str | None) -> KeySet | None:
        """The issuer's keys, fetched again for a kid they lack (a rotation); None when they
        cannot be had."""
        if issuer.jwks:
            return self._inline_keys(issuer)
        name = f"{issuer.org_id}\0{issuer.issuer_id}\0{issuer.jwks_uri}"
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            cached, now = self._cache.get(name), time.monotonic()
            if cached is not None:
                self._cache.move_to_end(name)
                keys = cached.keys
                known = keys is not None and (kid is None or any(k.kid == kid for k in keys.keys))
                if known and now < cached.fresh_until:
                    return keys
                if now < cached.retry_at:
                    return cached.usable(now)  # it failed a moment ago: the issuer waits
                if keys is not None and not known and now - cached.refetched_at < REFETCH_INTERVAL:
                    return cached.usable(now)  # rotated again so soon: the issuer waits
            # Every fetch thread busy, or one of this organisation's already: answered from the
            # cache, never queued (an organisation whose issuers answer slowly holds one thread).
            org = issuer.org_id
            if org in self._fetching or not self._fetch_slots.acquire(blocking=False):
                return cached.usable(now) if cached is not None else None
            self._fetching.add(org)
            try:
                fetched = self._executor.submit(self._fetch_keys, issuer)
            except BaseException:
                self._release(org)
                raise
            # The slot is given back when the thread is done, not when this wait gives up.
            loop = asyncio.get_running_loop()
            fetched.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release, org))
            try:
                fresh, max_age = await asyncio.wait_for(asyncio.wrap_future(fetched), FETCH_TIMEOUT + 1)
            except (FetchRefused, TimeoutError, ValueError):
                entry = cached or _Cached(issuer.org_id, None, now)
                entry.failures += 1
                entry.retry_at = now + min(REFETCH_INTERVAL * 2 ** (entry.failures - 1), MAX_BACKOFF)
                self._remember(name, entry)
                return entry.usable(now)
            entry = _Cached(issuer.org_id, fresh, now + max_age)
            if cached is not None and cached.keys is not None:
                entry.refetched_at = now
            self._remember(name, entry)
            return fresh

    def _inline_keys(self, issuer: TrustedIssuerRecord) -> KeySet | None:
        """Inline keys, read once per issuer (reading them, RSA checks and all, costs about as
        much as the token's own verification)."""
        known = self._inline.get(issuer.issuer_id)
        if known is not None and known[0] == issuer.jwks:
            self._inline.move_to_end(issuer.issuer_id)
            return known[1]
        try:
            keys = read_key_set(issuer.jwks)
        except ValueError:
            return None  # checked when the issuer was added: a document that no longer reads
        self._inline[issuer.issuer_id] = (issuer.jwks, keys)
        if len(self._inline) > MAX_CACHED:
            self._inline.popitem(last=False)
        return keys

    def _release(self, org: str) -> None:
        self._fetching.discard(org)
        self._fetch_slots.release()

    def _remember(self, name: str, entry: _Cached) -> None:
        """Caches entry as the newest, within the cache's bounds: the organisation's own oldest
        goes first, then the oldest of all."""
        if name not in self._cache:
            same_org = [n for n, e in self._cache.items() if e.org_id == entry.org_id]
            if len(same_org) >= MAX_CACHED_PER_ORG:
                self._forget(same_org[0])
        self._cache[name] = entry
        self._cache.move_to_end(name)
        while len(self._cache) > MAX_CACHED:
            self._forget(next(iter(self._cache)))

    def _forget(self, name: str) -> None:
        del self._cache[name]
        self._locks.pop(name, None)

    def close(self) -> None:
        """Stops the fetch threads (a fetch under way ends by its own timeout)."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _fetch_keys(self, issuer: TrustedIssuerRecord) -> tuple[KeySet, float]:
        deadline = time.monotonic() + FETCH_TIMEOUT
        jwks_uri = issuer.jwks_uri
        if not jwks_uri:
            answer = self.fetch(issuer.issuer.rstrip("/") + DISCOVERY_SUFFIX, deadline)
            discovery = _json_object(answer.body)
            named = discovery.get("jwks_uri")
            if discovery.get("issuer") != issuer.issuer or not isinstance(named, str):
                raise FetchRefused("the discovery document is not the issuer's")
            jwks_uri = named
        answer = self.fetch(jwks_uri, deadline)
        return read_key_set(answer.body.decode("utf-8", "replace")), _max_age(answer.headers)

    def fetch(self, url: str, deadline: float) -> _Answer:
        """GET url by the rules (blocking: run it in a thread)."""
        for _ in range(MAX_REDIRECTS + 1):
            answer = self._get(url, deadline)
            if answer.status in (301, 302, 303, 307, 308):
                location = answer.headers.get("location")
                if not location:
                    raise FetchRefused("a redirect to nowhere")
                url = urljoin(url, location)
                continue
            if answer.status != 200:
                raise FetchRefused(f"HTTP {answer.status}")
            return answer
        raise FetchRefused("too many redirects")

    def _get(self, url: str, deadline: float) -> _Answer:
        problem = url_problem(url, self._allowed)
        if problem is not None:
            raise FetchRefused(problem)
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        allowed = origin_of(url) in self._allowed
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            raise FetchRefused("the host does not resolve") from None
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or (not allowed and not all(_public(a) for a in addresses)):
            raise FetchRefused("the host has an address that is not public")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchRefused("timed out")
        ends = _Deadline(remaining)
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = _PinnedHTTPSConnection(host, port, addresses[0], remaining, self._tls, ends)
        else:
            connection = _PinnedHTTPConnection(host, port, addresses[0], remaining, ends)
        response: http.client.HTTPResponse | None = None
        try:
            connection.request(
                "GET",
                parts.path or "/",
                headers={"accept": "application/json", "user-agent": "machine-secrets"},
            )
            response = connection.getresponse()
            body = bytearray()
            while len(body) <= MAX_DOCUMENT_BYTES:
                if time.monotonic() > deadline:
                    raise FetchRefused("timed out")
                chunk = response.read1(16384)
                if not chunk:
                    break
                body += chunk
            if len(body) > MAX_DOCUMENT_BYTES:
                raise FetchRefused("the document is too large")
            return _Answer(response.status, response.headers, bytes(body))
        except (OSError, http.client.HTTPException):
            raise FetchRefused("the fetch failed") from None
        finally:
            ends.cancel()
            if response is not None:
                response.close()  # its file holds the socket open otherwise, until collected
            connection.close()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise FetchRefused("not JSON") from None
    if not isinstance(document, dict):
        raise FetchRefused("not a JSON object")
    return document


def _max_age(headers: http.client.HTTPMessage) -> float:
    """How long the answer may be kept: Cache-Control's max-age, within the bounds (no-store and
    no-cache: the least)."""
    control = headers.get("cache-control") or ""
    if re.search(r"no-store|no-cache", control, re.IGNORECASE):
        return MIN_CACHE
    found = _MAX_AGE.search(control)
    age = float(found.group(1)) if found else DEFAULT_CACHE
    return min(max(age, MIN_CACHE), MAX_CACHE)
