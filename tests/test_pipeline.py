"""What the pipeline is built from: each method's permission, declared in its .proto, and a
handler of its name. A method missing either is not served: the service does not start."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from machinesecrets.v1 import audit_service_pb2, org_service_pb2, user_service_pb2

from server.actor import SYSTEM, Actor
from server.domain.access import Access
from server.domain.commands import Commands
from server.domain.credentials import SecretHasher
from server.domain.ids import IdGenerator
from server.domain.permissions import ANY_CALLER, PERMISSIONS, CallContext
from server.logs import REQUEST_ID
from server.metrics import Metrics
from server.store.sqlite import SqliteStore
from server.transport.admission import Admission
from server.transport.methods import UndeclaredMethod, auth_option, required_permission
from server.transport.pipeline import Call, Pipeline, build_pipelines

SERVICES = [
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"],
    org_service_pb2.DESCRIPTOR.services_by_name["OrgService"],
    audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"],
]


def test_every_method_of_the_api_declares_a_known_permission() -> None:
    for service in SERVICES:
        for method in service.methods:
            assert required_permission(method) in PERMISSIONS | {ANY_CALLER}, method.full_name
    # Only the lists of a caller's own reach, and the caller itself, are open to any caller.
    open_to_all = [
        method.name
        for service in SERVICES
        for method in service.methods
        if required_permission(method) == ANY_CALLER
    ]
    assert sorted(open_to_all) == ["GetMe", "ListOrganizations"]


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


async def test_the_handler_gets_the_calls_actor(tmp_path: Path) -> None:
    """Who makes a call, for the events it writes: the caller's user and organisation, the
    credential it authenticated with (a PAT by its id, an access token by the secret that earned
    it), the request id, the client's address and the transport."""
    store = await SqliteStore.open(f"sqlite:///{tmp_path}/ms.db")
    try:
        commands = Commands(store, SecretHasher(4), IdGenerator(), 8)
        admin_token = await commands.set_up_instance("default", "admin")
        assert admin_token is not None
        admin = await store.user_by_name("admin")
        assert admin is not None
        [pat] = await store.personal_access_tokens(admin.id)
        secret = await commands.add_secret(
            CallContext(await Access(store).authenticate(admin_token), admin.org_id), admin.id
        )
        access_token = await commands.issue_access_token(
            admin, secret.secret_id, "api", datetime.now(UTC) + timedelta(hours=1), SYSTEM
        )
        seen: list[CallContext] = []

        async def handler(request: object, ctx: CallContext) -> Message:
            seen.append(ctx)
            return org_service_pb2.ListOrganizationsResponse()

        method = SERVICES[1].methods_by_name["ListOrganizations"]
        pipeline = Pipeline(
            f"/{SERVICES[1].full_name}/{method.name}",
            org_service_pb2.ListOrganizationsRequest,
            org_service_pb2.ListOrganizationsResponse,
            auth_option(method),
            handler,
            Access(store),
            Metrics(),
            Admission(4),
        )

        async def empty() -> bytes:
            return b""

        for token, transport, peer in (
            (admin_token, "grpc", "ipv4:198.51.100.7:5555"),
            (access_token, "json", "envoy:203.0.113.9"),
        ):
            REQUEST_ID.set(f"req-{transport}")
            metadata = [("authorization", f"Bearer {token}")]
            outcome = await pipeline.run(Call(pipeline.method, transport, metadata, peer), empty)
            assert outcome.response is not None, outcome
        assert [ctx.actor for ctx in seen] == [
            Actor(admin.id, admin.org_id, "pat", pat.token_id, "req-grpc", "198.51.100.7", "grpc"),
            Actor(
                admin.id, admin.org_id, "access_token", secret.secret_id, "req-json", "203.0.113.9", "json"
            ),
        ]
    finally:
        await store.close()
