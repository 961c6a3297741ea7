"""Fixtures that start the real service on free ports and give tests a client per transport
(the helpers they use are in tests/service.py).

One service (gRPC, grpc-web on uvicorn, and a real Envoy in front) serves the behaviour suite;
tests that need a service of their own (first start, restart) start one with `start_service`.
"""

import os

# As `python -m server` does (server/__main__.py), before grpc is imported: the in-process service
# forks to exec Envoy, and with grpc's fork handlers on, a child forked while grpc's threads were busy
# could abort before it reached exec (seen once in CI: Envoy "exited with code -6", epoll_wait
# error in the child).
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import contextlib
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from tests import postgres
from tests.api import Api
from tests.service import BACKENDS, TRANSPORTS, Running, client, config_for, start_service
from tests.world import World


@pytest.fixture(scope="session", params=BACKENDS)
async def running(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    """The service the behaviour suite runs against, once on each store."""
    folder = tmp_path_factory.mktemp(f"service-{request.param}")
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if request.param == "postgres" else None
        started = await start_service(config_for(folder, database_url=url, envoy=True))
        yield started
        await started.service.stop(0)


@pytest.fixture(params=TRANSPORTS)
async def api(request: pytest.FixtureRequest, running: Running) -> AsyncIterator[Api]:
    api = client(request.param, running.service)
    yield api
    await api.close()


@pytest.fixture
async def world(api: Api, running: Running) -> World:
    return await World.create(api, running.admin_token)


# The files that take minutes (measured in a CI run: --durations), run first: pytest-xdist hands
# out files in collection order, so a long file collected last kept one worker busy for minutes
# while the other had nothing left to do.
LONG_FILES = (
    "test_authorization_properties.py",
    "test_schemathesis.py",
    "test_console.py",
    "test_fuzz.py",
    "test_secret_lifecycle_model.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)  # stable: within a file, and among the others, the order stays


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Skips summed up by reason, one line each (pytest's own list names every place that skips)."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = report.longrepr
        reasons[longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)] += 1
    for reason, count in reasons.most_common():
        terminalreporter.write_line(
            f"SKIPPED {count} test{'s' if count != 1 else ''}: {reason.removeprefix('Skipped: ')}"
        )
