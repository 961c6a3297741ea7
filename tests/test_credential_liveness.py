"""An access token dies with the secret that earned it, on every transport: whichever way the
secret ends, the next call with the token is UNAUTHENTICATED (issue 29: with the check in
domain/access.py removed, only a hypothesis lifecycle test noticed)."""

from collections.abc import Awaitable, Callable

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from tests.api import exchange, expect_error
from tests.service import Running
from tests.world import World


async def revoke(running: Running, secret: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"http://127.0.0.1:{running.service.http_port}/secrets/revoke", json={"secrets": [secret]}
        )
    assert answer.status_code == 200, answer.text


Ending = Callable[[World, Running, str, user_pb.CreateSecretResponse], Awaitable[object]]
ENDINGS: dict[str, Ending] = {
    "DeleteSecret": lambda w, r, user, s: w.call(
        "DeleteSecret", user_pb.DeleteSecretRequest(user_id=user, secret_id=s.secret_id)
    ),
    "RemoveSecret": lambda w, r, user, s: w.call("RemoveSecret", user_pb.RemoveSecretRequest(user_id=user)),
    "AddSecret (replaces it)": lambda w, r, user, s: w.call(
        "AddSecret", user_pb.AddSecretRequest(user_id=user)
    ),
    "RotateSecret without grace": lambda w, r, user, s: w.call(
        "RotateSecret", user_pb.RotateSecretRequest(user_id=user, grace_period=duration_pb2.Duration())
    ),
    "reported leaked": lambda w, r, user, s: revoke(r, s.client_secret),
}


@pytest.mark.parametrize("ending", ENDINGS)
async def test_an_access_token_dies_with_its_secret(world: World, running: Running, ending: str) -> None:
    user_id = await world.machine_user()
    secret = await world.call("CreateSecret", user_pb.CreateSecretRequest(user_id=user_id))
    answer = await exchange(
        f"http://127.0.0.1:{running.service.http_port}", secret.client_id, secret.client_secret
    )
    assert answer.status_code == 200, answer.text
    access_token = answer.json()["access_token"]
    listed = await world.call("ListOrganizations", org_pb.ListOrganizationsRequest(), token=access_token)
    assert listed.organizations  # the token works while its secret lives
    await ENDINGS[ending](world, running, user_id, secret)
    await expect_error(
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
        world.call("ListOrganizations", org_pb.ListOrganizationsRequest(), token=access_token),
    )
