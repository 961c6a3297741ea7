"""The no-op baseline: the service's own stack with nothing behind it.

Runners that read the request and answer fixed responses, with no pipeline steps and no store,
served the same three ways as the service (the grpc.aio adapter, the grpc-web adapter under
uvicorn, Envoy with the same envoy.yaml), plus fixed answers at the token endpoint's path and on
the native JSON paths. What
the service adds on top of this is its own cost. Writes its ports to MS_READY_FILE as the
service does, then runs until SIGTERM.
"""

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from grpc import aio
from machinesecrets.v1 import object_pb2, user_service_pb2

from server.config import load
from server.limits import MAX_REQUEST_BYTES
from server.runtime.envoy import EnvoyProcess, EnvoySettings
from server.runtime.temp_dirs import private_temp_dir
from server.transport import json_body
from server.transport.asgi import Receive, Send, respond
from server.transport.asgi_server import AsgiServer
from server.transport.grpc_server import method_handlers
from server.transport.grpcweb import GrpcWebEndpoint
from server.transport.http import HttpApp, respond_json
from server.transport.oauth import TOKEN_PATH
from server.transport.pipeline import Call, Outcome, Read

DETAILS = object_pb2.ObjectDetails(sequence=2, resource_owner="69629023906488334")
SECRET = user_service_pb2.AddSecretResponse(client_id="noop", client_secret="x" * 64, details=DETAILS)
SECRET_JSON = json_body.render(SECRET)
USER = user_service_pb2.GetUserByIDResponse(
    user=user_service_pb2.User(
        id="1", user_name="noop", type=user_service_pb2.USER_TYPE_MACHINE, details=DETAILS
    )
)
# The service's own default (MS_REQUEST_READ_TIMEOUT), read as the service reads it.
READ_TIMEOUT_S = load([], {}).request_read_timeout.total_seconds()


class FixedAnswer:
    """Reads the request, answers a fixed response: the cost of the transport alone."""

    def __init__(self, method: str, response: Message) -> None:
        self.method = method
        self._response = response

    async def run(self, call: Call, read: Read) -> Outcome:
        await read()
        return Outcome(grpc.StatusCode.OK, response=self._response)


RUNNERS = [
    FixedAnswer("/machinesecrets.v1.UserService/AddSecret", SECRET),
    FixedAnswer("/machinesecrets.v1.UserService/GetUserByID", USER),
]


async def noop_token(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    while (await receive()).get("more_body"):
        pass
    body = {"access_token": "x" * 43, "token_type": "Bearer", "expires_in": 43200, "scope": "api"}
    await respond_json(send, 200, body, [("cache-control", "no-store"), ("pragma", "no-cache")])


async def noop_json(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    """The native JSON paths (server/transport/rest.py): read the body, answer AddSecret's fixed
    answer in JSON."""
    while (await receive()).get("more_body"):
        pass
    await respond(send, 200, [("content-type", "application/json")], SECRET_JSON)


async def main() -> None:
    server = aio.server(
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_REQUEST_BYTES)]
    )
    server.add_generic_rpc_handlers(method_handlers(RUNNERS, READ_TIMEOUT_S))
    web_endpoint = GrpcWebEndpoint(RUNNERS, MAX_REQUEST_BYTES, READ_TIMEOUT_S)
    web = HttpApp(
        {TOKEN_PATH: noop_token, **{runner.method: web_endpoint for runner in RUNNERS}},
        under={"/users": noop_json},
    )
    grpc_port = server.add_insecure_port("127.0.0.1:0")
    # Envoy reaches it as it reaches the service: over Unix sockets.
    folder = private_temp_dir("noop")
    grpc_socket, http_socket = f"{folder.name}/grpc.sock", f"{folder.name}/http.sock"
    server.add_insecure_port(f"unix:{grpc_socket}")
    await server.start()
    http = await AsgiServer.start(web, "127.0.0.1:0", http_socket)
    envoy = await EnvoyProcess.start(
        EnvoySettings(
            "127.0.0.1:0", (f"unix:{grpc_socket}",), (f"unix:{http_socket}",), (), MAX_REQUEST_BYTES
        )
    )
    # Where devtools/launcher.py looks for the ports, as `python -m server` writes it.
    ready = Path(os.environ["MS_READY_FILE"])
    ready.with_name(ready.name + ".partial").write_text(
        json.dumps({"grpc": grpc_port, "http": http.port, "envoy": envoy.port})
    )
    ready.with_name(ready.name + ".partial").replace(ready)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await envoy.stop()
    await http.stop(0)
    await server.stop(0)


if __name__ == "__main__":
    asyncio.run(main())
