"""What the pipeline is built from: each method's permission, declared in its .proto, and a
handler of its name. A method missing either is not served: the service does not start."""

from pathlib import Path

import pytest
from grpc_health.v1 import health_pb2
from machinesecrets.v1 import org_service_pb2, user_service_pb2

from server.domain.access import Access
from server.domain.permissions import ANY_CALLER, PERMISSIONS
from server.metrics import Metrics
from server.store.sqlite import SqliteStore
from server.transport.admission import Admission
from server.transport.methods import UndeclaredMethod, required_permission
from server.transport.pipeline import build_pipelines

SERVICES = [
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    org_service_pb2.DESCRIPTOR.services_by_name["OrgService"],
]


def test_every_method_of_the_api_declares_a_known_permission() -> None:
    for service in SERVICES:
        for method in service.methods:
            assert required_permission(method) in PERMISSIONS | {ANY_CALLER}, method.full_name
    # Only the lists of a caller's own reach are open to any caller.
    open_to_all = [
        method.name
        for service in SERVICES
        for method in service.methods
        if required_permission(method) == ANY_CALLER
    ]
    assert open_to_all == ["ListOrganizations"]


async def test_a_method_without_a_permission_is_not_served(tmp_path: Path) -> None:
    store = await SqliteStore.open(f"sqlite:///{tmp_path}/ms.db")
    try:
        health = health_pb2.DESCRIPTOR.services_by_name["Health"]  # declares no auth_option

        class Servicer:
            async def Check(self, request: object, ctx: object) -> object: ...
            async def Watch(self, request: object, ctx: object) -> object: ...

        with pytest.raises(UndeclaredMethod, match=r"grpc\.health\.v1\.Health\.Check"):
            build_pipelines({health: Servicer()}, Access(store), Metrics(), Admission(1))
        with pytest.raises(
            TypeError, match=r"no handler for machinesecrets\.v1\.OrgService\.AddOrganization"
        ):
            build_pipelines({SERVICES[1]: object()}, Access(store), Metrics(), Admission(1))
    finally:
        await store.close()
