"""Overload: past MS_MAX_INFLIGHT calls in flight, a call is refused at once with
RESOURCE_EXHAUSTED (reason OVERLOADED; 429 with Retry-After over JSON and at the token endpoint),
on every transport, and the calls within the bound are answered as usual."""

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import ApiError, exchange
from tests.service import TRANSPORTS, Running, client, config_for, start_service
from tests.world import World

LIMIT = 2
AT_ONCE = 8
# Slow hashes keep calls in flight long enough for the others to find the bound taken.
SLOW_BCRYPT = 12


@pytest.fixture(scope="module")
async def crowded(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    folder = tmp_path_factory.mktemp("overload")
    config = config_for(folder, envoy=True, bcrypt_cost=SLOW_BCRYPT, max_inflight=LIMIT)
    running = await start_service(config)
    yield running
    await running.service.stop(0)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_calls_past_the_bound_are_refused_at_once(crowded: Running, transport: str) -> None:
    api = client(transport, crowded.service)
    try:
        world = await World.create(api, crowded.admin_token)
        user_id = await world.machine_user()

        async def add() -> str:
            try:
                await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
            except ApiError as error:
                return f"{error.code.name} {error.reason} {error.metadata}"
            return "ok"

        outcomes = await asyncio.gather(*(add() for _ in range(AT_ONCE)))
        refused = "RESOURCE_EXHAUSTED OVERLOADED {'retry_after': '1'}"
        assert set(outcomes) == {"ok", refused}, outcomes
        # The bound frees as calls end: one at a time, all succeed.
        assert [await add() for _ in range(3)] == ["ok"] * 3
    finally:
        await api.close()


async def test_json_and_the_token_endpoint_say_when_to_retry(crowded: Running) -> None:
    api = client("grpc", crowded.service)
    try:
        world = await World.create(api, crowded.admin_token)
        user_id = await world.machine_user()
        issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    finally:
        await api.close()
    envoy = f"http://127.0.0.1:{crowded.service.envoy_port}"
    async with httpx.AsyncClient(timeout=60) as http:

        async def add_over_json() -> httpx.Response:
            headers = {"authorization": f"Bearer {crowded.admin_token}"}
            return await http.put(f"{envoy}/users/{user_id}/secret", json={}, headers=headers)

        answers = await asyncio.gather(*(add_over_json() for _ in range(AT_ONCE)))
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    assert {a.status_code for a in answers} <= {200, 429}
    assert all(a.headers["retry-after"] == "1" and a.json()["code"] == 8 for a in refused)

    # The token endpoint: the secret above was replaced by those calls; take the last one's.
    listed_api = client("grpc", crowded.service)
    try:
        world = await World.create(listed_api, crowded.admin_token)
        fresh = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))
    finally:
        await listed_api.close()
    base = f"http://127.0.0.1:{crowded.service.http_port}"
    tokens = await asyncio.gather(
        *(exchange(base, fresh.client_id, fresh.client_secret) for _ in range(AT_ONCE))
    )
    slowed = [t for t in tokens if t.status_code == 429]
    assert slowed, [t.status_code for t in tokens]
    assert {t.status_code for t in tokens} <= {200, 429}
    assert all(t.json()["error"] == "slow_down" and t.headers["retry-after"] == "1" for t in slowed)
    assert issued.client_id == fresh.client_id
