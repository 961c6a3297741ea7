"""What an operator watches: /metrics scraped with prometheus_client's parser, moving as calls are
made on every transport, on an address of its own (MS_METRICS_ADDR) and on none of the API's
ports; the request id of every call, echoed on every transport and written on
every log line; and the JSON log format of a real `python -m server` process."""

import inspect
import json
import re
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb
from prometheus_client.parser import text_string_to_metric_families

from server.config import ConfigError, load
from server.events.base import NewEvent
from server.events.org import OrgAdded
from server.metrics import Metrics, TimedStore
from server.store.contract import ConcurrencyConflict, Store
from server.store.sqlite import SqliteStore
from server.transport.oauth import TOKEN_PATH
from tests.api import ApiError, exchange
from tests.processes import start_with_envoy
from tests.service import Running, config_for, start_service
from tests.world import World

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def value(scrape: str, name: str, **labels: str) -> float:
    """The sum of the samples called name whose labels include these."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(scrape)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def scrape(running: Running) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"http://127.0.0.1:{running.service.metrics_port}/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return answer.text


async def test_metrics_move_with_the_calls(world: World, running: Running) -> None:
    add_secret = "/machinesecrets.v1.UserService/AddSecret"
    user_id = await world.machine_user()
    before = await scrape(running)
    created = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    with pytest.raises(ApiError):
        await world.call("AddSecret", user_pb.AddSecretRequest(user_id="1"))
    with pytest.raises(ApiError):
        await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token="not-a-token")
    base = f"http://127.0.0.1:{running.service.http_port}"
    assert (await exchange(base, created.client_id, created.client_secret)).status_code == 200
    assert (await exchange(base, created.client_id, created.client_secret + "x")).status_code == 401
    after = await scrape(running)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls = "machinesecrets_calls_total"
    assert moved(calls, method=add_secret, code="OK") == 1
    assert moved(calls, method=add_secret, code="NOT_FOUND") == 1
    assert moved(calls, method=TOKEN_PATH, transport="http", code="200") == 1
    assert moved(calls, method=TOKEN_PATH, transport="http", code="401") == 1
    assert moved("machinesecrets_call_duration_seconds_count", method=add_secret) == 2
    assert moved("machinesecrets_call_duration_seconds_sum", method=add_secret) > 0
    assert moved("machinesecrets_authentication_failures_total", reason="TOKEN_INVALID") == 1
    assert moved("machinesecrets_authentication_failures_total", reason="invalid_client") == 1
    assert moved("machinesecrets_access_tokens_issued_total") == 1
    # AddSecret hashes before its write's turn, where it learns that the user does not exist.
    assert moved("machinesecrets_bcrypt_duration_seconds_count", operation="hash") == 2
    assert moved("machinesecrets_bcrypt_duration_seconds_count", operation="verify") == 2
    assert moved("machinesecrets_store_operation_duration_seconds_count", operation="append") >= 2
    # The made-up token was looked up (an unknown token is never cached; the admin's may be).
    assert moved("machinesecrets_store_operation_duration_seconds_count", operation="caller") >= 1
    assert value(after, "machinesecrets_calls_in_flight") == 0  # the scrape is not a call
    assert value(after, "process_resident_memory_bytes") > 0
    assert moved("process_cpu_seconds_total") > 0


async def test_metrics_are_on_their_own_address_and_on_no_api_port(running: Running) -> None:
    """The counts (methods, codes, failed authentications, tokens issued) tell an attacker what
    works: not on the HTTP port, not through Envoy, whoever asks."""
    service = running.service
    assert service.metrics_port not in (service.http_port, service.envoy_port, service.grpc_port)
    async with httpx.AsyncClient() as http:
        for port in (service.http_port, service.envoy_port):
            for method in ("GET", "POST"):
                answer = await http.request(method, f"http://127.0.0.1:{port}/metrics")
                assert answer.status_code == 404, (port, method, answer.text)
                assert "machinesecrets_calls_total" not in answer.text
        # The metrics port serves /metrics and nothing else.
        assert (await http.get(f"http://127.0.0.1:{service.metrics_port}/healthz")).status_code == 404
        assert (await http.get(f"http://127.0.0.1:{service.metrics_port}/metrics")).status_code == 200


def test_metrics_listen_on_loopback_unless_told_otherwise() -> None:
    assert load([], {}).metrics_addr == "127.0.0.1:9464"
    assert load([], {"MS_METRICS_ADDR": "off"}).metrics_addr is None
    assert load(["--metrics-addr", "0.0.0.0:9100"], {}).metrics_addr == "0.0.0.0:9100"
    with pytest.raises(ConfigError, match="MS_METRICS_ADDR must be host:port"):
        load([], {"MS_METRICS_ADDR": "9464"})


async def test_metrics_off_serves_none(tmp_path: Path) -> None:
    started = await start_service(replace(config_for(tmp_path), metrics_addr=None))
    try:
        assert started.service.metrics_port is None
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"http://127.0.0.1:{started.service.http_port}/metrics")
        assert answer.status_code == 404
    finally:
        await started.service.stop(0)


async def test_store_errors_are_counted_by_operation_and_kind(tmp_path: Path) -> None:
    metrics = Metrics()
    store = TimedStore(await SqliteStore.open(f"sqlite:///{tmp_path / 'ms.db'}"), metrics)
    try:
        event = NewEvent("1", 1, "1", OrgAdded("o"))
        await store.append([event])
        with pytest.raises(ConcurrencyConflict):
            await store.append([event])  # the same sequence again
    finally:
        await store.close()
    scraped = metrics.exposition().decode()
    name = "machinesecrets_store_errors_total"
    assert value(scraped, name, operation="append", error="ConcurrencyConflict") == 1
    assert value(scraped, "machinesecrets_store_operation_duration_seconds_count", operation="append") == 2


def test_every_store_operation_is_timed_under_its_own_name() -> None:
    """TimedStore wraps the store's contract method by method (mypy checks their signatures): none
    is left out, and each is timed under its own name."""
    methods = {name for name, _ in inspect.getmembers(Store, inspect.isfunction) if not name.startswith("_")}
    for name in methods - {"observe_appends"}:  # not an operation: it only registers an observer
        assert re.findall(r'_timed\(\s*"(\w+)"', inspect.getsource(getattr(TimedStore, name))) == [name]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        (f"client-{uuid.uuid4()}", True),
        (None, False),
        ("two words", False),  # would split a text log line
        ("x" * 129, False),
    ],
    ids=["sane", "none", "space", "too-long"],
)
async def test_every_call_answers_with_its_request_id(world: World, sent: str | None, kept: bool) -> None:
    user_id = await world.machine_user()
    metadata = [("authorization", f"Bearer {world.admin_token}")]
    if sent is not None:
        metadata.append(("x-request-id", sent))
    seen = []
    await world.api.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), metadata)
    seen.append(world.api.request_id)
    with pytest.raises(ApiError):  # an error answer carries it too
        await world.api.call("GetUserByID", user_pb.GetUserByIDRequest(user_id="1"), metadata)
    seen.append(world.api.request_id)
    for request_id in seen:
        assert request_id is not None
        if kept:
            assert request_id == sent
        else:
            assert UUID.fullmatch(request_id), request_id  # a new one, or Envoy's
    if not kept:
        assert seen[0] != seen[1]


async def test_json_log_lines_carry_the_call_and_its_request_id(tmp_path: Path) -> None:
    process, admin = await start_with_envoy(tmp_path, MS_LOG_FORMAT="json", MS_LOG_LEVEL="DEBUG")
    try:
        method = "/machinesecrets.v1.UserService/AddMachineUser"
        request = user_pb.AddMachineUserRequest(user_name="svc-json-log", name="Service")
        metadata = (("authorization", f"Bearer {admin}"), ("x-request-id", "grpc-call-1"))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{process.grpc_port}") as channel:
            stub = channel.unary_unary(
                method, request_serializer=lambda m: m.SerializeToString(), response_deserializer=bytes
            )
            call = stub(request, metadata=metadata)
            await call
            assert ("x-request-id", "grpc-call-1") in tuple(await call.initial_metadata())
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"http://127.0.0.1:{process.envoy_port}/users/machine",
                json={"userName": "svc-json-log-2", "name": "Service"},
                headers={"authorization": f"Bearer {admin}", "x-request-id": "json-call-2"},
            )
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-request-id"] == "json-call-2"
            token = await http.post(
                f"http://127.0.0.1:{process.envoy_port}{TOKEN_PATH}",
                data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"},
                headers={"x-request-id": "token-call-3"},
            )
            assert token.status_code == 401
            assert token.headers["x-request-id"] == "token-call-3"
    finally:
        assert await process.stop() == 0
    lines = [json.loads(line) for line in process.log if line.strip()]  # every line is JSON
    for line in lines:
        assert {"time", "level", "logger", "message", "request_id"} <= set(line), line
    access = {line["request_id"]: line for line in lines if line["logger"] == "machinesecrets.access"}
    grpc_line, json_line, token_line = access["grpc-call-1"], access["json-call-2"], access["token-call-3"]
    assert (grpc_line["method"], grpc_line["transport"], grpc_line["code"]) == (method, "grpc", "OK")
    assert (json_line["transport"], json_line["code"]) == ("json", "OK")
    assert (token_line["method"], token_line["transport"], token_line["code"]) == (TOKEN_PATH, "http", "401")
    for line in (grpc_line, json_line, token_line):
        assert isinstance(line["duration_ms"], float)
    assert grpc_line["peer"].startswith("ipv4:127.0.0.1:")
    # Through Envoy: the address Envoy saw (loopback, or the sandbox's stand-in for it).
    assert re.fullmatch(r"envoy:(127\.0\.0\.1|192\.0\.2\.\d+)", json_line["peer"]), json_line
    assert re.fullmatch(r"envoy:(127\.0\.0\.1|192\.0\.2\.\d+)", token_line["peer"]), token_line
    assert grpc_line["caller"] == json_line["caller"] != "-"
    assert token_line["caller"] == "-"
    assert any(line["message"].startswith("stopping") for line in lines)
