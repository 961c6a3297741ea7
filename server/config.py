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
    of Config follow from the variable's name (MS_GRPC_ADDR: --grpc-addr, grpc_addr)."""

    env: str
    default: str
    help: str
    parse: Callable[[str, str], Any]  # (variable name, text) -> value; raises ConfigError

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
        "MS_DATABASE_URL", "sqlite:///.data/machine-secrets.db", "the store", lambda n, v: _database_url(v)
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
    ),
    Setting(
        "MS_METRICS_ADDR",
        "127.0.0.1:9464",
        "host:port of /metrics (Prometheus), apart from the API's ports; 'off' serves none",
        lambda n, v: None if v == "off" else _address(n, v),
    ),
    Setting(
        "MS_CORS_ORIGINS", "", "browser origins allowed to call, comma-separated", lambda n, v: _origins(v)
    ),
    Setting("MS_BCRYPT_COST", "4", "bcrypt cost of new client secrets (4-31)", lambda n, v: _bcrypt_cost(v)),
    Setting(
        "MS_ACCESS_TOKEN_TTL",
        "12h",
        "lifetime of access tokens: 3600, 90s, 30m, 12h",
        lambda n, v: _duration(n, v),
    ),
    Setting(
        "MS_ISSUER", "", "the OAuth issuer URL; empty: the URL the request came to", lambda n, v: _issuer(v)
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
    ),
    Setting(
        "MS_SOURCE_FAILURE_LIMIT",
        "30",
        "failed token requests per address and window",
        lambda n, v: _count(n, v),
    ),
    Setting("MS_FAILURE_WINDOW", "60s", "the window of those limits", lambda n, v: _duration(n, v)),
    Setting(
        "MS_REQUEST_READ_TIMEOUT",
        "10s",
        "how long a request may take to arrive, before DEADLINE_EXCEEDED (token endpoint: 408)",
        lambda n, v: _duration(n, v),
    ),
    Setting(
        "MS_MAX_INFLIGHT",
        "256",
        "calls a process works on at once; past it, RESOURCE_EXHAUSTED (429 with Retry-After) at once",
        lambda n, v: _bound(n, v),
    ),
    Setting(
        "MS_MAX_UNFINISHED",
        "1024",
        "requests a process lets arrive at once (their body still on its way); past it,"
        " RESOURCE_EXHAUSTED (429) at once",
        lambda n, v: _bound(n, v),
    ),
    Setting(
        "MS_MAX_UNFINISHED_PER_SOURCE",
        "64",
        "requests one client address may have arriving at once; past it, RESOURCE_EXHAUSTED (429)",
        lambda n, v: _bound(n, v),
    ),
    Setting(
        "MS_WORKERS",
        "1",
        "server processes sharing the gRPC and HTTP ports behind the one Envoy (PostgreSQL only); a"
        " worker that dies is started again",
        lambda n, v: _workers(v),
    ),
    Setting(
        "MS_SHUTDOWN_GRACE",
        "10s",
        "on SIGTERM or Ctrl-C: how long calls in flight may take to finish before the service exits",
        lambda n, v: _duration(n, v),
    ),
    Setting(
        "MS_SWEEP_INTERVAL",
        "10m",
        "how often each process forgets expired access tokens and personal access tokens",
        lambda n, v: _duration(n, v),
    ),
    Setting(
        "MS_SWEEP_BATCH",
        "1000",
        "expired credentials forgotten per transaction of a sweep (1-100000)",
        lambda n, v: _sweep_batch(v),
    ),
    Setting(
        "MS_WRITE_ATTEMPTS",
        "8",
        "how often a write is decided again after a concurrent write won, before ABORTED (1-100)",
        lambda n, v: _write_attempts(v),
    ),
    Setting(
        "MS_TRUSTED_PROXIES",
        "",
        "proxies whose X-Forwarded-For is believed: addresses or CIDR blocks, comma-separated",
        lambda n, v: _networks(v),
    ),
    Setting(
        "MS_TLS_CERT_FILE",
        "",
        "PEM certificate (a chain is allowed) for TLS on every port: Envoy's, gRPC's and HTTP's;"
        " empty: plaintext",
        _text,
    ),
    Setting("MS_TLS_KEY_FILE", "", "PEM private key of MS_TLS_CERT_FILE, unencrypted", _text),
    Setting("MS_ADMIN_PAT_FILE", ".data/admin.pat", "where the first admin's token goes", _text),
    Setting(
        "MS_READY_FILE",
        "",
        "once serving, write every bound port here as JSON (for tools and tests); empty: none",
        _text,
    ),
    Setting("MS_LOG_LEVEL", "INFO", "DEBUG, INFO, WARNING or ERROR", lambda n, v: _log_level(v)),
    Setting(
        "MS_LOG_FORMAT",
        "text",
        "'text' for people; 'json': one object a line (time, level, logger, message, request_id)",
        lambda n, v: _log_format(v),
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
    issuer: str | None
    federation_allowed_origins: tuple[str, ...]
    client_failure_limit: int
    source_failure_limit: int
    failure_window: timedelta
    request_read_timeout: timedelta
    max_inflight: int
    max_unfinished: int
    max_unfinished_per_source: int
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
