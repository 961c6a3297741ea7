"""The server as a whole: first start, restart, health, reflection, limits, logs and signals."""

import asyncio
import json
import os
import re
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_tools import protoc
from machinesecrets.v1 import user_service_pb2 as user_pb

from server import app
from server.config import SETTINGS, Config, ConfigError, Setting, load
from server.store.contract import StoreUnavailable
from tests import postgres
from tests.api import ApiError, GrpcApi
from tests.processes import ServerProcess
from tests.service import Running, config_for, start_service
from tests.world import World

ROOT = Path(__file__).resolve().parent.parent


async def test_the_sqlite_store_is_private(tmp_path: Path) -> None:
    """The store's files (hashes, the audit trail) are 0600 like the admin's token, also one made
    earlier with a wider mode."""
    running = await start_service(config_for(tmp_path))
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        await World.create(api, running.admin_token)  # a write: the -wal and -shm files exist
        files = sorted(tmp_path.glob("ms.db*"))
        assert [f.name for f in files] == ["ms.db", "ms.db-shm", "ms.db-wal"]
        assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}
    finally:
        await api.close()
        await running.service.stop(0)
    (tmp_path / "ms.db").chmod(0o644)
    running = await start_service(config_for(tmp_path))
    await running.service.stop(0)
    assert stat.S_IMODE((tmp_path / "ms.db").stat().st_mode) == 0o600


async def test_first_start_writes_a_private_admin_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = await start_service(config_for(tmp_path))
    await running.service.stop(0)
    path = Path(running.config.admin_pat_file)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = running.admin_token
    assert len(token) >= 43
    start_log = caplog.text
    assert str(path) in start_log
    assert token not in start_log


async def test_a_restart_keeps_everything(tmp_path: Path) -> None:
    config = config_for(tmp_path)
    service = await app.start(config)
    api = GrpcApi("grpc", f"127.0.0.1:{service.grpc_port}")
    world = await World.create(api, Path(config.admin_pat_file).read_text().strip())
    user_id = await world.machine_user(user_name="survivor")
    secret = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    token = await world.token_for(user_id)
    await world.grant(user_id, ["ORG_USER_MANAGER"])
    await api.close()
    await service.stop(0)
    pat_before = Path(config.admin_pat_file).read_text()

    service = await app.start(config)
    api = GrpcApi("grpc", f"127.0.0.1:{service.grpc_port}")
    try:
        assert Path(config.admin_pat_file).read_text() == pat_before  # no second set-up
        again = World(api, world.admin_token, world.home_org)
        user = (
            await again.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
        ).user
        assert (user.user_name, user.has_secret, user.details.sequence) == ("survivor", True, 3)
        rotated = await again.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id), token=token)
        assert rotated.details.sequence == 4
        assert rotated.client_secret != secret.client_secret
    finally:
        await api.close()
        await service.stop(0)


async def test_health_and_reflection_need_no_token(running: Running) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.service.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        for service in ("", "machinesecrets.v1.UserService"):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)  # type: ignore[no-untyped-call]
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        names = [
            s.name
            async for answer in reflect.ServerReflectionInfo(iter([request]))
            for s in answer.list_services_response.service
        ]
        assert {"machinesecrets.v1.UserService", "machinesecrets.v1.OrgService"} <= set(names)


def reflection_v1(folder: Path) -> tuple[type[Message], type[Message], descriptor_pb2.FileDescriptorProto]:
    """The request and answer of reflection v1, and its file, as grpc-proto defines them
    (tests/protos/, compiled here): a v1 client built apart from the service's code."""
    compiled = folder / "reflection_v1.binpb"
    assert protoc.main(["protoc", f"-I{ROOT / 'tests' / 'protos'}", f"--descriptor_set_out={compiled}",
                        "grpc/reflection/v1/reflection.proto"]) == 0  # fmt: skip
    [file] = descriptor_pb2.FileDescriptorSet.FromString(compiled.read_bytes()).file
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    request, response = (
        GetMessageClass(pool.FindMessageTypeByName(f"grpc.reflection.v1.{name}"))
        for name in ("ServerReflectionRequest", "ServerReflectionResponse")
    )
    return request, response, file


def shape(file: descriptor_pb2.FileDescriptorProto) -> object:
    """What a file's messages and services are on the wire: names, numbers, types."""
    return (
        file.package,
        [
            (m.name, [(f.name, f.number, f.type, f.label, f.type_name) for f in m.field])
            for m in file.message_type
        ],
        [(s.name, [(r.name, r.input_type, r.output_type) for r in s.method]) for s in file.service],
    )


@pytest.mark.parametrize("door", ["grpc", "envoy"])
async def test_reflection_v1_lists_and_describes_the_services(
    running: Running, tmp_path: Path, door: str
) -> None:
    request, response, v1_file = reflection_v1(tmp_path)
    port = running.service.grpc_port if door == "grpc" else running.service.envoy_port
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reflect = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        asked = [
            request(list_services=""),
            request(file_containing_symbol="machinesecrets.v1.UserService"),
            request(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
        ]
        listed, user_service, itself = [answer async for answer in reflect(iter(asked))]
    names = {service.name for service in listed.list_services_response.service}
    assert {
        "machinesecrets.v1.UserService",
        "machinesecrets.v1.OrgService",
        "zitadel.user.v2.UserService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= names, names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in user_service.file_descriptor_response.file_descriptor_proto
    ]
    assert "UserService" in [s.name for f in files if f.package == "machinesecrets.v1" for s in f.service]
    [served] = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in itself.file_descriptor_response.file_descriptor_proto
    ]
    assert shape(served) == shape(v1_file)


async def test_requests_over_64_kib_are_refused(world: World) -> None:
    request = user_pb.AddMachineUserRequest(user_name="big", name="n", description="d" * (64 * 1024))
    with pytest.raises(ApiError) as caught:
        await world.call("AddMachineUser", request)
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_one_log_line_per_call_and_no_secrets(world: World, caplog: pytest.LogCaptureFixture) -> None:
    user_id = await world.machine_user()
    caplog.clear()
    secret = (await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))).client_secret
    with pytest.raises(ApiError):
        await world.call("AddSecret", user_pb.AddSecretRequest(user_id="1"))
    token = await world.token_for(user_id)
    lines = [r.getMessage() for r in caplog.records if r.name == "machinesecrets.access"]
    assert len(lines) == 3
    assert re.fullmatch(
        r"/machinesecrets.v1.UserService/AddSecret OK \d+\.\dms caller=\d+ transport=[a-z-]+", lines[0]
    )
    assert " NOT_FOUND " in lines[1]
    everything = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    for value in (secret, token, world.admin_token):
        assert value not in everything


async def test_unexpected_errors_are_internal_without_details(
    world: World, running: Running, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await world.machine_user()

    async def explode(user_id: str) -> None:  # a store read failing in a way nobody planned for
        raise RuntimeError("boom: internals")

    monkeypatch.setattr(running.service.store, "user", explode)
    with pytest.raises(ApiError) as caught:
        await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    error = caught.value
    assert (error.code, error.message, error.reason) == (
        grpc.StatusCode.INTERNAL,
        "internal error",
        "INTERNAL",
    )
    assert "boom" in caplog.text  # the operator sees it in the log; the caller does not


async def test_grpc_health_says_not_serving_while_the_store_is_down(
    running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def check() -> object:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.service.grpc_port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
            answer = await health.Check(
                health_pb2.HealthCheckRequest(service="machinesecrets.v1.UserService")
            )
            return answer.status

    async def becomes(status: object) -> None:
        async with asyncio.timeout(5):  # the watch asks every second
            while await check() != status:  # noqa: ASYNC110 - another process's state, polled
                await asyncio.sleep(0.1)

    async def down() -> bool:
        raise StoreUnavailable("connection refused")

    with monkeypatch.context() as patched:
        patched.setattr(running.service.store, "any_org", down)
        await becomes(health_pb2.HealthCheckResponse.NOT_SERVING)
    await becomes(health_pb2.HealthCheckResponse.SERVING)


async def test_a_store_that_is_down_is_unavailable(
    world: World, running: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_id = await world.machine_user()

    async def down(user_id: str) -> None:
        raise StoreUnavailable("connection refused")

    monkeypatch.setattr(running.service.store, "user", down)
    with pytest.raises(ApiError) as caught:
        await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    error = caught.value
    assert (error.code, error.reason) == (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")
    assert "connection refused" not in error.message


def test_configuration_errors_name_the_variable() -> None:
    for env, message in [
        ({"MS_BCRYPT_COST": "3"}, "MS_BCRYPT_COST"),
        ({"MS_BCRYPT_COST": "ten"}, "MS_BCRYPT_COST"),
        ({"MS_GRPC_ADDR": "nowhere"}, "MS_GRPC_ADDR"),
        ({"MS_DATABASE_URL": "mysql://x"}, "MS_DATABASE_URL"),
        ({"MS_LOG_LEVEL": "LOUD"}, "MS_LOG_LEVEL"),
        ({"MS_LOG_FORMAT": "xml"}, "MS_LOG_FORMAT"),
        ({"MS_SHUTDOWN_GRACE": "soon"}, "MS_SHUTDOWN_GRACE"),
        ({"MS_WORKERS": "0"}, "MS_WORKERS"),
        ({"MS_WORKERS": "2"}, "MS_WORKERS=2 needs PostgreSQL"),
        ({"MS_CLIENT_FAILURE_LIMIT": "0"}, "MS_CLIENT_FAILURE_LIMIT"),
        ({"MS_SOURCE_FAILURE_LIMIT": "many"}, "MS_SOURCE_FAILURE_LIMIT"),
        ({"MS_FAILURE_WINDOW": "1d"}, "MS_FAILURE_WINDOW"),
        ({"MS_ACCESS_TOKEN_TTL": "0"}, "MS_ACCESS_TOKEN_TTL"),
        ({"MS_ISSUER": "ftp://x"}, "MS_ISSUER"),
        ({"MS_SIGNING_KEY_ALGORITHM": "HS256"}, "MS_SIGNING_KEY_ALGORITHM"),
        ({"MS_JWKS_CACHE_TTL": "0"}, "MS_JWKS_CACHE_TTL"),
        ({"MS_DB_POOL_SIZE": "0"}, "MS_DB_POOL_SIZE"),
        ({"MS_CORS_ORIGINS": "not an origin"}, "MS_CORS_ORIGINS"),
        ({"MS_TRUSTED_PROXIES": "10.0.0.0/33"}, "MS_TRUSTED_PROXIES"),
        ({"MS_TRUSTED_PROXIES": "proxy.example.com"}, "MS_TRUSTED_PROXIES"),
        ({"MS_WRITE_ATTEMPTS": "0"}, "MS_WRITE_ATTEMPTS"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load([], env)
    assert load(["--bcrypt-cost", "6"], {"MS_BCRYPT_COST": "5"}).bcrypt_cost == 6
    assert load([], {"MS_BCRYPT_COST": "5"}).bcrypt_cost == 5
    assert "secret-password" not in repr(load([], {"MS_DATABASE_URL": "sqlite:///secret-password.db"}))


def _seconds(value: timedelta) -> float:
    return value.total_seconds()


# Per setting: how to read it off the Config, and two valid values with what each must become.
SETTING_EXAMPLES: dict[str, tuple[Callable[[Config], object], tuple[str, object], tuple[str, object]]] = {
    "MS_DATABASE_URL": (
        lambda c: c.database_url,
        ("sqlite:////srv/ms/x.db", "sqlite:////srv/ms/x.db"),
        ("postgresql://u@127.0.0.1/db", "postgresql://u@127.0.0.1/db"),
    ),
    "MS_DB_POOL_SIZE": (lambda c: c.db_pool_size, ("7", 7), ("1000", 1000)),
    "MS_SQLITE_SYNC": (lambda c: c.sqlite_sync, ("normal", "normal"), ("FULL", "full")),
    "MS_GRPC_ADDR": (lambda c: c.grpc_addr, ("127.0.0.1:6000", "127.0.0.1:6000"), ("[::1]:0", "[::1]:0")),
    "MS_HTTP_ADDR": (
        lambda c: c.http_addr,
        ("127.0.0.1:6001", "127.0.0.1:6001"),
        ("localhost:0", "localhost:0"),
    ),
    "MS_ENVOY_ADDR": (lambda c: c.envoy_addr, ("127.0.0.1:7000", "127.0.0.1:7000"), ("off", None)),
    "MS_SWEEP_INTERVAL": (lambda c: _seconds(c.sweep_interval), ("30s", 30), ("2h", 7200)),
    "MS_SWEEP_BATCH": (lambda c: c.sweep_batch, ("1", 1), ("100000", 100_000)),
    "MS_METRICS_ADDR": (lambda c: c.metrics_addr, ("127.0.0.1:9100", "127.0.0.1:9100"), ("off", None)),
    "MS_CORS_ORIGINS": (
        lambda c: c.cors_origins,
        ("https://a.example.com, http://localhost:3000/", ("https://a.example.com", "http://localhost:3000")),
        ("http://x.test", ("http://x.test",)),
    ),
    "MS_BCRYPT_COST": (lambda c: c.bcrypt_cost, ("5", 5), ("31", 31)),
    "MS_ACCESS_TOKEN_TTL": (lambda c: _seconds(c.access_token_ttl), ("30m", 1800), ("12h", 43200)),
    "MS_ISSUER": (
        lambda c: c.issuer,
        ("https://auth.example.com", "https://auth.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ),
    "MS_MASTERKEY_FILE": (
        lambda c: c.masterkey_file,
        ("/run/secrets/masterkey", "/run/secrets/masterkey"),
        ("keys/master", "keys/master"),
    ),
    "MS_SIGNING_KEY_ALGORITHM": (lambda c: c.signing_key_algorithm, ("es256", "ES256"), ("RS256", "RS256")),
    "MS_SIGNING_KEY_ROTATION": (lambda c: _seconds(c.signing_key_rotation), ("24h", 86400), ("90m", 5400)),
    "MS_JWKS_CACHE_TTL": (lambda c: _seconds(c.jwks_cache_ttl), ("60s", 60), ("10m", 600)),
    "MS_FEDERATION_ALLOWED_ORIGINS": (
        lambda c: c.federation_allowed_origins,
        ("http://127.0.0.1:9000", ("http://127.0.0.1:9000",)),
        ("https://idp.lab.test, http://[::1]:8000/", ("https://idp.lab.test:443", "http://[::1]:8000")),
    ),
    "MS_CLIENT_FAILURE_LIMIT": (lambda c: c.failure_limits.per_client, ("3", 3), ("100", 100)),
    "MS_SOURCE_FAILURE_LIMIT": (lambda c: c.failure_limits.per_source, ("4", 4), ("200", 200)),
    "MS_FAILURE_WINDOW": (lambda c: c.failure_limits.window_s, ("2m", 120), ("1h", 3600)),
    "MS_REQUEST_READ_TIMEOUT": (lambda c: _seconds(c.request_read_timeout), ("90s", 90), ("45", 45)),
    "MS_WRITE_ATTEMPTS": (lambda c: c.write_attempts, ("1", 1), ("100", 100)),
    "MS_MAX_INFLIGHT": (lambda c: c.max_inflight, ("1", 1), ("100000", 100000)),
    "MS_MAX_UNFINISHED": (lambda c: c.max_unfinished, ("1", 1), ("5000", 5000)),
    "MS_MAX_UNFINISHED_PER_SOURCE": (lambda c: c.max_unfinished_per_source, ("2", 2), ("100000", 100000)),
    "MS_MAX_WAITING": (lambda c: c.max_waiting, ("1", 1), ("4096", 4096)),
    "MS_TRUSTED_PROXIES": (
        lambda c: [str(n) for n in c.trusted_proxies],
        ("10.0.0.0/8, 192.0.2.7", ["10.0.0.0/8", "192.0.2.7/32"]),
        ("::1", ["::1/128"]),
    ),
    "MS_TLS_CERT_FILE": (
        lambda c: c.tls_cert_file,
        ("/etc/ms/tls.crt", "/etc/ms/tls.crt"),
        ("c.pem", "c.pem"),
    ),
    "MS_TLS_KEY_FILE": (lambda c: c.tls_key_file, ("/etc/ms/tls.key", "/etc/ms/tls.key"), ("k.pem", "k.pem")),
    "MS_ADMIN_PAT_FILE": (lambda c: c.admin_pat_file, ("/srv/ms/a.pat", "/srv/ms/a.pat"), ("b.pat", "b.pat")),
    "MS_READY_FILE": (
        lambda c: c.ready_file,
        ("/run/ms/ready.json", "/run/ms/ready.json"),
        ("r.json", "r.json"),
    ),
    "MS_LOG_LEVEL": (lambda c: c.log_level, ("debug", "DEBUG"), ("ERROR", "ERROR")),
    "MS_LOG_FORMAT": (lambda c: c.log_format, ("JSON", "json"), ("text", "text")),
    "MS_SHUTDOWN_GRACE": (lambda c: _seconds(c.shutdown_grace), ("30s", 30), ("2m", 120)),
    "MS_WORKERS": (lambda c: c.workers, ("1", 1), ("1", 1)),
}


def test_every_setting_has_examples() -> None:
    assert set(SETTING_EXAMPLES) == {s.env for s in SETTINGS}


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_each_setting_from_the_variable_and_the_flag_which_wins(setting: Setting) -> None:
    read, (first, first_value), (second, second_value) = SETTING_EXAMPLES[setting.env]
    assert read(load([], {setting.env: first})) == first_value
    assert read(load([setting.flag, second], {})) == second_value
    assert read(load([setting.flag, second], {setting.env: first})) == second_value  # the flag wins
    # Unset and empty both mean the default, which is itself a valid value.
    assert (
        read(load([], {}))
        == read(load([], {setting.env: ""}))
        == read(load([], {setting.env: setting.default}))
    )


async def test_the_issuer_setting_names_the_discovery_documents_urls(tmp_path: Path) -> None:
    running = await start_service(replace(config_for(tmp_path), issuer="https://auth.example.com"))
    try:
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                f"http://127.0.0.1:{running.service.http_port}/.well-known/openid-configuration"
            )
        assert answer.json()["issuer"] == "https://auth.example.com"
        assert answer.json()["token_endpoint"] == "https://auth.example.com/oauth/v2/token"
    finally:
        await running.service.stop(0)


async def test_python_m_server_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    process = await ServerProcess.start(f"sqlite:///{tmp_path}/ms.db", tmp_path)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)  # type: ignore[no-untyped-call]
        assert (
            await health.Check(health_pb2.HealthCheckRequest())
        ).status == health_pb2.HealthCheckResponse.SERVING
    assert await process.stop() == 0
    assert any("stopping" in line for line in process.log)


async def test_the_ready_file_names_every_bound_port_while_serving(tmp_path: Path) -> None:
    process = await ServerProcess.start(f"sqlite:///{tmp_path}/ms.db", tmp_path, MS_ENVOY_ADDR="127.0.0.1:0")
    ready = json.loads(process.launched.ready_file.read_text())
    assert ready == {
        "grpc": process.grpc_port,
        "http": process.http_port,
        "envoy": process.envoy_port,
        "metrics": process.metrics_port,
        "pid": process.pid,
    }
    log = "".join(process.log)  # the log says the same
    assert f"gRPC listening on 127.0.0.1:{ready['grpc']}" in log
    assert f"grpc-web and HTTP listening on 127.0.0.1:{ready['http']}" in log
    assert f"listening on 127.0.0.1:{ready['envoy']}" in log
    assert f"metrics listening on 127.0.0.1:{ready['metrics']}" in log
    assert await process.stop() == 0
    assert not process.launched.ready_file.exists()  # a stopped service names no ports


async def test_a_taken_port_fails_the_start(running: Running, tmp_path: Path) -> None:
    config = config_for(tmp_path / "second")
    grpc_taken = f"127.0.0.1:{running.service.grpc_port}"
    with pytest.raises(ConfigError, match=f"cannot listen on {grpc_taken} \\(MS_GRPC_ADDR\\)"):
        await app.start(replace(config, grpc_addr=grpc_taken))
    http_taken = f"127.0.0.1:{running.service.http_port}"
    with pytest.raises(ConfigError, match=f"cannot listen on {http_taken} \\(MS_HTTP_ADDR\\)"):
        await app.start(replace(config, http_addr=http_taken))
    metrics_taken = f"127.0.0.1:{running.service.metrics_port}"
    with pytest.raises(ConfigError, match=f"cannot listen on {metrics_taken} \\(MS_METRICS_ADDR\\)"):
        await app.start(replace(config, metrics_addr=metrics_taken))


@pytest.mark.parametrize("setting", ["MS_GRPC_ADDR", "MS_HTTP_ADDR", "MS_METRICS_ADDR"])
async def test_a_taken_port_is_one_line_that_names_the_setting(
    running: Running, tmp_path: Path, setting: str
) -> None:
    port = {
        "MS_GRPC_ADDR": running.service.grpc_port,
        "MS_HTTP_ADDR": running.service.http_port,
        "MS_METRICS_ADDR": running.service.metrics_port,
    }[setting]
    environment = server_env(
        f"sqlite:///{tmp_path}/ms.db", tmp_path / "admin.pat", **{setting: f"127.0.0.1:{port}"}
    )
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("machine-secrets:")]
    assert f"127.0.0.1:{port} ({setting})" in line
    assert "port 0" in line


@pytest.mark.parametrize("case", ["no such database", "closed port"])
def test_a_postgres_url_that_cannot_work_says_why_at_once(case: str, tmp_path: Path) -> None:
    """At start, PostgreSQL's own reason in one line, within the connect timeout (3 s), exit 2 (a
    database that goes away later is UNAVAILABLE and recovers: test_scale_out.py)."""
    if case == "no such database":
        server = urllib.parse.urlsplit(postgres.admin_url())
        url = urllib.parse.urlunsplit(server._replace(path="/ms_no_such_database"))
        reason = 'database "ms_no_such_database" does not exist'
    else:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            url = f"postgresql://postgres:not-a-real-password@127.0.0.1:{probe.getsockname()[1]}/x"
        reason = "Connection refused"
    environment = server_env(url, tmp_path / "admin.pat")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "server"], cwd=ROOT, env=environment, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    # Not a speed test: the pool alone would wait 9 s; 3 s is the bound, and 3 more is the start.
    assert time.monotonic() - started < 3 + 3
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.startswith("machine-secrets:")]
    assert line.startswith("machine-secrets: MS_DATABASE_URL: cannot open the PostgreSQL store:")
    assert reason in line
    assert "not-a-real-password" not in result.stderr


def test_configuration_errors_stop_the_process() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "server"],
        cwd=ROOT,
        env={**os.environ, "MS_BCRYPT_COST": "99"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "MS_BCRYPT_COST" in result.stderr
    assert "Traceback" not in result.stderr


async def test_envoy_dies_with_a_killed_service(tmp_path: Path) -> None:
    process = await ServerProcess.start(f"sqlite:///{tmp_path}/ms.db", tmp_path, MS_ENVOY_ADDR="127.0.0.1:0")
    await process.wait_for_log("Envoy (JSON")
    pid = process.pid
    [envoy_pid] = [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    await process.kill()
    async with asyncio.timeout(10):
        # Another process's state has no event to wait on: poll it.
        while Path(f"/proc/{envoy_pid}").exists() and "zombie" not in _state(envoy_pid):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    # A killed service cleans nothing up: its folders (Envoy's, the private socket's) stay in /tmp
    # until the next start on this machine removes those of dead processes, and only those.
    left = sorted(Path(tempfile.gettempdir()).glob(f"machinesecrets-*pid{pid}-*"))
    assert len(left) == 2, left
    ours = f"machinesecrets-*pid{os.getpid()}-*"  # this process may run other services already
    before = set(Path(tempfile.gettempdir()).glob(ours))
    running = await start_service(config_for(tmp_path / "next", envoy=True))
    try:
        assert not any(folder.exists() for folder in left)
        made = set(Path(tempfile.gettempdir()).glob(ours)) - before
        assert len(made) == 2, made
    finally:
        await running.service.stop(0)
    assert not any(folder.exists() for folder in made)  # a service that stops removes its own


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0].lower()
    except (FileNotFoundError, IndexError):
        return "gone"


def server_env(database_url: str, pat_file: Path, **settings: str) -> dict[str, str]:
    """`python -m server`'s environment: this store, the admin's token at pat_file, free ports, no
    Envoy, and settings on top."""
    return {
        **os.environ,
        "MS_DATABASE_URL": database_url,
        "MS_ADMIN_PAT_FILE": str(pat_file),
        "MS_GRPC_ADDR": "127.0.0.1:0",
        "MS_HTTP_ADDR": "127.0.0.1:0",
        "MS_ENVOY_ADDR": "off",
        "MS_METRICS_ADDR": "127.0.0.1:0",
        **settings,
    }


def env_with_pat_file(path: Path, database: Path) -> dict[str, str]:
    """`python -m server`'s environment for a new store with the admin's token at path."""
    return server_env(f"sqlite:///{database}", path)


# Each trap, and the reason the refusal must name: a trap refused for another reason would pass
# with its own check removed (a directory that is a link is also "writable by others", its mode
# being the link's 0777).
PAT_FILE_TRAPS = {
    "a link to a file of someone else's": "is a symbolic link",
    "a link to a file of ours": "is a symbolic link",
    "a file another user owns": "belongs to another user (uid 65534)",
    "a directory others may write to": "is writable by other users",
    "a directory that is a link": "linked is a symbolic link",
}


@pytest.mark.parametrize("prepare", PAT_FILE_TRAPS)
def test_the_admin_token_is_never_written_where_someone_else_prepared(tmp_path: Path, prepare: str) -> None:
    """Each trap of the report is refused with one line naming the setting and the reason, before
    the store is set up (so no admin token is lost), and the trap's target is untouched. A server
    that starts serving instead fails the test as soon as it is ready, not after a timeout."""
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim"
    victim.write_text("untouched\n")
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    path = home / "admin.pat"
    if prepare == "a link to a file of someone else's":
        os.chown(victim, 65534, 65534)
        path.symlink_to(victim)
    elif prepare == "a link to a file of ours":
        path.symlink_to(victim)
    elif prepare == "a file another user owns":
        path.write_text("")
        os.chown(path, 65534, 65534)
    elif prepare == "a directory others may write to":
        home.chmod(0o777)
    else:
        path = tmp_path / "linked" / "admin.pat"
        (tmp_path / "linked").symlink_to(outside)
    ready = tmp_path / "ready.json"
    env = {**env_with_pat_file(path, tmp_path / "ms.db"), "MS_READY_FILE": str(ready)}
    log = tmp_path / "server.log"
    with log.open("w") as sink:  # a file, not a pipe: a server that does start would fill a pipe
        process = subprocess.Popen(
            [sys.executable, "-m", "server"], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:
        while process.poll() is None and not ready.exists():
            time.sleep(0.02)
        assert not ready.exists(), "the server started, with its token written where the trap was"
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=60)
    stderr = log.read_text()
    assert process.returncode == 2, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("machine-secrets: MS_ADMIN_PAT_FILE"), stderr[-2000:]
    assert PAT_FILE_TRAPS[prepare] in last, last
    assert "Traceback" not in stderr
    assert victim.read_text() == "untouched\n"
    assert not (tmp_path / "ms.db").exists() or b"user.pat.added" not in (tmp_path / "ms.db").read_bytes()


def test_the_admin_token_replaces_a_stale_file_of_ours(tmp_path: Path) -> None:
    path = tmp_path / "admin.pat"
    path.write_text("stale\n")
    path.chmod(0o644)
    process = subprocess.Popen(
        [sys.executable, "-m", "server"], cwd=ROOT, env=env_with_pat_file(path, tmp_path / "ms.db")
    )
    try:
        for _ in range(600):
            if path.read_text() != "stale\n":
                break
            time.sleep(0.05)
        assert len(path.read_text().strip()) >= 43
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".admin.pat")] == []
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_the_liveness_and_readiness_probes(tmp_path: Path) -> None:
    running = await start_service(config_for(tmp_path))
    base = f"http://127.0.0.1:{running.service.http_port}"
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            alive, ready = await http.get("/healthz"), await http.get("/readyz")
            assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            assert ready.headers["cache-control"] == "no-store"
            await running.service.store.close()  # the store goes away; the process does not
            alive, ready = await http.get("/healthz"), await http.get("/readyz")
            assert alive.status_code == 200
            assert (ready.status_code, ready.json()["status"]) == (503, "unavailable")
    finally:
        await running.service.stop(0)
