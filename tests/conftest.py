"""Fixtures that start the real service on free ports and give tests a client per transport."""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from server import app
from server.config import Config
from tests.api import Api, GrpcApi
from tests.world import World


@dataclass
class Running:
    config: Config
    service: app.Service
    db_path: Path

    @property
    def admin_token(self) -> str:
        return Path(self.config.admin_pat_file).read_text().strip()


def config_for(tmp_path: Path) -> Config:
    return Config(
        database_url=f"sqlite:///{tmp_path / 'ms.db'}",
        grpc_addr="127.0.0.1:0",
        bcrypt_cost=4,
        admin_pat_file=str(tmp_path / "admin.pat"),
        log_level="DEBUG",
    )


@pytest.fixture
async def running(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Running]:
    caplog.set_level(logging.DEBUG)
    config = config_for(tmp_path)
    service = await app.start(config)
    yield Running(config, service, tmp_path / "ms.db")
    await service.stop(0)


TRANSPORTS = ["grpc"]


@pytest.fixture(params=TRANSPORTS)
async def api(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[Api]:
    client = GrpcApi(request.param, f"127.0.0.1:{running.service.grpc_port}")
    yield client
    await client.close()


@pytest.fixture
async def world(api: Api, running: Running) -> World:
    return await World.create(api, running.admin_token)
