"""The source address of a token request, which the failure limits count by, cannot be forged.

X-Forwarded-For counts only from a proxy named in MS_TRUSTED_PROXIES, and from the service's own
Envoy, which reaches the HTTP app over a private Unix socket. Tests send from 127.0.0.1 (a local
process, not a proxy) and from 127.0.0.2 (a proxy, when trusted).
"""

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.failure_limits import FailureLimits
from server.transport.forwarded import ClientAddress, parse_networks
from tests.api import GrpcApi
from tests.service import Running, config_for, start_service
from tests.world import World

LIMITS = FailureLimits(per_client=100, per_source=5, window_s=60)
PROXY = "127.0.0.2"


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "source"),
    [
        ("127.0.0.1", ["203.0.113.9"], "", "127.0.0.1"),  # not a proxy: its header is ignored
        ("10.0.0.5", ["203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),
        ("10.0.0.5", ["1.1.1.1, 203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),  # the right-most
        ("10.0.0.5", ["1.1.1.1", "203.0.113.9"], "10.0.0.0/8", "203.0.113.9"),  # repeated header
        ("10.0.0.5", ["1.1.1.1, 10.0.0.7"], "10.0.0.0/8", "1.1.1.1"),  # past a chain of proxies
        ("10.0.0.5", ["10.0.0.6"], "10.0.0.0/8", "10.0.0.6"),  # only proxies: the farthest
        ("10.0.0.5", [], "10.0.0.0/8", "10.0.0.5"),
        ("10.0.0.5", ["not-an-address"], "10.0.0.0/8", "not-an-address"),
        ("::1", ["2001:db8::1"], "::1", "2001:db8::1"),
    ],
)
def test_the_right_most_address_no_trusted_proxy_wrote(
    peer: str, forwarded: list[str], trusted: str, source: str
) -> None:
    addresses = ClientAddress(parse_networks(trusted))
    scope = {"client": (peer, 4000), "server": ("127.0.0.1", 8081)}
    assert addresses.of(scope, {"x-forwarded-for": forwarded}) == source


@pytest.fixture
async def service(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Running, World, str, str]]:
    """A service with low limits, trusting the proxies the test names; a client and its secret."""
    trusted = getattr(request, "param", "")
    config = replace(
        config_for(tmp_path, envoy=True, failure_limits=LIMITS), trusted_proxies=parse_networks(trusted)
    )
    running = await start_service(config)
    api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
    try:
        world = await World.create(api, running.admin_token)
        issued = await world.call("AddSecret", user_pb.AddSecretRequest(user_id=await world.machine_user()))
        yield running, world, issued.client_id, issued.client_secret
    finally:
        await api.close()
        await running.service.stop(0)


async def token(
    running: Running, client_id: str, secret: str, forwarded: str, via: str = "127.0.0.1", port: int = 0
) -> int:
    """The status of a token request sent from address via, to port (the HTTP port if 0)."""
    transport = httpx.AsyncHTTPTransport(local_address=via)
    async with httpx.AsyncClient(transport=transport) as http:
        answer = await http.post(
            f"http://127.0.0.1:{port or running.service.http_port}/oauth/v2/token",
            data={"grant_type": "client_credentials"},
            auth=(client_id, secret),
            headers={"x-forwarded-for": forwarded},
        )
    return answer.status_code


async def test_a_forged_header_on_the_direct_port_changes_nothing(
    service: tuple[Running, World, str, str],
) -> None:
    running, _, client_id, secret = service
    # Each guess claims a new address; all are counted for the one they came from.
    statuses = [await token(running, client_id, "guess", f"203.0.113.{i}") for i in range(6)]
    assert statuses == [401] * 5 + [429]
    # Nor can a guesser lock someone else out by claiming its address: the right secret from
    # another real address works (the guesses above named 198.51.100.20 nowhere, but this is the
    # claim a guesser would make).
    assert await token(running, client_id, secret, "198.51.100.20", via=PROXY) == 200


@pytest.mark.parametrize("service", [f"{PROXY}/32"], indirect=True)
async def test_a_trusted_proxy_on_another_address_names_the_client(
    service: tuple[Running, World, str, str],
) -> None:
    running, _, client_id, secret = service
    for _ in range(5):  # guesses relayed by the proxy, from one client
        assert await token(running, client_id, "guess", "203.0.113.9", via=PROXY) == 401
    assert await token(running, client_id, secret, "203.0.113.9", via=PROXY) == 429
    # Another client behind the same proxy is not that guesser.
    assert await token(running, client_id, secret, "198.51.100.20", via=PROXY) == 200
    # A local process that is not the proxy cannot claim to be a client behind it: its header is
    # ignored, so it cannot get the guesser's clean neighbour locked out either.
    for _ in range(5):
        assert await token(running, client_id, "guess", "198.51.100.21") == 401
    assert await token(running, client_id, secret, "198.51.100.21", via=PROXY) == 200
    # A header repeated by the client: the proxy's own (right-most) entry counts.
    for _ in range(5):
        assert await token(running, client_id, "guess", "203.0.113.50, 203.0.113.60", via=PROXY) == 401
    assert await token(running, client_id, secret, "203.0.113.60", via=PROXY) == 429
    assert await token(running, client_id, secret, "203.0.113.50", via=PROXY) == 200


async def test_the_bundled_envoy_is_trusted_through_its_own_socket(
    service: tuple[Running, World, str, str],
) -> None:
    """Envoy appends the address it saw, and that is the source: not Envoy's socket, and not what
    the caller forged."""
    running, _, client_id, secret = service

    async def via_envoy(secret: str, forged: str, local: str) -> int:
        return await token(
            running, client_id, secret, forged, via=local, port=running.service.envoy_port or 0
        )

    guesses = [await via_envoy("guess", f"203.0.113.{i}", PROXY) for i in range(6)]
    assert guesses == [401] * 5 + [429]
    assert await via_envoy(secret, "198.51.100.40", PROXY) == 429  # a new forged address: no way out
    # Another client of the same Envoy, from another address, is not that guesser.
    assert await via_envoy(secret, "203.0.113.1", "127.0.0.1") == 200
