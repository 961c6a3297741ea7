"""Concurrent writers on one user: nothing lost, nothing doubled, and the last secret wins."""

import asyncio

import bcrypt
import grpc
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.events.base import AGGREGATE_USER
from server.events.secret import SecretSet
from tests.api import ApiError
from tests.service import Running
from tests.world import World

CLIENTS, CALLS = 8, 25


async def test_concurrent_add_secret_on_one_user(world: World, running: Running) -> None:
    user_id = await world.machine_user()

    async def client() -> list[user_pb.AddSecretResponse | ApiError]:
        outcomes: list[user_pb.AddSecretResponse | ApiError] = []
        for _ in range(CALLS):
            try:
                outcomes.append(await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id)))
            except ApiError as error:
                outcomes.append(error)
        return outcomes

    outcomes = [o for batch in await asyncio.gather(*(client() for _ in range(CLIENTS))) for o in batch]
    successes = [o for o in outcomes if not isinstance(o, ApiError)]
    failures = [o for o in outcomes if isinstance(o, ApiError)]
    assert all(f.code == grpc.StatusCode.ABORTED for f in failures), failures[:3]

    events = await running.service.store.events(AGGREGATE_USER, user_id)
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert sum(e.type == SecretSet.TYPE for e in events) == len(successes)
    assert sorted(s.details.sequence for s in successes) == list(range(2, len(events) + 1))
    last = max(successes, key=lambda s: s.details.sequence)
    [secret] = await running.service.store.secrets(user_id)
    # The secret of the call with the highest sequence is the one that holds, and only it.
    winners = [s for s in successes if bcrypt.checkpw(s.client_secret.encode(), secret.hash.encode())]
    assert winners == [last]
