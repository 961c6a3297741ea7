"""The one place configuration is read: flags, else MS_* environment variables, else defaults."""

import argparse
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from server.domain.credentials import MAX_BCRYPT_COST, MIN_BCRYPT_COST
from server.domain.failure_limits import FailureLimits
from server.logs import FORMATS
from server.transport.forwarded import Network, parse_networks


class ConfigError(Exception):
    """A setting is invalid; the message names the variable."""


class CannotListen(ConfigError):
    """A host:port setting names an address the service cannot listen on: one in use, or one
    that is not this machine's."""

    def __init__(self, setting: str, address: str, reason: str) -> None:
        super().__init__(
            f"cannot listen on {address} ({setting}): {reason}. Set {setting} to another"
            " address or port (port 0 takes any free one)"
        )


@dataclass(frozen=True)
class Setting:
    """One setting, written once: its variable, default, help and parser. Its flag and its field
    of Config follow from the variable's name (MS_GRPC_ADDR: --grpc-addr, grpc_addr). Its row of
    docs/configuration.md is made from it (`make docs-config`, devtools/configtable.py): doc, in
    Markdown, when the page says more than --help does."""

    env: str
    default: str
    help: str
    parse: Callable[[str, str], Any]  # (variable name, text) -> value; raises ConfigError
    doc: str = ""

    @property
    def meaning(self) -> str:
        """What docs/configuration.md says the setting does."""
        return self.doc or self.help

    @property
    def field(self) -> str:
        return self.env.removeprefix("MS_").lower()

    @property
    def flag(self) -> str:
        return "--" + self.field.replace("_", "-")


def _text(name: str, value: str) -> str:
    return value


SETTINGS = [
    Setting(
        "MS_DATABASE_URL",
        "sqlite:///.data/machine-secrets.db",
        "the store",
        lambda n, v: _database_url(v),
        doc=(
            "the store: `sqlite:///relative/path`, `sqlite:////absolute/path`, or "
            "`postgresql://user:password@host:5432/db`"
        ),
    ),
    Setting(
        "MS_DB_POOL_SIZE", "10", "PostgreSQL connections per process at the most", lambda n, v: _pool_size(v)
    ),
    Setting(
        "MS_SQLITE_SYNC",
        "full",
        "SQLite: 'full' makes every acknowledged write survive a power loss; 'normal' is faster, and"
        " a power loss may roll back the last acknowledged writes",
        lambda n, v: _sqlite_sync(v),
        doc=(
            "SQLite: `full` makes every acknowledged change survive a power loss (group commit: one fsync for"
            " the commits that wait together); `normal` is faster, and a power loss may roll back the last "
            "acknowledged writes (a client would hold a secret the service forgot)"
        ),
    ),
    Setting("MS_GRPC_ADDR", "127.0.0.1:50051", "host:port of the gRPC server", lambda n, v: _address(n, v)),
    Setting(
        "MS_HTTP_ADDR",
        "127.0.0.1:8081",
        "host:port of grpc-web and the HTTP endpoints",
        lambda n, v: _address(n, v),
    ),
    Setting(
        "MS_ENVOY_ADDR",
        "127.0.0.1:8080",
        "host:port of Envoy; 'off' starts no Envoy",
        lambda n, v: None if v == "off" else _address(n, v),
        doc="host:port of the Envoy the service starts; `off` starts none",
    ),
    Setting(
        "MS_METRICS_ADDR",
        "127.0.0.1:9464",
        "host:port of /metrics (Prometheus), apart from the API's ports; 'off' serves none",
        lambda n, v: None if v == "off" else _address(n, v),
        doc=(
            "host:port of `/metrics` (Prometheus), apart from the API's ports and not routed through Envoy; "
            "over TLS when TLS is on; `off` serves none. With `MS_WORKERS`, the sum of every worker's (see "
            "[Metrics](production.md#metrics))"
        ),
    ),
    Setting(
        "MS_CORS_ORIGINS",
        "",
        "browser origins allowed to call, comma-separated",
        lambda n, v: _origins(v),
        doc="browser origins allowed to call, comma-separated, e.g. `https://console.example.com`",
    ),
    Setting(
        "MS_BCRYPT_COST",
        "4",
        "bcrypt cost of new client secrets (4-31)",
        lambda n, v: _bcrypt_cost(v),
        doc=(
            "bcrypt cost of client secrets (4 to 31); a changed cost re-hashes a secret at its next "
            "successful use"
        ),
    ),
    Setting(
        "MS_ACCESS_TOKEN_TTL",
        "12h",
        "lifetime of access tokens: 3600, 90s, 30m, 12h",
        lambda n, v: _duration(n, v),
        doc="lifetime of access tokens: seconds, or a number with `s`, `m` or `h`",
    ),
    Setting(
        "MS_MASTERKEY_FILE",
        ".data/masterkey",
        "the master key: a file of exactly 32 bytes that encrypts the signing keys in the store",
        _text,
        doc=(
            "the master key, as ZITADEL's `--masterkey`: a file of exactly 32 bytes (a trailing newline is "
            "not counted), readable by the service's user alone. The private signing keys of JWT access "
            "tokens are stored only encrypted under it (AES-256-GCM). A missing file is created (0600) on a "
            "store that holds no signing key yet, and the log names its path; on a store that holds some, a "
            "missing file, or one that cannot decrypt them, stops the start"
        ),
    ),
    Setting(
        "MS_SIGNING_KEY_ALGORITHM",
        "RS256",
        "the algorithm of new signing keys of JWT access tokens: RS256 or ES256",
        lambda n, v: _signing_algorithm(v),
        doc=(
            "the algorithm of new signing keys of JWT access tokens: `RS256` (RSA 2048) or `ES256` (P-256); "
            "keys made before keep theirs"
        ),
    ),
    Setting(
        "MS_SIGNING_KEY_ROTATION",
        "720h",
        "how long a signing key signs before the next one takes over",
        lambda n, v: _duration(n, v),
        doc=(
            "how long a signing key signs before the next one takes over: the next is published "
            "`MS_JWKS_CACHE_TTL` before that; the old one stays published until every token it signed has "
            "expired (`MS_ACCESS_TOKEN_TTL`)"
        ),
    ),
    Setting(
        "MS_JWKS_CACHE_TTL",
        "5m",
        "how long a resource server may cache GET /oauth/v2/keys (its Cache-Control max-age)",
        lambda n, v: _duration(n, v),
        doc=(
            "how long a resource server may cache `GET /oauth/v2/keys` (its `Cache-Control: max-age`): a new"
            " signing key is published at least this long (and a little more) before it signs"
        ),
    ),
    Setting(
        "MS_ISSUER",
        "",
        "the OAuth issuer URL; empty: the URL the request came to",
        lambda n, v: _issuer(v),
        doc="the OAuth issuer URL the discovery document names; unset, the URL called",
    ),
    Setting(
        "MS_FEDERATION_ALLOWED_ORIGINS",
        "",
        "origins (scheme://host:port, comma-separated) whose trusted issuers' keys may be fetched over"
        " http or from a private address, for tests and labs",
        lambda n, v: _fetch_origins(v),
    ),
    Setting(
        "MS_CLIENT_FAILURE_LIMIT",
        "10",
        "failed token requests per client and window",
        lambda n, v: _count(n, v),
        doc=(
            "failed token requests per client in the window, before addresses that failed too are refused "
            "(429)"
        ),
    ),
    Setting(
        "MS_SOURCE_FAILURE_LIMIT",
        "30",
        "failed token requests per address and window",
        lambda n, v: _count(n, v),
        doc="failed token requests per address in the window, before that address is refused (429)",
    ),
    Setting(
        "MS_FAILURE_WINDOW",
        "60s",
        "the window of those limits",
        lambda n, v: _duration(n, v),
        doc="the sliding window of both limits",
    ),
    Setting(
        "MS_REQUEST_READ_TIMEOUT",
        "10s",
        "how long a request may take to arrive, before DEADLINE_EXCEEDED (token endpoint: 408)",
        lambda n, v: _duration(n, v),
        doc=(
            "how long a request may take to arrive: then a call is answered `DEADLINE_EXCEEDED` (504 over "
            "JSON), the token endpoint 408"
        ),
    ),
    Setting(
        "MS_MAX_INFLIGHT",
        "256",
        "calls a process works on at once; past it, RESOURCE_EXHAUSTED (429 with Retry-After) at once",
        lambda n, v: _bound(n, v),
        doc=(
            "calls a process works on at once (a call counts from when its request has arrived whole), on "
            "every transport and the HTTP endpoints together; past it a call is refused at once with "
            "`RESOURCE_EXHAUSTED` (reason `OVERLOADED`; 429 with `Retry-After` over JSON and at the token "
            "endpoint) instead of waiting in a queue"
        ),
    ),
    Setting(
        "MS_MAX_UNFINISHED",
        "1024",
        "requests a process lets arrive at once (their body still on its way); past it,"
        " RESOURCE_EXHAUSTED (429) at once",
        lambda n, v: _bound(n, v),
        doc=(
            "requests a process lets arrive at once (their head is here, their body still on its way), from "
            "all addresses together; past it a request is refused at once with `RESOURCE_EXHAUSTED` (reason "
            "`UNFINISHED_REQUESTS`; 429 with `Retry-After` over JSON, `slow_down` at the token endpoint). "
            "Each may take `MS_REQUEST_READ_TIMEOUT` to arrive. Envoy holds a request until it is whole, so "
            "what comes through it never waits here"
        ),
    ),
    Setting(
        "MS_MAX_UNFINISHED_PER_SOURCE",
        "64",
        "requests one client address may have arriving at once; past it, RESOURCE_EXHAUSTED (429)",
        lambda n, v: _bound(n, v),
        doc=(
            "the same, from one client address: one address cannot take every place (a client that shares its"
            " address with a slow sender, behind one NAT, is refused with it). A request past it is refused "
            "after one to two seconds, not at once, so that a sender that reconnects after each refusal "
            "cannot turn them into a flood"
        ),
    ),
    Setting(
        "MS_MAX_WAITING",
        "64",
        "HTTP requests a process has read and not yet begun; past it, RESOURCE_EXHAUSTED (429) as read",
        lambda n, v: _bound(n, v),
        doc=(
            "HTTP requests (JSON, grpc-web, Connect, the token endpoints) a process has read and not yet "
            "begun to work on, waiting for the event loop; a request read past it is answered at once, "
            "before any of its body is read, with `RESOURCE_EXHAUSTED` (reason `OVERLOADED`; 429 with "
            "`Retry-After`, `slow_down` at the token endpoints, grpc-status 8 over grpc-web) and no access "
            "line (`machinesecrets_requests_refused_waiting_total` counts them). It keeps the time a call "
            "waits in line short under overload; the health probes are never refused"
        ),
    ),
    Setting(
        "MS_WORKERS",
        "1",
        "server processes sharing the gRPC and HTTP ports behind the one Envoy (PostgreSQL only); a"
        " worker that dies is started again",
        lambda n, v: _workers(v),
        doc=(
            "server processes (1 to 64) that share the gRPC and HTTP ports (SO_REUSEPORT) behind the one "
            "Envoy, which the first process runs and supervises: a worker that dies is started again, and the"
            " log says so. PostgreSQL only: with SQLite (one writer, one process) anything but 1 stops the "
            "start"
        ),
    ),
    Setting(
        "MS_SHUTDOWN_GRACE",
        "10s",
        "on SIGTERM or Ctrl-C: how long calls in flight may take to finish before the service exits",
        lambda n, v: _duration(n, v),
        doc=(
            "on SIGTERM or Ctrl-C the service stops taking new calls: for up to 2 s of this (until the "
            "callers go quiet) a call that arrives is held, then answered `UNAVAILABLE` (reason "
            "`SHUTTING_DOWN`; 503 over JSON), which gRPC clients retry, never `CANCELLED`; then it stops "
            "taking connections, gives the calls in flight the rest of this to finish with their real "
            "answers, stops Envoy and exits 0"
        ),
    ),
    Setting(
        "MS_SWEEP_INTERVAL",
        "10m",
        "how often each process forgets expired access tokens and personal access tokens",
        lambda n, v: _duration(n, v),
        doc=(
            "how often each process forgets expired access tokens and personal access tokens (refused "
            "already; their rows would pile up until their user is removed). No event is written: each "
            "credential's expiry is in the event that made it"
        ),
    ),
    Setting(
        "MS_SWEEP_BATCH",
        "1000",
        "expired credentials forgotten per transaction of a sweep (1-100000)",
        lambda n, v: _sweep_batch(v),
        doc=(
            "expired credentials forgotten per transaction of a sweep (1 to 100000); a run does at most 100 "
            "batches, the oldest expiries first. Several processes may sweep one PostgreSQL at once: a row "
            "goes once, and neither fails"
        ),
    ),
    Setting(
        "MS_WRITE_ATTEMPTS",
        "8",
        "how often a write is decided again after a concurrent write won, before ABORTED (1-100)",
        lambda n, v: _write_attempts(v),
        doc=(
            "how often a write is decided again on fresh state after a concurrent write to the same object "
            "won, before the call is `ABORTED` (1 to 100)"
        ),
    ),
    Setting(
        "MS_TRUSTED_PROXIES",
        "",
        "proxies whose X-Forwarded-For is believed: addresses or CIDR blocks, comma-separated",
        lambda n, v: _networks(v),
        doc=(
            "proxies in front of the HTTP port whose `X-Forwarded-For` is believed (addresses or CIDR blocks,"
            " comma-separated); the service's own Envoy is always believed, through a private socket. From "
            "anyone else the header is ignored, and the failure limits count the peer's address"
        ),
    ),
    Setting(
        "MS_TLS_CERT_FILE",
        "",
        "PEM certificate (a chain is allowed) for TLS on every port: Envoy's, gRPC's and HTTP's;"
        " empty: plaintext",
        _text,
        doc=(
            "a PEM certificate (a chain is allowed): TLS on every port, Envoy's (ALPN `h2` and `http/1.1`), "
            "gRPC's and HTTP's, and plaintext is refused; the discovery document says `https://`. A "
            "certificate that is missing, unreadable, expired or not yet valid stops the start with the "
            "reason"
        ),
    ),
    Setting(
        "MS_TLS_KEY_FILE",
        "",
        "PEM private key of MS_TLS_CERT_FILE, unencrypted",
        _text,
        doc="its PEM private key, unencrypted; one that does not match the certificate stops the start",
    ),
    Setting(
        "MS_ADMIN_PAT_FILE",
        ".data/admin.pat",
        "where the first admin's token goes",
        _text,
        doc="where the first start writes the admin's token",
    ),
    Setting(
        "MS_READY_FILE",
        "",
        "once serving, write every bound port here as JSON (for tools and tests); empty: none",
        _text,
        doc=(
            'once serving, the service writes `{"grpc", "http", "envoy", "metrics", "pid"}` here as JSON: how'
            " scripts, the tests and `make bench` learn the bound ports"
        ),
    ),
    Setting(
        "MS_LOG_LEVEL",
        "INFO",
        "DEBUG, INFO, WARNING or ERROR",
        lambda n, v: _log_level(v),
        doc="`DEBUG`, `INFO`, `WARNING` or `ERROR`",
    ),
    Setting(
        "MS_LOG_FORMAT",
        "text",
        "'text' for people; 'json': one object a line (time, level, logger, message, request_id)",
        lambda n, v: _log_format(v),
        doc=(
            "`text` for people, or `json`: one object a line with `time`, `level`, `logger`, `message` and "
            "`request_id`; access lines add `method`, `transport`, `code`, `duration_ms`, `caller` and `peer`"
        ),
    ),
]


@dataclass(frozen=True)
class Config:
    """The settings, one field each, named after the variable (see Setting)."""

    database_url: str = field(repr=False)  # it may carry a password
    db_pool_size: int
    sqlite_sync: str
    grpc_addr: str
    http_addr: str
    envoy_addr: str | None
    metrics_addr: str | None
    cors_origins: tuple[str, ...]
    bcrypt_cost: int
    access_token_ttl: timedelta
    masterkey_file: str
    signing_key_algorithm: str
    signing_key_rotation: timedelta
    jwks_cache_ttl: timedelta
    issuer: str | None
    federation_allowed_origins: tuple[str, ...]
    client_failure_limit: int
    source_failure_limit: int
    failure_window: timedelta
    request_read_timeout: timedelta
    max_inflight: int
    max_unfinished: int
    max_unfinished_per_source: int
    max_waiting: int
    workers: int
    shutdown_grace: timedelta
    sweep_interval: timedelta
    sweep_batch: int
    write_attempts: int
    trusted_proxies: tuple[Network, ...]
    tls_cert_file: str
    tls_key_file: str
    admin_pat_file: str
    ready_file: str
    log_level: str
    log_format: str

    @property
    def failure_limits(self) -> FailureLimits:
        return FailureLimits(
            self.client_failure_limit, self.source_failure_limit, self.failure_window.total_seconds()
        )


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    parser = argparse.ArgumentParser(
        prog="machine-secrets",
        description="Client secrets for machine users, over gRPC, grpc-web and JSON. Every setting is a"
        " flag or an MS_* environment variable; a flag wins.",
    )
    for s in SETTINGS:
        parser.add_argument(
            s.flag, dest=s.field, default=None, help=f"{s.help} (env {s.env}, default {s.default})"
        )
    args = vars(parser.parse_args(list(argv)))
    config = Config(
        **{s.field: s.parse(s.env, _pick(args[s.field], environ.get(s.env), s.default)) for s in SETTINGS}
    )
    if config.workers > 1 and config.database_url.startswith("sqlite"):
        raise ConfigError(
            f"MS_WORKERS={config.workers} needs PostgreSQL (MS_DATABASE_URL=postgresql://...): SQLite"
            " has one writer, in one process. Use MS_WORKERS=1 with SQLite"
        )
    return config


def _pick(flag: str | None, env: str | None, default: str) -> str:
    if flag is not None:
        return flag
    return env if env else default


def _database_url(value: str) -> str:
    if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError("MS_DATABASE_URL must be sqlite:///path/to/file.db or postgresql://user@host/db")
    return value


def _count(name: str, value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"{name} must be a whole number of at least 1")
    return int(value)


def _networks(value: str) -> tuple[Network, ...]:
    try:
        return parse_networks(value)
    except ValueError:
        raise ConfigError(
            "MS_TRUSTED_PROXIES must be addresses or CIDR blocks, e.g. 10.0.0.0/8, comma-separated"
        ) from None


def _write_attempts(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise ConfigError("MS_WRITE_ATTEMPTS must be a whole number from 1 to 100")
    return int(value)


def _sweep_batch(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise ConfigError("MS_SWEEP_BATCH must be a whole number from 1 to 100000")
    return int(value)


def _pool_size(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 1000:
        raise ConfigError("MS_DB_POOL_SIZE must be a whole number from 1 to 1000")
    return int(value)


def _address(name: str, value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name} must be host:port, e.g. 127.0.0.1:50051")
    return value


def _origins(value: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in value.split(",") if o.strip())
    for origin in origins:
        scheme, sep, rest = origin.partition("://")
        if scheme not in {"http", "https"} or not sep or not rest or "/" in rest:
            raise ConfigError("MS_CORS_ORIGINS must be origins like https://app.example.com, comma-separated")
    return origins


def _fetch_origins(value: str) -> tuple[str, ...]:
    """Origins as scheme://host:port, the port always named (issuer_keys.origin_of compares so)."""
    origins = []
    for item in (o.strip().rstrip("/") for o in value.split(",") if o.strip()):
        try:
            parts = urlsplit(item)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            port = 0
        if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path or not port:
            raise ConfigError(
                "MS_FEDERATION_ALLOWED_ORIGINS must be origins like http://127.0.0.1:9000, comma-separated"
            )
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        origins.append(f"{parts.scheme}://{host}:{port}")
    return tuple(origins)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def _duration(name: str, value: str) -> timedelta:
    number, unit = (value[:-1], value[-1]) if value[-1:] in DURATION_UNITS else (value, "s")
    if not number.isdigit() or int(number) == 0:
        raise ConfigError(f"{name} must be a positive duration: seconds, or a number with s, m or h")
    return timedelta(seconds=int(number) * DURATION_UNITS[unit])


def _issuer(value: str) -> str | None:
    if not value:
        return None
    if not value.startswith(("http://", "https://")) or value.endswith("/"):
        raise ConfigError("MS_ISSUER must be a URL like https://auth.example.com, without a trailing /")
    return value


def _bcrypt_cost(value: str) -> int:
    if not value.isdigit() or not MIN_BCRYPT_COST <= int(value) <= MAX_BCRYPT_COST:
        raise ConfigError(
            f"MS_BCRYPT_COST must be a whole number from {MIN_BCRYPT_COST} to {MAX_BCRYPT_COST}"
        )
    return int(value)


def _bound(name: str, value: str) -> int:
    """A bound on requests at once."""
    if not value.isdigit() or not 1 <= int(value) <= 100_000:
        raise ConfigError(f"{name} must be a whole number from 1 to 100000")
    return int(value)


def _sqlite_sync(value: str) -> str:
    mode = value.lower()
    if mode not in {"full", "normal"}:
        raise ConfigError("MS_SQLITE_SYNC must be full or normal")
    return mode


SIGNING_ALGORITHMS = ("RS256", "ES256")


def _signing_algorithm(value: str) -> str:
    algorithm = value.upper()
    if algorithm not in SIGNING_ALGORITHMS:
        raise ConfigError("MS_SIGNING_KEY_ALGORITHM must be RS256 or ES256")
    return algorithm


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("MS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return level


def _log_format(value: str) -> str:
    log_format = value.lower()
    if log_format not in FORMATS:
        raise ConfigError("MS_LOG_FORMAT must be text or json")
    return log_format


MAX_WORKERS = 64


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= MAX_WORKERS:
        raise ConfigError(f"MS_WORKERS must be a whole number from 1 to {MAX_WORKERS}")
    return int(value)
