"""Every entry point a caller reaches without a credential, what it may carry within the documented
size limits, and the CPU time the service spends on one request: for the suites that hold such
requests to a CPU budget (test_cpu_budget.py draws hostile input with hypothesis, test_attacker.py
sends the most expensive input it can find).

The service runs as a process of its own (tests/processes.py), with its Envoy, so that its CPU
time is its own: every thread of it (the event loop, the bcrypt threads, grpc core's pollers,
SQLite's work), those that have exited too, and nothing of the test's or of Envoy's. It is read
from the kernel's CPU-time clock of that process, in nanoseconds (the clock id that
clock_getcpuclockid(3) returns, which Python does not wrap); /proc/<pid>/stat counts in ticks of
10 ms, too coarse for one request.

The budget. A token request that fails costs the service about 2.5 ms of CPU on the 2-core machines
the suite runs on (a bcrypt check at cost 4, about 1.1 ms, and the failure noted in the store), and
every other entry point under 1.5 ms. A hostile input may add ADDED_MEDIAN_MS (5 ms, two failed
token requests' worth) to the median of the same entry point's plain request, and no one request
may cost more than MAX_MS (20 ms). The worst inputs found add about 3 ms (a JSON body of 64 KiB:
its parsing, as for any body that large), so a machine half again as busy still passes. Before issue 28,
one client id of combining marks cost 260 ms to 1.5 s, and a form of them 120 ms. A request is
sent again, up to twice, when it costs more than the median budget, and its cheapest try counts:
the cost of an input is the same each time it is sent, while the noise of a busy machine (a
garbage collection, another process on the core) is not, and only ever adds.
"""

import base64
import contextlib
import json
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import grpc
import httpx
from google.protobuf.message import Message
from machinesecrets.v1 import user_service_pb2 as user_pb
from zitadel.user.v2 import user_service_pb2 as user_v2_pb

from server.limits import MAX_ASSERTION_LENGTH, MAX_HEADER_BYTES, MAX_METADATA_BYTES, MAX_REQUEST_BYTES
from server.transport.oauth import DISCOVERY_PATH, INTROSPECT_PATH, KEYS_PATH, REVOCATION_PATH, TOKEN_PATH
from server.transport.revocation_endpoint import REVOKE_PATH
from tests.api import method_path
from tests.processes import ServerProcess, start_with_envoy

ADDED_MEDIAN_MS = 5.0
MAX_MS = 20.0
TRIES = 3

# Characters that make Unicode work expensive: combining marks (NFC and NFD reorder a run of them,
# at a cost that grows with the square of its length when classes alternate, as U+0301's 230 and
# U+0316's 220 do); characters that decompose or fold into the most (U+FDFA into 18 under NFKC,
# U+3316 into 6, U+FB2C into 3 under NFC, U+0390 and U+FB03 into 3 under case folding); characters
# that decompose into combining marks (U+0344, U+0F73, U+0F75, U+0F81); Hangul, which normalisation
# composes and decomposes by rule; right-to-left letters and marks (RFC 5893's Bidi rule); and
# letters of several scripts (TS #39's check), look-alikes among them; and the characters whose
# context rule scans the whole name (U+06F0, U+30FB, U+00B7, U+200D after a virama).
HOSTILE = (
    "\u06f0\u0660\u30fb\u30a2\u00b7l\u094d\u200d\u200c"
    "\u0301\u0316\u0344\u0345\u0f73\u0f75\u0f81\u1dc0\u302a\u20e3"
    "\ufdfa\u3316\ufb2c\ufb2d\u0390\ufb03\u1e9e\u01f0"
    "\uac00\u1100\u1161\u11a8"
    "\u05d0\u0627\u200f\u202e"
    "a\u0430\u03b1\u2170\u6587\uff71\U0001d51e0%+:"
)
# The room a carrier gives, in bytes as sent, within the documented limits: a header may fill
# what the front doors let through (MAX_HEADER_BYTES: uvicorn, grpc core and Envoy alike) less the
# request's other headers; a body MAX_REQUEST_BYTES; gRPC metadata is the service's own
# MAX_METADATA_BYTES and a little past it.
HEADER_ROOM = MAX_HEADER_BYTES - 8 * 1024
BODY_ROOM = MAX_REQUEST_BYTES
METADATA_ROOM = MAX_METADATA_BYTES + 1024


def cpu_ms(pid: int) -> float:
    """The CPU time the process pid has used, in milliseconds (Linux: its CPUCLOCK_SCHED clock)."""
    return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e6


def fit(text: str, room: int, encode: Callable[[str], bytes] = str.encode) -> str:
    """The longest head of text whose encoding takes at most room bytes."""
    if len(encode(text)) <= room:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if len(encode(text[:middle])) <= room else (low, middle - 1)
    return text[:low]


def header_text(text: str) -> str:
    """text as a header value can carry it: no control characters, no white space at either end."""
    return "".join(ch for ch in text if ch.isprintable()).strip() or "x"


@dataclass
class Target:
    """The running service, and a client for each door."""

    process: ServerProcess
    http: httpx.Client
    envoy: httpx.Client
    native: grpc.Channel
    envoy_native: grpc.Channel

    @classmethod
    def of(cls, process: ServerProcess) -> "Target":
        def client(port: int) -> httpx.Client:
            return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

        return cls(
            process,
            client(process.http_port),
            client(process.envoy_port),
            grpc.insecure_channel(f"127.0.0.1:{process.grpc_port}"),
            grpc.insecure_channel(f"127.0.0.1:{process.envoy_port}"),
        )

    def web(self, door: str) -> httpx.Client:
        return {"http": self.http, "envoy": self.envoy}[door]

    def channel(self, door: str) -> grpc.Channel:
        return {"grpc": self.native, "envoy-grpc": self.envoy_native}[door]

    def close(self) -> None:
        for web in (self.http, self.envoy):
            web.close()
        for channel in (self.native, self.envoy_native):
            channel.close()

    def cost(self, send: Callable[[], object], over_ms: float) -> tuple[float, object]:
        """The service's CPU time for send() in ms, and its answer: the cheapest of up to TRIES,
        tried again only while over over_ms."""
        cheapest, answer = float("inf"), None
        for _ in range(TRIES):
            before = cpu_ms(self.process.pid)
            answer = send()
            cheapest = min(cheapest, cpu_ms(self.process.pid) - before)
            if cheapest <= over_ms:
                break
        return cheapest, answer


Send = Callable[[Target, str, str, str], object]


@dataclass(frozen=True)
class Entry:
    """An entry point without a credential: where hostile text may go (each with its room in bytes
    as sent), the doors it is reached by, and how one request carrying text is sent."""

    name: str
    doors: tuple[str, ...]
    places: dict[str, int]
    send: Send  # (target, door, place, text) -> the answer's status
    plain: str = "bot"  # the text of its plain request, in its first place


def _status(response: httpx.Response) -> int:
    return response.status_code


FORM = {"content-type": "application/x-www-form-urlencoded"}


def _basic(client_id: str, secret: str) -> dict[str, str]:
    credentials = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"authorization": f"Basic {credentials}", **FORM}


def token_by_basic(target: Target, door: str, place: str, text: str) -> object:
    client_id, secret = (text, "x") if place == "client_id" else ("bot", text)
    body = b"grant_type=client_credentials"
    return _status(target.web(door).post(TOKEN_PATH, content=body, headers=_basic(client_id, secret)))


def token_form(client_id: str = "bot", client_secret: str = "x", scope: str = "api") -> bytes:  # noqa: S107
    fields = {"client_id": client_id, "client_secret": client_secret, "scope": scope}
    return (
        "grant_type=client_credentials&" + "&".join(f"{k}={quote(v)}" for k, v in fields.items())
    ).encode()


def token_by_form(target: Target, door: str, place: str, text: str) -> object:
    body = token_form(**{place: text})
    return _status(target.web(door).post(TOKEN_PATH, content=body, headers=FORM))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def jws_shaped(place: str, text: str) -> str:
    """A compact JWS of no key: the text as the whole assertion, or in its header's kid, or in its
    claims (iss and sub), with a signature of the right shape."""
    if place in ("assertion", "client_assertion"):
        return text
    header = {"alg": "RS256", "kid": text if place == "kid" else "1"}
    claims = {"iss": text, "sub": text, "aud": "http://127.0.0.1", "exp": 2_000_000_000, "iat": 1}
    if place == "kid":
        claims = {"iss": "1", "sub": "1", "aud": "x", "exp": 2_000_000_000, "iat": 1}
    parts = (json.dumps(header, ensure_ascii=False), json.dumps(claims, ensure_ascii=False))
    return ".".join(_b64url(part.encode()) for part in parts) + "." + _b64url(b"s" * 256)


def jwt_bearer(target: Target, door: str, place: str, text: str) -> object:
    """The JWT profile grant (RFC 7523 §2.1), or private_key_jwt (§2.2), with hostile text in the
    assertion: parsed no further than its size allows, verified against no key it can name."""
    assertion = jws_shaped(place, text)
    if place == "client_assertion":
        fields = {
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        }
    else:
        fields = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    body = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()).encode()
    return _status(target.web(door).post(TOKEN_PATH, content=body, headers=FORM))


def token_revocation_by_basic(target: Target, door: str, place: str, text: str) -> object:
    """RFC 7009's endpoint, its client by Basic: the same bcrypt check and limits as a token request."""
    client_id, secret = (text, "x") if place == "client_id" else ("bot", text)
    body = b"token=nN1Dt0kNw0rKs"
    return _status(target.web(door).post(REVOCATION_PATH, content=body, headers=_basic(client_id, secret)))


def token_revocation_by_form(target: Target, door: str, place: str, text: str) -> object:
    fields = {"client_id": "bot", "client_secret": "x", "token": "nN1Dt0kNw0rKs", place: text}
    body = "&".join(f"{k}={quote(v)}" for k, v in fields.items()).encode()
    return _status(target.web(door).post(REVOCATION_PATH, content=body, headers=FORM))


def introspection_by_assertion(target: Target, door: str, place: str, text: str) -> object:
    """private_key_jwt at the introspection endpoint (RFC 7523 §2.2): an API application's client
    assertion of hostile text, which names its client by its iss, verified against no key."""
    fields = {
        "token": BOGUS_BEARER.removeprefix("Bearer "),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": jws_shaped(place, text),
    }
    body = "&".join(f"{k}={quote(v, safe='')}" for k, v in fields.items()).encode()
    return _status(target.web(door).post(INTROSPECT_PATH, content=body, headers=FORM))


def revocation_report(text: str, count: int) -> bytes:
    """A report of count strings, each a share of text."""
    share = max(1, len(text) // count)
    strings = [text[i * share : (i + 1) * share] or "x" for i in range(count)]
    return json.dumps({"secrets": strings}, ensure_ascii=False).encode()


def revocation(target: Target, door: str, place: str, text: str) -> object:
    count = {"one": 1, "a hundred": 100}[place]
    body = revocation_report(text, count)
    return _status(
        target.web(door).post(REVOKE_PATH, content=body, headers={"content-type": "application/json"})
    )


BOGUS_BEARER = "Bearer nN1Dt0kNw0rKs-" + "q" * 21  # the shape of a real token, of no one


def raw_headers(headers: Mapping[str, str | bytes]) -> dict[bytes, bytes]:
    """Headers as bytes, UTF-8 where a value is text (httpx sends a str value only in ASCII)."""
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in headers.items()}


def _json_headers(place: str, text: str, content_type: str = "application/json") -> dict[bytes, bytes]:
    headers: dict[str, str | bytes] = {"authorization": BOGUS_BEARER, "content-type": content_type}
    if place == "bearer":
        headers["authorization"] = f"Bearer {header_text(text)}"
    if place == "x-zitadel-orgid":
        headers["x-zitadel-orgid"] = header_text(text)
    return raw_headers(headers)


def json_call(target: Target, door: str, place: str, text: str) -> object:
    """The native API's JSON, with a bogus bearer token: the text in a path id, a page token, a
    user-name prefix, a body, or a header."""
    web, headers = target.web(door), _json_headers(place, text)
    if place == "path id":
        return _status(web.get(f"/users/{quote(text, safe='')}", headers=headers))
    if place in ("pageToken", "userNamePrefix"):
        return _status(web.get(f"/users?{place}={quote(text, safe='')}", headers=headers))
    if place == "body":
        body = json.dumps({"userName": text, "name": text}, ensure_ascii=False).encode()
        return _status(web.post("/users/machine", content=body, headers=headers))
    return _status(web.get("/users/1", headers=headers))


def connect_call(target: Target, door: str, place: str, text: str) -> object:
    """ZITADEL's v2 API as its SDKs call it (Connect, JSON), with a bogus bearer token."""
    user_id = text if place == "userId" else "1"
    body = json.dumps({"userId": user_id, "unknownToUs": text if place == "unknown field" else ""})
    path = "/zitadel.user.v2.UserService/GetUserByID"
    return _status(target.web(door).post(path, content=body.encode(), headers=_json_headers(place, text)))


def connect_binary_call(target: Target, door: str, place: str, text: str) -> object:
    """ZITADEL's v2 API as `buf curl` and connect-es in binary call it (Connect, protobuf), with a
    bogus bearer token."""
    request = user_v2_pb.GetUserByIDRequest(user_id=text if place == "userId" else "1")
    headers = _json_headers(place, text, "application/proto")
    path = "/zitadel.user.v2.UserService/GetUserByID"
    return _status(target.web(door).post(path, content=request.SerializeToString(), headers=headers))


def zitadel_rest(target: Target, door: str, place: str, text: str) -> object:
    """ZITADEL's management REST paths, which Envoy transcodes to gRPC, with a bogus bearer token."""
    web, headers = target.web(door), _json_headers(place, text)
    if place == "path id":
        return _status(web.get(f"/management/v1/users/{quote(text, safe='')}", headers=headers))
    if place == "body":
        body = json.dumps({"userName": text, "name": text}, ensure_ascii=False).encode()
        return _status(web.post("/management/v1/users/machine", content=body, headers=headers))
    return _status(web.get("/management/v1/users/1", headers=headers))


def _ascii(text: str) -> str:
    """What gRPC metadata may carry of text: printable ASCII (grpc refuses anything else)."""
    return "".join(ch for ch in text if " " <= ch <= "~").strip() or "x"


def grpc_call(target: Target, door: str, place: str, text: str) -> object:
    """A native gRPC call with a bogus bearer token: the text in a request field or in metadata."""
    metadata: tuple[tuple[str, str | bytes], ...] = (("authorization", BOGUS_BEARER),)
    if place == "bearer":
        metadata = (("authorization", f"Bearer {_ascii(text)}"),)
    if place == "x-zitadel-orgid":
        metadata += (("x-zitadel-orgid", _ascii(text)),)
    request: Message
    if place in ("page_token", "user_name_prefix"):
        method, request = "ListUsers", user_pb.ListUsersRequest()
        setattr(request, place, text)
    else:
        method = "GetUserByID"
        request = user_pb.GetUserByIDRequest(user_id=text if place == "user_id" else "1")
    call = target.channel(door).unary_unary(method_path(method), lambda m: m.SerializeToString(), lambda b: b)
    try:
        call(request, metadata=metadata, timeout=60)
    except grpc.RpcError as error:
        return error.code().name
    return "OK"


def discovery(target: Target, door: str, place: str, text: str) -> object:
    web = target.web(door)
    if place == "host":
        return _status(web.get(DISCOVERY_PATH, headers=raw_headers({"host": header_text(text)})))
    return _status(web.get(f"{DISCOVERY_PATH}?{quote(text, safe='')}"))


def jwks(target: Target, door: str, place: str, text: str) -> object:
    web = target.web(door)
    if place == "header":
        return _status(web.get(KEYS_PATH, headers=raw_headers({"x-anything": header_text(text)})))
    return _status(web.get(f"{KEYS_PATH}?{quote(text, safe='')}"))


def healthz(target: Target, door: str, place: str, text: str) -> object:
    web = target.web(door)
    if place == "header":
        return _status(web.get("/healthz", headers=raw_headers({"x-anything": header_text(text)})))
    return _status(web.get(f"/healthz?{quote(text, safe='')}"))


# A URL is a header too, but HTTP clients send none over 64 KiB; each byte of it percent-encoded
# takes 3.
URL_ROOM = (64 * 1024 - 256) // 3
BASIC_ROOM = HEADER_ROOM * 3 // 4  # base64
FORM_ROOM = (BODY_ROOM - 128) // 3  # percent-encoded, beside the form's other fields
ENTRIES = [
    Entry(
        "token endpoint, Basic",
        ("http", "envoy"),
        {"client_id": BASIC_ROOM, "secret": BASIC_ROOM},
        token_by_basic,
    ),
    Entry(
        "token endpoint, form",
        ("http", "envoy"),
        {"client_id": FORM_ROOM, "client_secret": FORM_ROOM, "scope": FORM_ROOM},
        token_by_form,
    ),
    # An assertion longer than MAX_ASSERTION_LENGTH is refused before it is parsed; the form's
    # limit (MAX_TOKEN_FORM_BYTES) bounds the rest.
    Entry(
        "token endpoint, JWT assertion",
        ("http", "envoy"),
        {
            "assertion": MAX_ASSERTION_LENGTH + 16,
            "kid": MAX_ASSERTION_LENGTH * 3 // 4 - 400,
            "claims": MAX_ASSERTION_LENGTH * 3 // 8 - 200,
            "client_assertion": MAX_ASSERTION_LENGTH + 16,
        },
        jwt_bearer,
    ),
    Entry(
        "token revocation, Basic",
        ("http", "envoy"),
        {"client_id": BASIC_ROOM, "secret": BASIC_ROOM},
        token_revocation_by_basic,
    ),
    Entry(
        "token revocation, form",
        ("http", "envoy"),
        {"client_id": FORM_ROOM, "client_secret": FORM_ROOM, "token": FORM_ROOM},
        token_revocation_by_form,
    ),
    # The same bounds at the introspection endpoint, for an application's client assertion.
    Entry(
        "introspection, client assertion",
        ("http", "envoy"),
        {
            "client_assertion": MAX_ASSERTION_LENGTH + 16,
            "kid": MAX_ASSERTION_LENGTH * 3 // 4 - 400,
            "claims": MAX_ASSERTION_LENGTH * 3 // 8 - 200,
        },
        introspection_by_assertion,
    ),
    Entry("revocation", ("http", "envoy"), {"one": BODY_ROOM - 20, "a hundred": BODY_ROOM - 700}, revocation),
    Entry(
        "JSON call",
        ("http", "envoy"),
        {
            "path id": URL_ROOM,
            "pageToken": URL_ROOM,
            "userNamePrefix": URL_ROOM,
            "body": BODY_ROOM // 2 - 40,
            "bearer": HEADER_ROOM,
            "x-zitadel-orgid": HEADER_ROOM,
        },
        json_call,
    ),
    Entry(
        "Connect call",
        ("http", "envoy"),
        {"userId": BODY_ROOM - 60, "unknown field": BODY_ROOM - 60, "bearer": HEADER_ROOM},
        connect_call,
    ),
    Entry(
        "Connect call, binary",
        ("http", "envoy"),
        {"userId": BODY_ROOM - 16, "bearer": HEADER_ROOM},
        connect_binary_call,
    ),
    Entry(
        "ZITADEL REST call",
        ("envoy",),
        {
            "path id": URL_ROOM,
            "body": BODY_ROOM // 2 - 40,
            "bearer": HEADER_ROOM,
            "x-zitadel-orgid": HEADER_ROOM,
        },
        zitadel_rest,
    ),
    Entry(
        "gRPC call",
        ("grpc", "envoy-grpc"),
        {
            "user_id": BODY_ROOM - 16,
            "page_token": BODY_ROOM - 16,
            "user_name_prefix": BODY_ROOM - 16,
            "bearer": METADATA_ROOM,
            "x-zitadel-orgid": METADATA_ROOM,
        },
        grpc_call,
    ),
    Entry(
        "discovery", ("http", "envoy"), {"host": HEADER_ROOM, "query": URL_ROOM}, discovery, plain="127.0.0.1"
    ),
    Entry("healthz", ("http",), {"query": URL_ROOM, "header": HEADER_ROOM}, healthz, plain="probe"),
    Entry("JWKS", ("http", "envoy"), {"query": URL_ROOM, "header": HEADER_ROOM}, jwks, plain="probe"),
]
CASES = [(entry, door) for entry in ENTRIES for door in entry.doors]


def case_id(case: tuple[Entry, str]) -> str:
    return f"{case[0].name} via {case[1]}"


@dataclass
class Costs:
    """The costs of one entry point's requests, in ms, against its plain request's."""

    entry: Entry
    door: str
    plain_ms: float
    costs: list[tuple[float, str, object]] = field(default_factory=list)  # (ms, what, answer)

    @classmethod
    def measure_plain(
        cls, target: Target, entry: Entry, door: str, warm_up: int = 5, count: int = 15
    ) -> "Costs":
        """The median cost of the entry point's plain request, after a few to warm it up."""
        place = next(iter(entry.places))
        for _ in range(warm_up):
            entry.send(target, door, place, entry.plain)
        once = float("inf")  # each sent once: as a hostile request is, unless it costs more than the budget
        plain = [
            target.cost(lambda: entry.send(target, door, place, entry.plain), once)[0] for _ in range(count)
        ]
        return cls(entry, door, statistics.median(plain))

    @property
    def median_budget_ms(self) -> float:
        return self.plain_ms + ADDED_MEDIAN_MS

    def send(self, target: Target, place: str, text: str, what: str) -> float:
        """Sends text in place; its cost, noted, and checked against MAX_MS."""
        return self.charge(target, lambda: self.entry.send(target, self.door, place, text), what)

    def charge(self, target: Target, send: Callable[[], object], what: str) -> float:
        """The cost of the request that send() sends, noted, and checked against MAX_MS."""
        ms, answer = target.cost(send, self.median_budget_ms)
        self.costs.append((ms, what, answer))
        # Hostile input gets a clear refusal, never a server error (a report nested 60,000 deep got 500).
        server_error = answer in ("INTERNAL", "UNKNOWN") or (isinstance(answer, int) and answer >= 500)
        assert not server_error, f"{self.entry.name} via {self.door}: {what} answered {answer}"
        assert ms <= MAX_MS, f"{self.entry.name} via {self.door}: {what} ({answer}) cost {ms:.1f} ms of CPU"
        return ms

    def check_median(self) -> None:
        median = statistics.median(ms for ms, _, _ in self.costs)
        worst = max(self.costs, key=lambda cost: cost[0])
        print(
            f"{self.entry.name} via {self.door}: plain {self.plain_ms:.2f} ms,"
            f" hostile median {median:.2f} ms, worst {worst[0]:.2f} ms ({worst[1]}, {worst[2]}),"
            f" {len(self.costs)} requests",
            file=sys.stderr,
        )
        assert median <= self.median_budget_ms, (
            f"{self.entry.name} via {self.door}: median {median:.2f} ms against {self.plain_ms:.2f} ms plain"
        )


@contextlib.asynccontextmanager
async def running_target(folder: Path) -> AsyncIterator[Target]:
    """The service as a process of its own, with its Envoy, the failure limits out of the way (a
    refusal for too many failures would spare the very work whose cost is measured)."""
    process, _ = await start_with_envoy(
        folder, MS_CLIENT_FAILURE_LIMIT="1000000", MS_SOURCE_FAILURE_LIMIT="1000000"
    )
    target = Target.of(process)
    try:
        yield target
    finally:
        target.close()
        assert process.alive, "the service died"
        await process.stop()
