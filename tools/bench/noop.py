"""The no-op baseline: the service's own stack with nothing behind it.

A grpc.aio servicer that returns fixed responses, with no interceptors and no store, served the
same three ways as the service (gRPC, grpc-web through the same adapter under uvicorn, Envoy with
the same envoy.yaml), plus a fixed answer at the token endpoint's path. What the service adds on
top of this is its own cost. Prints its ports as one JSON line, then runs until SIGTERM.
"""

import asyncio
import json
import signal
from typing import Any

import grpc
from grpc import aio
from machinesecrets.v1 import object_pb2, user_service_pb2, user_service_pb2_grpc

from server.app import MAX_REQUEST_BYTES
from server.envoy import EnvoyProcess, EnvoySettings
from server.transport.asgi import Receive, Send
from server.transport.asgi_server import AsgiServer
from server.transport.grpcweb import GrpcWeb
from server.transport.http import HttpApp, respond_json
from server.transport.oauth import TOKEN_PATH

DETAILS = object_pb2.ObjectDetails(sequence=2, resource_owner="69629023906488334")
SECRET = user_service_pb2.AddSecretResponse(client_id="noop", client_secret="x" * 64, details=DETAILS)
USER = user_service_pb2.GetUserByIDResponse(
    user=user_service_pb2.User(
        id="1", user_name="noop", type=user_service_pb2.USER_TYPE_MACHINE, details=DETAILS
    )
)


class NoopUsers(user_service_pb2_grpc.UserServiceServicer):
    async def AddSecret(self, request: Any, context: Any) -> user_service_pb2.AddSecretResponse:
        return SECRET

    async def GetUserByID(self, request: Any, context: Any) -> user_service_pb2.GetUserByIDResponse:
        return USER

    async def _unimplemented(self, request: Any, context: Any) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in the baseline")

    RemoveSecret = AddMachineUser = AddHumanUser = AddPersonalAccessToken = _unimplemented
    ListPersonalAccessTokens = RemovePersonalAccessToken = _unimplemented
    DeactivateUser = ReactivateUser = RemoveUser = _unimplemented


async def noop_token(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    body = {"access_token": "x" * 43, "token_type": "Bearer", "expires_in": 43200, "scope": "api"}
    await respond_json(send, 200, body, [("cache-control", "no-store"), ("pragma", "no-cache")])


async def main() -> None:
    server = aio.server(
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)]
    )
    web = GrpcWeb(HttpApp({TOKEN_PATH: noop_token}), [], (), MAX_REQUEST_BYTES)
    for target in (server, web):
        user_service_pb2_grpc.add_UserServiceServicer_to_server(NoopUsers(), target)
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    http = await AsgiServer.start(web, "127.0.0.1:0")
    envoy = await EnvoyProcess.start(
        EnvoySettings(
            "127.0.0.1:0", f"127.0.0.1:{grpc_port}", f"127.0.0.1:{http.port}", (), MAX_REQUEST_BYTES
        )
    )
    print(json.dumps({"grpc": grpc_port, "http": http.port, "envoy": envoy.port}), flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await envoy.stop()
    await http.stop(0)
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
