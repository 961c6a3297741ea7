"""The real service, started in the test process: its configuration for tests, and a client for
each transport it serves. The fixtures that use these are in conftest.py."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from server import app
from server.clock import SYSTEM_CLOCK, Clock
from server.config import Config
from server.domain.failure_limits import FailureLimits
from server.transport.forwarded import Network
from tests import postgres
from tests.api import Api, ConnectApi, GrpcApi, GrpcWebApi, JsonApi


@dataclass
class Running:
    config: Config
    service: app.Service

    @property
    def admin_token(self) -> str:
        return Path(self.config.admin_pat_file).read_text().strip()

    @property
    def backend(self) -> str:
        return "sqlite" if self.config.database_url.startswith("sqlite") else "postgres"

    @property
    def db_path(self) -> Path:
        assert self.backend == "sqlite"
        return Path(self.config.database_url.removeprefix("sqlite:///"))

    def raw_store(self) -> bytes:
        """Every byte the store holds: SQLite's file and write-ahead log, or PostgreSQL's rows."""
        if self.backend == "postgres":
            return postgres.dump(self.config.database_url)
        return b"".join(p.read_bytes() for p in self.db_path.parent.glob(self.db_path.name + "*"))


# Tests fail client authentication on purpose, from one address: the limits are not their subject.
GENEROUS_LIMITS = FailureLimits(per_client=1000, per_source=1000, window_s=60)


def config_for(
    folder: Path,
    *,
    database_url: str | None = None,
    envoy: bool = False,
    cors_origins: tuple[str, ...] = (),
    bcrypt_cost: int = 4,
    access_token_ttl: timedelta = timedelta(hours=12),
    failure_limits: FailureLimits = GENEROUS_LIMITS,
    request_read_timeout: timedelta = timedelta(seconds=10),
    trusted_proxies: tuple[Network, ...] = (),
    max_inflight: int = 256,
    max_unfinished: int = 1024,
    max_unfinished_per_source: int = 64,
    max_waiting: int = 64,
    sweep_interval: timedelta = timedelta(minutes=10),
    sweep_batch: int = 1000,
    federation_allowed_origins: tuple[str, ...] = (),
    signing_key_algorithm: str = "RS256",
    signing_key_rotation: timedelta = timedelta(days=30),
    jwks_cache_ttl: timedelta = timedelta(minutes=5),
    masterkey_file: Path | None = None,
) -> Config:
    return Config(
        database_url=database_url or f"sqlite:///{folder / 'ms.db'}",
        db_pool_size=10,
        sqlite_sync="full",
        grpc_addr="127.0.0.1:0",
        http_addr="127.0.0.1:0",
        envoy_addr="127.0.0.1:0" if envoy else None,
        metrics_addr="127.0.0.1:0",
        cors_origins=cors_origins,
        bcrypt_cost=bcrypt_cost,
        access_token_ttl=access_token_ttl,
        issuer=None,
        # Made at the first start in the test's folder; a test of a shared store passes one file.
        masterkey_file=str(masterkey_file or folder / "masterkey"),
        signing_key_algorithm=signing_key_algorithm,
        signing_key_rotation=signing_key_rotation,
        jwks_cache_ttl=jwks_cache_ttl,
        federation_allowed_origins=federation_allowed_origins,
        client_failure_limit=failure_limits.per_client,
        source_failure_limit=failure_limits.per_source,
        failure_window=timedelta(seconds=failure_limits.window_s),
        request_read_timeout=request_read_timeout,
        max_inflight=max_inflight,
        max_unfinished=max_unfinished,
        max_unfinished_per_source=max_unfinished_per_source,
        max_waiting=max_waiting,
        workers=1,
        shutdown_grace=timedelta(seconds=10),
        sweep_interval=sweep_interval,
        sweep_batch=sweep_batch,
        write_attempts=8,
        trusted_proxies=trusted_proxies,
        tls_cert_file="",
        tls_key_file="",
        admin_pat_file=str(folder / "admin.pat"),
        ready_file="",
        log_level="DEBUG",
        log_format="text",
    )


async def start_service(config: Config, clock: Clock = SYSTEM_CLOCK) -> Running:
    service = await app.start(config, clock)
    if config.envoy_addr is not None and service.envoy is None:
        await service.stop(0)  # nothing left running, or cleaned up later by a finaliser
        raise AssertionError("Envoy did not start: see the log")
    return Running(config, service)


@contextlib.asynccontextmanager
async def own_service(
    backend: str, folder: Path, clock: Clock = SYSTEM_CLOCK, **settings: Any
) -> AsyncIterator[Running]:
    """A service of the test's own on backend ("sqlite": its file in folder; "postgres": a
    throwaway database), with config_for's settings changed by settings; stopped afterwards."""
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if backend == "postgres" else None
        running = await start_service(config_for(folder, database_url=url, **settings), clock)
        try:
            yield running
        finally:
            await running.service.stop(0)


BACKENDS = ["sqlite", "postgres"]


TRANSPORTS = [
    "grpc",
    "grpc-web",
    "grpc-web-text",
    "connect",
    "connect-binary",
    "envoy-grpc",
    "envoy-grpc-web",
    "envoy-json",
    "envoy-connect",
    "envoy-connect-binary",
]
# The transports whose bodies are JSON: they cannot carry what proto3 JSON cannot say (a Timestamp
# past year 9999, bytes that are not a message).
JSON_TRANSPORTS = ("envoy-json", "connect", "envoy-connect")


def client(transport: str, service: app.Service) -> Api:
    direct, envoy = f"127.0.0.1:{service.grpc_port}", f"127.0.0.1:{service.envoy_port}"
    web = f"http://127.0.0.1:{service.http_port}"
    match transport:
        case "grpc":
            return GrpcApi(transport, direct)
        case "grpc-web":
            return GrpcWebApi(transport, web, text=False)
        case "grpc-web-text":
            return GrpcWebApi(transport, web, text=True)
        case "envoy-grpc":
            return GrpcApi(transport, envoy)
        case "envoy-grpc-web":
            return GrpcWebApi(transport, f"http://{envoy}", text=False)
        case "envoy-json":
            return JsonApi(transport, f"http://{envoy}")
        case "connect":
            return ConnectApi(transport, web)
        case "envoy-connect":
            return ConnectApi(transport, f"http://{envoy}")
        case "connect-binary":
            return ConnectApi(transport, web, binary=True)
        case "envoy-connect-binary":
            return ConnectApi(transport, f"http://{envoy}", binary=True)
    raise ValueError(transport)
