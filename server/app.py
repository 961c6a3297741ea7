"""The composition root: builds the store, the domain and the transports, and nothing else does."""

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from machinesecrets.v1 import org_service_pb2, org_service_pb2_grpc, user_service_pb2, user_service_pb2_grpc

from server.config import Config
from server.domain.access import Access
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.ids import IdGenerator
from server.domain.queries import Queries
from server.store.base import Store
from server.store.sqlite import SqliteStore
from server.transport.interceptors import interceptors
from server.transport.servicers import OrgService, UserService

log = logging.getLogger("machinesecrets")

MAX_REQUEST_BYTES = 64 * 1024
FIRST_ORG_NAME = "default"
ADMIN_USER_NAME = "admin"
SERVICE_NAMES = (
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
    org_service_pb2.DESCRIPTOR.services_by_name["OrgService"].full_name,
)


@dataclass
class Service:
    store: Store
    grpc_server: aio.Server
    grpc_port: int

    async def stop(self, grace: float = 5.0) -> None:
        await self.grpc_server.stop(grace)
        await self.store.close()


async def open_store(url: str) -> Store:
    return await SqliteStore.open(url)


async def start(config: Config) -> Service:
    store = await open_store(config.database_url)
    try:
        return await _start(config, store)
    except BaseException:
        await store.close()
        raise


async def _start(config: Config, store: Store) -> Service:
    access = Access(store)
    commands = Commands(store, SecretHasher(config.bcrypt_cost), IdGenerator())
    queries = Queries(store)

    admin_token = await commands.set_up_instance(FIRST_ORG_NAME, ADMIN_USER_NAME)
    if admin_token is not None:
        write_private_file(Path(config.admin_pat_file), admin_token + "\n")
        log.info("first start: the token of user %r is in %s", ADMIN_USER_NAME, config.admin_pat_file)

    server = aio.server(
        interceptors=interceptors(access),
        options=[
            # grpcio turns SO_REUSEPORT on: a second server on a taken port would start silently.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ],
    )
    user_service_pb2_grpc.add_UserServiceServicer_to_server(UserService(commands, queries), server)
    org_service_pb2_grpc.add_OrgServiceServicer_to_server(OrgService(commands), server)
    health_servicer = HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)  # type: ignore[no-untyped-call]
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(config.grpc_addr)
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("gRPC listening on %s", _with_port(config.grpc_addr, port))
    return Service(store, server, port)


def write_private_file(path: Path, text: str) -> None:
    """Writes text readable by the owner alone (0600), also when the file existed before."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)


def _with_port(addr: str, port: int) -> str:
    return f"{addr.rpartition(':')[0]}:{port}"
