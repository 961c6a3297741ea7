"""The one place configuration is read: flags, else MS_* environment variables, else defaults."""

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from server.domain.credentials import MAX_BCRYPT_COST, MIN_BCRYPT_COST
from server.domain.failure_limits import FailureLimits
from server.transport.forwarded import Network, parse_networks


class ConfigError(Exception):
    """A setting is invalid; the message names the variable."""


@dataclass(frozen=True)
class Setting:
    env: str
    flag: str
    default: str
    help: str


SETTINGS = [
    Setting("MS_DATABASE_URL", "--database-url", "sqlite:///.data/machine-secrets.db", "the store"),
    Setting("MS_DB_POOL_SIZE", "--db-pool-size", "10", "PostgreSQL connections per process at the most"),
    Setting("MS_GRPC_ADDR", "--grpc-addr", "127.0.0.1:50051", "host:port of the gRPC server"),
    Setting("MS_HTTP_ADDR", "--http-addr", "127.0.0.1:8081", "host:port of grpc-web and the HTTP endpoints"),
    Setting("MS_ENVOY_ADDR", "--envoy-addr", "127.0.0.1:8080", "host:port of Envoy; 'off' starts no Envoy"),
    Setting("MS_CORS_ORIGINS", "--cors-origins", "", "browser origins allowed to call, comma-separated"),
    Setting("MS_BCRYPT_COST", "--bcrypt-cost", "4", "bcrypt cost of new client secrets (4-31)"),
    Setting(
        "MS_ACCESS_TOKEN_TTL", "--access-token-ttl", "12h", "lifetime of access tokens: 3600, 90s, 30m, 12h"
    ),
    Setting("MS_ISSUER", "--issuer", "", "the OAuth issuer URL; empty: the URL the request came to"),
    Setting(
        "MS_CLIENT_FAILURE_LIMIT",
        "--client-failure-limit",
        "10",
        "failed token requests per client and window",
    ),
    Setting(
        "MS_SOURCE_FAILURE_LIMIT",
        "--source-failure-limit",
        "30",
        "failed token requests per address and window",
    ),
    Setting("MS_FAILURE_WINDOW", "--failure-window", "60s", "the window of those limits"),
    Setting(
        "MS_REQUEST_READ_TIMEOUT",
        "--request-read-timeout",
        "10s",
        "how long a request may take to arrive, before DEADLINE_EXCEEDED (token endpoint: 408)",
    ),
    Setting(
        "MS_WRITE_ATTEMPTS",
        "--write-attempts",
        "8",
        "how often a write is decided again after a concurrent write won, before ABORTED (1-100)",
    ),
    Setting(
        "MS_TRUSTED_PROXIES",
        "--trusted-proxies",
        "",
        "proxies whose X-Forwarded-For is believed: addresses or CIDR blocks, comma-separated",
    ),
    Setting("MS_ADMIN_PAT_FILE", "--admin-pat-file", ".data/admin.pat", "where the first admin's token goes"),
    Setting("MS_LOG_LEVEL", "--log-level", "INFO", "DEBUG, INFO, WARNING or ERROR"),
]


@dataclass(frozen=True)
class Config:
    database_url: str = field(repr=False)  # it may carry a password
    db_pool_size: int
    grpc_addr: str
    http_addr: str
    envoy_addr: str | None
    cors_origins: tuple[str, ...]
    bcrypt_cost: int
    access_token_ttl: timedelta
    issuer: str | None
    failure_limits: FailureLimits
    request_read_timeout: timedelta
    write_attempts: int
    trusted_proxies: tuple[Network, ...]
    admin_pat_file: str
    log_level: str


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Config:
    parser = argparse.ArgumentParser(prog="python -m server", description="machine-secrets server")
    for s in SETTINGS:
        parser.add_argument(s.flag, default=None, help=f"{s.help} (env {s.env}, default {s.default})")
    args = vars(parser.parse_args(list(argv)))
    raw = {s.env: _pick(args[s.flag[2:].replace("-", "_")], environ.get(s.env), s.default) for s in SETTINGS}
    return Config(
        database_url=_database_url(raw["MS_DATABASE_URL"]),
        db_pool_size=_pool_size(raw["MS_DB_POOL_SIZE"]),
        grpc_addr=_address("MS_GRPC_ADDR", raw["MS_GRPC_ADDR"]),
        http_addr=_address("MS_HTTP_ADDR", raw["MS_HTTP_ADDR"]),
        envoy_addr=None if raw["MS_ENVOY_ADDR"] == "off" else _address("MS_ENVOY_ADDR", raw["MS_ENVOY_ADDR"]),
        cors_origins=_origins(raw["MS_CORS_ORIGINS"]),
        bcrypt_cost=_bcrypt_cost(raw["MS_BCRYPT_COST"]),
        access_token_ttl=_duration("MS_ACCESS_TOKEN_TTL", raw["MS_ACCESS_TOKEN_TTL"]),
        issuer=_issuer(raw["MS_ISSUER"]),
        failure_limits=FailureLimits(
            per_client=_count("MS_CLIENT_FAILURE_LIMIT", raw["MS_CLIENT_FAILURE_LIMIT"]),
            per_source=_count("MS_SOURCE_FAILURE_LIMIT", raw["MS_SOURCE_FAILURE_LIMIT"]),
            window_s=_duration("MS_FAILURE_WINDOW", raw["MS_FAILURE_WINDOW"]).total_seconds(),
        ),
        request_read_timeout=_duration("MS_REQUEST_READ_TIMEOUT", raw["MS_REQUEST_READ_TIMEOUT"]),
        write_attempts=_write_attempts(raw["MS_WRITE_ATTEMPTS"]),
        trusted_proxies=_networks(raw["MS_TRUSTED_PROXIES"]),
        admin_pat_file=raw["MS_ADMIN_PAT_FILE"],
        log_level=_log_level(raw["MS_LOG_LEVEL"]),
    )


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


def _log_level(value: str) -> str:
    level = value.upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ConfigError("MS_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return level
