"""The sweep of expired credentials (server/sweep.py), on each store, with the service's clock moved
past expiry instead of waiting: expired access tokens (of a live secret) and expired personal
access tokens are forgotten, a batch at a time; live ones, and ones that never expire, stay and
still work; the events that made them stay too; two sweeps at once, on two connections, both
succeed; and the service runs the sweep by itself every MS_SWEEP_INTERVAL."""

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import psycopg
import pytest
from google.protobuf import timestamp_pb2
from machinesecrets.v1 import user_service_pb2 as user_pb

from server import app
from server.clock import ShiftedClock
from server.domain.credentials import token_hash
from server.sweep import Sweeper
from tests import postgres
from tests.api import ApiError, GrpcApi, exchange
from tests.service import BACKENDS, Running, own_service
from tests.world import World

TTL = timedelta(hours=1)
BATCH = 2  # several batches in one run


def rows(running: Running, query: str) -> list[tuple[object, ...]]:
    if running.backend == "postgres":
        with psycopg.connect(running.config.database_url) as connection:
            return [tuple(row) for row in connection.execute(query).fetchall()]
    with contextlib.closing(sqlite3.connect(running.db_path)) as connection:
        return connection.execute(query).fetchall()


def stored_hashes(running: Running) -> set[str]:
    return {str(row[0]) for row in rows(running, "SELECT token_hash FROM tokens")}


@contextlib.asynccontextmanager
async def service_on(
    backend: str, folder: Path, clock: ShiftedClock, interval: timedelta = timedelta(minutes=10)
) -> AsyncIterator[Running]:
    async with own_service(
        backend, folder, clock, access_token_ttl=TTL, sweep_interval=interval, sweep_batch=BATCH
    ) as running:
        yield running


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(moment)
    return ts


async def pat(world: World, user_id: str, expires_at: datetime | None) -> str:
    request = user_pb.AddPersonalAccessTokenRequest(user_id=user_id)
    if expires_at is not None:
        request.expiration_date.CopyFrom(stamp(expires_at))
    return str((await world.call("AddPersonalAccessToken", request)).token)


async def access_tokens(running: Running, client_id: str, secret: str, count: int) -> list[str]:
    base = f"http://127.0.0.1:{running.service.http_port}"
    answers = [await exchange(base, client_id, secret) for _ in range(count)]
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    return [str(a.json()["access_token"]) for a in answers]


async def authenticates(world: World, token: str, user_id: str) -> bool:
    """Whether the token is taken as a caller (which need not hold the permission to read)."""
    try:
        await world.call("GetUserByID", user_pb.GetUserByIDRequest(user_id=user_id), token=token)
    except ApiError as error:
        return error.code != grpc.StatusCode.UNAUTHENTICATED
    return True


@pytest.mark.parametrize("backend", BACKENDS)
async def test_a_sweep_forgets_expired_credentials_and_keeps_live_ones(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres.admin_url()  # skips, or fails when PostgreSQL is required, before anything starts
    clock = ShiftedClock()
    async with service_on(backend, tmp_path, clock) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        try:
            world = await World.create(api, running.admin_token)
            client = await world.machine_user()
            secret = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=client))
            expired_access = await access_tokens(running, secret.client_id, secret.client_secret, 3)
            holder = await world.machine_user()
            now = datetime.now(UTC) + clock.offset
            expired_pat = await pat(world, holder, now + timedelta(minutes=30))
            later_pat = await pat(world, holder, now + timedelta(hours=4))
            endless_pat = await pat(world, holder, None)

            clock.advance(timedelta(minutes=90))  # past the access tokens' hour and the first PAT
            [live_access] = await access_tokens(running, secret.client_id, secret.client_secret, 1)
            expired = {token_hash(t) for t in [*expired_access, expired_pat]}
            live = {token_hash(t) for t in [live_access, later_pat, endless_pat, running.admin_token]}
            assert expired | live <= stored_hashes(running)  # refused, but kept until now
            for token in (*expired_access, expired_pat):
                assert not await authenticates(world, token, client)
            events_before = rows(running, "SELECT COUNT(*) FROM events")

            assert await running.service.sweeper.sweep() == len(expired)  # in batches of BATCH

            assert not expired & stored_hashes(running)
            assert live <= stored_hashes(running)
            assert rows(running, "SELECT COUNT(*) FROM events") == events_before  # no event written
            for token, owner in ((live_access, client), (later_pat, holder), (endless_pat, holder)):
                assert await authenticates(world, token, owner)
            listed = await world.call(
                "ListPersonalAccessTokens", user_pb.ListPersonalAccessTokensRequest(user_id=holder)
            )
            assert len(listed.tokens) == 2
            assert await running.service.sweeper.sweep() == 0

            # Two processes sweep at once (two connections to the store): both succeed, each
            # finds the one row expired by then (or, on SQLite, the first takes it), and it goes.
            clock.advance(timedelta(hours=1))  # the fresh access token expires now
            other = await app.open_store(running.config, clock)
            try:
                sweeps = [
                    Sweeper(store, clock, 600, BATCH).sweep() for store in (running.service.store, other)
                ]
                found = await asyncio.gather(*sweeps)
            finally:
                await other.close()
            assert sorted(found) in ([0, 1], [1, 1]), found
            assert token_hash(live_access) not in stored_hashes(running)
            assert {token_hash(later_pat), token_hash(endless_pat)} <= stored_hashes(running)
        finally:
            await api.close()


async def test_the_service_sweeps_by_itself_every_interval(tmp_path: Path) -> None:
    clock = ShiftedClock()
    async with service_on("sqlite", tmp_path, clock, interval=timedelta(seconds=1)) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        try:
            world = await World.create(api, running.admin_token)
            client = await world.machine_user()
            secret = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=client))
            [token] = await access_tokens(running, secret.client_id, secret.client_secret, 1)
            clock.advance(TTL + timedelta(seconds=1))
            async with asyncio.timeout(20):  # a run a second: 20 times the interval
                while token_hash(token) in stored_hashes(running):  # noqa: ASYNC110 - the store's rows, polled
                    await asyncio.sleep(0.1)
            assert token_hash(running.admin_token) in stored_hashes(running)
        finally:
            await api.close()
