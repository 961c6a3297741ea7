"""`POST /secrets/revoke`: a leaked secret, reported by whoever holds it, stops working at once. On
the HTTP port and through Envoy, on both stores; the answer is no oracle."""

import contextlib
import ipaddress
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import bcrypt
import grpc
import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.failure_limits import FailureLimits
from server.domain.secret_format import checksum, random_characters
from server.store import events as ev
from server.transport.revocation import REVOKE_PATH
from tests import postgres
from tests.api import GrpcApi, exchange, expect_error
from tests.service import BACKENDS, Running, config_for, start_service
from tests.world import World, unique_name

DOORS = ["http", "envoy"]


def base_url(running: Running, door: str) -> str:
    port = running.service.http_port if door == "http" else running.service.envoy_port
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def world(running: Running) -> AsyncIterator[World]:
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    yield await World.create(api, running.admin_token)
    await api.close()


async def report(base: str, body: Any, content_type: str = "application/json") -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        if isinstance(body, bytes):
            return await http.post(base + REVOKE_PATH, content=body, headers={"content-type": content_type})
        return await http.post(base + REVOKE_PATH, json=body)


async def issued_secret(world: World) -> tuple[str, str, str]:
    """A machine user with one secret: its id, user name and secret."""
    name = unique_name("leaky")
    user_id = await world.machine_user(user_name=name)
    created: user_pb.CreateSecretResponse = await world.call(
        "CreateSecret", user_pb.CreateSecretRequest(user_id=user_id)
    )
    return user_id, name, created.client_secret


def with_bad_checksum(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + ("0" if last != "0" else "1")


@contextlib.contextmanager
def counted_bcrypt(monkeypatch: pytest.MonkeyPatch) -> Iterator[Counter[str]]:
    calls: Counter[str] = Counter()
    real = bcrypt.checkpw

    def checkpw(password: bytes, hashed: bytes) -> bool:
        calls["checkpw"] += 1
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", checkpw)
    yield calls


@pytest.mark.parametrize("door", DOORS)
async def test_a_reported_secret_stops_working_at_once(world: World, running: Running, door: str) -> None:
    user_id, name, secret = await issued_secret(world)
    _, bystander_name, bystander = await issued_secret(world)
    token_base = f"http://127.0.0.1:{running.service.http_port}"
    access = (await exchange(token_base, name, secret)).json()["access_token"]

    answer = await report(base_url(running, door), {"secrets": [secret, "not a secret at all"]})
    assert (answer.status_code, answer.json()) == (200, {"received": 2})
    assert answer.headers["cache-control"] == "no-store"
    refused = await exchange(token_base, name, secret)
    assert (refused.status_code, refused.json()["error"]) == (401, "invalid_client")
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=access),
    )
    listed: user_pb.ListSecretsResponse = await world.call(
        "ListSecrets", user_pb.ListSecretsRequest(user_id=user_id)
    )
    assert list(listed.secrets) == []
    [*_, revoked] = await running.service.store.events(ev.AGGREGATE_USER, user_id)
    assert revoked.type == ev.USER_MACHINE_SECRET_REVOKED
    assert set(revoked.payload) == {"secret_id", "source"}
    # The caller's address: through Envoy, the one it appended to X-Forwarded-For (what Envoy saw;
    # on some sandboxes' loopback that is not 127.0.0.1).
    source = ipaddress.ip_address(revoked.payload["source"])
    assert door == "envoy" or str(source) == "127.0.0.1"
    # Someone else's secret is untouched; reporting a revoked secret again changes nothing more.
    assert (await exchange(token_base, bystander_name, bystander)).status_code == 200
    again = await report(base_url(running, door), {"secrets": [secret]})
    assert (again.status_code, again.json()) == (200, {"received": 1})
    assert (await running.service.store.events(ev.AGGREGATE_USER, user_id))[-1] == revoked
    assert secret.encode() not in running.raw_store()


@pytest.mark.parametrize("door", DOORS)
async def test_the_answer_is_the_same_whatever_matched(
    world: World, running: Running, door: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bcrypt check per well-formed string, against a dummy hash when nothing matches; none for
    a string whose checksum is wrong; one event per report: the same answer in the same work."""
    _, _, live = await issued_secret(world)
    unknown = "msk_" + random_characters(55)
    unknown += checksum(unknown)
    cases = {
        "live": [live],
        "well-formed, unknown": [unknown],
        "bad checksum": [with_bad_checksum(live)],
        "legacy-looking": [random_characters(64)],
    }
    answers, work = {}, {}
    before = running.raw_store().count(ev.REVOCATION_RECEIVED.encode())
    for case, secrets in cases.items():
        with counted_bcrypt(monkeypatch) as calls:
            answer = await report(base_url(running, door), {"secrets": secrets})
        answers[case] = (answer.status_code, answer.text, answer.headers["content-type"])
        work[case] = calls["checkpw"]
    assert len(set(answers.values())) == 1, answers
    assert work == {"live": 1, "well-formed, unknown": 1, "bad checksum": 0, "legacy-looking": 0}
    assert running.raw_store().count(ev.REVOCATION_RECEIVED.encode()) >= before + len(cases)


@pytest.mark.parametrize("door", DOORS)
async def test_bad_reports_are_refused_clearly(running: Running, door: str) -> None:
    base = base_url(running, door)
    cases: list[tuple[Any, int, str]] = [
        (b"{not json", 400, "not valid JSON"),
        ({"secret": ["x"]}, 400, '{"secrets"'),
        ({"secrets": "msk_x"}, 400, "list of strings"),
        ({"secrets": [1]}, 400, "list of strings"),
        ({"secrets": []}, 400, "1 to 100"),
        ({"secrets": ["x"] * 101}, 400, "1 to 100"),
        ({"secrets": ["x" * 201]}, 400, "longer than 200"),
    ]
    for body, status, words in cases:
        answer = await report(base, body)
        assert (answer.status_code, answer.json()["error"]) == (status, "invalid_request"), body
        assert words in answer.json()["error_description"]
    answer = await report(base, b'{"secrets": ["x"]}', content_type="text/plain")
    assert answer.status_code == 415
    async with httpx.AsyncClient() as http:
        answer = await http.get(base + REVOKE_PATH)
    assert (answer.status_code, answer.json()["error"]) == (405, "invalid_request")


@pytest.mark.parametrize("backend", BACKENDS)
async def test_reports_are_limited_per_source(backend: str, tmp_path: Path) -> None:
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if backend == "postgres" else None
        limits = FailureLimits(per_client=1000, per_source=3, window_s=60)
        running = await start_service(
            config_for(tmp_path, database_url=url, envoy=True, failure_limits=limits)
        )
        try:
            for door in DOORS:  # each door sees its caller at its own address (see above)
                statuses = []
                for _ in range(4):
                    answer = await report(base_url(running, door), {"secrets": ["msk_" + "0" * 61]})
                    statuses.append(answer.status_code)
                assert statuses == [200, 200, 200, 429], door
                assert int(answer.headers["retry-after"]) >= 1
                assert answer.json()["error"] == "slow_down"
        finally:
            await running.service.stop(0)
