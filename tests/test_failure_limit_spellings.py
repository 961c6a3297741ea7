"""The per-client limit on failed authentications counts a client by the name the store finds it
by: spellings of one user name are one client.

The store finds users by RFC 8265's key (width, case and composition mapped), while the limits
counted casefold(): `victimb1176`, the same in fullwidth letters and a half-width mix were three
clients, and a guesser got 30 guesses at one account whose limit is 10.
"""

from pathlib import Path

import httpx
import pytest
from machinesecrets.v1 import user_service_pb2 as user_pb

from server.domain.failure_limits import FailureLimits
from server.transport.oauth import TOKEN_PATH
from tests.api import GrpcApi
from tests.service import own_service
from tests.world import World

LIMITS = FailureLimits(per_client=10, per_source=1000, window_s=60)


def fullwidth(text: str) -> str:
    """ASCII letters and digits as their fullwidth forms (U+FF01 onwards)."""
    return "".join(chr(ord(ch) - 0x21 + 0xFF01) if "!" <= ch <= "~" else ch for ch in text)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_spellings_of_one_name_are_one_client(tmp_path: Path, backend: str) -> None:
    async with own_service(backend, tmp_path, failure_limits=LIMITS) as running:
        api = GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")
        try:
            world = await World.create(api, running.admin_token)
            name = "victimb1176"
            user_id = await world.machine_user(user_name=name)
            secret = (await world.call("AddSecret", user_pb.AddSecretRequest(user_id=user_id))).client_secret
            spellings = [name, fullwidth(name), name[:6] + fullwidth(name[6:]), name.upper()]
            base = f"http://127.0.0.1:{running.service.http_port}"
            async with httpx.AsyncClient(base_url=base) as http:

                async def attempt(client_id: str, client_secret: str) -> int:
                    form = {"client_id": client_id, "client_secret": client_secret}
                    answer = await http.post(TOKEN_PATH, data={"grant_type": "client_credentials", **form})
                    return answer.status_code

                # Each spelling is the account: the right secret works under every one.
                for spelling in spellings:
                    assert await attempt(spelling, secret) == 200, spelling
                statuses = [await attempt(spellings[i % len(spellings)], f"guess-{i}") for i in range(30)]
                assert statuses == [401] * 10 + [429] * 20
                # Under any spelling, the right secret from this source is now refused too.
                for spelling in spellings:
                    assert await attempt(spelling, secret) == 429, spelling
                # A client id that no user name can be (longer than any) is counted as it was sent,
                # without being normalised, and is a client of its own.
                assert await attempt("v" * 5000, "guess") == 401
        finally:
            await api.close()
