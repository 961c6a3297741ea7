"""The composition root: builds the store, the domain and the transports, and nothing else does."""

import asyncio
import logging
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from machinesecrets.v1 import audit_service_pb2, org_service_pb2, project_service_pb2, user_service_pb2
from zitadel.auth.v1 import auth_pb2
from zitadel.internal_permission.v2 import internal_permission_service_pb2 as perm_v2
from zitadel.management.v1 import management_pb2
from zitadel.org.v2 import org_service_pb2 as org_v2
from zitadel.user.v2 import user_service_pb2 as user_v2
from zitadel.webkey.v2 import webkey_service_pb2

from server.clock import SYSTEM_CLOCK, Clock
from server.config import CannotListen, Config, ConfigError
from server.domain.access import Access
from server.domain.audit import AuditQueries
from server.domain.caller_cache import CallerCache
from server.domain.client_credentials import ClientCredentials
from server.domain.commands import Commands
from server.domain.commands.webkeys import SigningKeySettings
from server.domain.credentials import SecretHasher
from server.domain.failure_limits import FailureLimiter
from server.domain.federation import Federation
from server.domain.ids import IdGenerator
from server.domain.introspection import Introspection
from server.domain.issuer_keys import IssuerKeys
from server.domain.jwt_access_tokens import TokenMinter
from server.domain.jwt_profile import JwtProfile, audiences_of
from server.domain.key_generation import KeyPairs
from server.domain.paging import PageTokens
from server.domain.queries import Queries
from server.domain.revocation import SecretRevocation
from server.domain.signing_keys import KeyCipher, KeyRing, KeyTimes, MasterKeyMismatch
from server.domain.token_revocation import TokenRevocation
from server.key_schedule import KeySchedule
from server.limits import MAX_HEADER_BYTES, MAX_REQUEST_BYTES
from server.metrics import Metrics, TimedStore
from server.runtime.envoy import EnvoyError, EnvoyProcess, EnvoySettings
from server.runtime.master_key import load_master_key
from server.runtime.private_files import check_private_location, write_private_file
from server.runtime.resources import resource
from server.runtime.temp_dirs import private_temp_dir, sweep_orphans
from server.runtime.tls import ServingCertificate, load_tls
from server.store.contract import Store
from server.store.postgres import PostgresStore
from server.store.sqlite import SqliteStore
from server.sweep import Sweeper
from server.transport.admission import Admission
from server.transport.asgi import ASGIApp
from server.transport.asgi_server import AsgiServer
from server.transport.audit_servicer import AuditService
from server.transport.backlog import Backlog, Refusals
from server.transport.connect import ConnectEndpoint
from server.transport.console import CONSOLE_PREFIX, ConsoleFiles, read_build
from server.transport.cors import CorsMiddleware
from server.transport.event_stream import EVENTS_STREAM_PATH, EventStream
from server.transport.forwarded import ClientAddress
from server.transport.grpc_server import method_handlers
from server.transport.grpcweb import GrpcWebEndpoint
from server.transport.health import HEALTH_PATH, READY_PATH, Readiness, StoreWatch, healthz
from server.transport.hsts import StrictTransportSecurity
from server.transport.http import ByContentType, HttpApp, StaticJson
from server.transport.http_endpoint import AdmittedBody
from server.transport.introspection_endpoint import IntrospectionEndpoint
from server.transport.metrics_endpoint import METRICS_PATH, MetricsEndpoint
from server.transport.oauth import (
    DISCOVERY_PATH,
    INTROSPECT_PATH,
    KEYS_PATH,
    METADATA_PATH,
    REVOCATION_PATH,
    TOKEN_PATH,
    Discovery,
    JwksEndpoint,
    TokenEndpoint,
)
from server.transport.pipeline import Pipeline, build_pipelines
from server.transport.project_servicer import ProjectService
from server.transport.reflection import enable_reflection
from server.transport.request_ids import RequestIds
from server.transport.rest import RestEndpoint
from server.transport.revocation_endpoint import REVOKE_PATH, RevocationEndpoint
from server.transport.servicers import OrgService, UserService
from server.transport.token_revocation_endpoint import TokenRevocationEndpoint
from server.transport.webkey_servicer import WebKeyService
from server.transport.zitadel_auth import AuthService
from server.transport.zitadel_management import ManagementService
from server.transport.zitadel_v2 import InternalPermissionService, OrganizationServiceV2, UserServiceV2

log = logging.getLogger("machinesecrets")

OPENAPI_PATH = "/openapi.json"
# Stopping: calls are refused UNAVAILABLE until none has arrived for DRAIN_QUIET_S (or for at most
# MAX_DRAIN_S of the grace), then the servers stop (admission.Admission.drain says why).
DRAIN_QUIET_S = 0.2
MAX_DRAIN_S = 2.0
RELEASE_AFTER_S = 0.05
# Made by `make openapi` from the descriptor set, committed beside it.
OPENAPI_DOCUMENT = resource("generated/openapi.json")
FIRST_ORG_NAME = "default"
ADMIN_USER_NAME = "admin"
USER_SERVICE = user_service_pb2.DESCRIPTOR.services_by_name["UserService"]
ORG_SERVICE = org_service_pb2.DESCRIPTOR.services_by_name["OrgService"]
AUDIT_SERVICE = audit_service_pb2.DESCRIPTOR.services_by_name["AuditService"]
PROJECT_SERVICE = project_service_pb2.DESCRIPTOR.services_by_name["ProjectService"]
# ZITADEL's own names, for clients written for ZITADEL (docs/zitadel.md).
ZITADEL_MANAGEMENT = management_pb2.DESCRIPTOR.services_by_name["ManagementService"]
ZITADEL_USERS = user_v2.DESCRIPTOR.services_by_name["UserService"]
ZITADEL_ORGS = org_v2.DESCRIPTOR.services_by_name["OrganizationService"]
ZITADEL_ADMINISTRATORS = perm_v2.DESCRIPTOR.services_by_name["InternalPermissionService"]
NATIVE_SERVICES = (USER_SERVICE, ORG_SERVICE, AUDIT_SERVICE, PROJECT_SERVICE)
ZITADEL_AUTH = auth_pb2.DESCRIPTOR.services_by_name["AuthService"]
ZITADEL_WEB_KEYS = webkey_service_pb2.DESCRIPTOR.services_by_name["WebKeyService"]
SERVICES = (
    USER_SERVICE,
    ORG_SERVICE,
    AUDIT_SERVICE,
    PROJECT_SERVICE,
    ZITADEL_MANAGEMENT,
    ZITADEL_USERS,
    ZITADEL_ORGS,
    ZITADEL_ADMINISTRATORS,
    ZITADEL_AUTH,
    ZITADEL_WEB_KEYS,
)
SERVICE_NAMES = tuple(service.full_name for service in SERVICES)


class Threads(Protocol):
    """What owns threads of its own, and ends them."""

    def close(self) -> None: ...


@dataclass
class Service:
    store: Store
    grpc_server: aio.Server
    grpc_port: int
    http_server: AsgiServer
    envoy: EnvoyProcess | None
    health: HealthServicer
    readiness: Readiness
    store_watch: StoreWatch
    admission: Admission
    sweeper: Sweeper
    key_schedule: KeySchedule
    metrics_server: AsgiServer | None  # None: MS_METRICS_ADDR=off
    # Where the HTTP app's socket for its own Envoy lives (0700): removed when the service stops.
    private_dir: tempfile.TemporaryDirectory[str] | None = None
    # Threads of the domain's own (Domain.threads): ended when the service stops.
    threads: tuple[Threads, ...] = ()
    # The certificate of every TLS port (None: plaintext), reloaded on SIGHUP.
    certificate: ServingCertificate | None = None

    @property
    def http_port(self) -> int:
        return self.http_server.port

    @property
    def metrics_port(self) -> int | None:
        return None if self.metrics_server is None else self.metrics_server.port

    @property
    def envoy_port(self) -> int | None:
        return None if self.envoy is None else self.envoy.port

    async def stop(self, grace: float = 5.0) -> None:
        """Stops gracefully: the probes say so; calls that arrive are held while the callers go
        quiet (at most MAX_DRAIN_S), then every port stops accepting connections and new calls,
        the held calls are refused UNAVAILABLE (503 through Envoy), which a client may retry
        elsewhere, and the calls in flight get their real answers, for at most `grace` seconds in
        all; then Envoy and the store are closed.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.readiness.shutting_down = True
        await self.store_watch.stop()
        await self.sweeper.stop()
        await self.key_schedule.stop()
        await self.health.enter_graceful_shutdown()
        if self.envoy is not None:
            await self.envoy.stop_accepting()
        await self.admission.drain(DRAIN_QUIET_S, min(grace, MAX_DRAIN_S))
        left = max(0.0, deadline - loop.time())
        stopping = asyncio.gather(self.http_server.stop(left), self.grpc_server.stop(left))
        await asyncio.sleep(RELEASE_AFTER_S)  # the servers' shutdown under way: GOAWAY sent
        self.admission.release()
        await stopping
        if self.metrics_server is not None:  # scraped until the calls it counts are done
            await self.metrics_server.stop(0)
        if self.envoy is not None:
            # Its last answers, from the servers that just finished, on their way to its clients.
            await self.envoy.wait_idle(max(0.0, deadline - loop.time()))
            await self.envoy.stop()
        await self.store.close()
        for threads in self.threads:
            threads.close()
        if self.private_dir is not None:
            self.private_dir.cleanup()


async def open_store(config: Config, clock: Clock = SYSTEM_CLOCK) -> Store:
    if config.database_url.startswith(("postgresql://", "postgres://")):
        return await PostgresStore.open(config.database_url, config.db_pool_size, clock)
    return await SqliteStore.open(config.database_url, clock, config.sqlite_sync)


@dataclass(frozen=True)
class Placement:
    """Where one worker of several (server/supervisor.py) is reached by the supervisor's Envoy: its
    own private Unix sockets. Its TCP ports are shared with the other workers (SO_REUSEPORT)."""

    grpc_socket: str
    http_socket: str
    envoy_addr: str | None  # the supervisor's Envoy (host:port), by which clients find the token endpoint
    # Where this worker serves its own /metrics for the supervisor to merge (None: metrics off).
    metrics_socket: str | None = None


async def start(config: Config, clock: Clock = SYSTEM_CLOCK, placement: Placement | None = None) -> Service:
    """The whole service, started. clock: the time every decision reads (tests move it);
    placement: for a worker of several, its sockets (it starts no Envoy of its own)."""
    files = load_tls(config.tls_cert_file, config.tls_key_file, clock.now())  # before anything starts
    tls = None if files is None else ServingCertificate(files)
    store = await open_store(config, clock)
    try:
        return await _start(config, store, clock, tls, placement)
    except BaseException:
        await store.close()
        raise


@dataclass(frozen=True)
class Domain:
    """What the transports serve, on the store: built first, with no port open."""

    store: Store  # timed (metrics.TimedStore); the caller cache observes its appends
    metrics: Metrics
    access: Access
    commands: Commands
    queries: Queries
    audit: AuditQueries
    credentials: ClientCredentials
    revocation: SecretRevocation
    limiter: FailureLimiter  # the failure limits, shared by every way a client authenticates
    clock: Clock
    introspection: Introspection
    issuer_keys: IssuerKeys  # trusted issuers' keys, fetched in threads of their own
    keyring: KeyRing  # the signing keys of JWT access tokens, as this process last read them
    # Threads that end when the service stops: the revocation endpoint's bcrypt thread
    # (SecretHasher.aside), the key-pair makers, the issuer-key fetchers.
    threads: tuple[Threads, ...]


async def build_domain(config: Config, raw_store: Store, clock: Clock) -> Domain:
    metrics, callers = Metrics(), CallerCache()
    store = TimedStore(raw_store, metrics)
    store.observe_appends(callers.forget_if_power_changed)
    cipher, times = await signing_key_cipher(config, store), key_times(config)
    keyring = KeyRing(store, cipher, times, clock)
    store.observe_appends(keyring.forget_if_keys_changed)
    hasher, ids = SecretHasher(config.bcrypt_cost, metrics.bcrypt_seconds.labels), IdGenerator()
    key_pairs = KeyPairs()
    commands = Commands(store, hasher, ids, config.write_attempts, clock, key_pairs)
    commands.allowed_origins = frozenset(config.federation_allowed_origins)  # issuers over http: labs
    commands.signing_keys = SigningKeySettings(cipher, times, config.signing_key_algorithm)
    commands.token_minter = TokenMinter(store, keyring, clock)
    # Page tokens are signed with a key kept in the store, so that every worker and every process
    # on one database reads the tokens any of them gave (a key per process would refuse them).
    page_tokens = PageTokens(await store.server_key("page_tokens"))
    limiter = FailureLimiter(config.failure_limits, store, clock)
    # Reports need no credential: their bcrypt work runs apart from the token endpoint's.
    revocation_hasher = hasher.aside()
    issuer_keys = IssuerKeys(config.federation_allowed_origins)
    return Domain(
        store,
        metrics,
        Access(store, clock, callers),
        commands,
        Queries(store, page_tokens, clock),
        AuditQueries(store, page_tokens),
        ClientCredentials(store, commands, hasher, config.access_token_ttl, limiter, clock),
        SecretRevocation(store, commands, revocation_hasher, limiter, clock),
        limiter,
        clock,
        Introspection(store, hasher, limiter, clock),
        issuer_keys,
        keyring,
        (revocation_hasher, key_pairs, issuer_keys),
    )


def key_times(config: Config) -> KeyTimes:
    return KeyTimes(config.jwks_cache_ttl, config.signing_key_rotation, config.access_token_ttl)


async def signing_key_cipher(config: Config, store: Store) -> KeyCipher:
    """The cipher of the private signing keys, under the master key; checked against every key
    the store holds, so that a wrong master key stops the start (ConfigError: one line) instead
    of failing the first JWT access token."""
    stored = await store.webkeys()
    master_key = load_master_key(config.masterkey_file, may_create=not stored)
    cipher = KeyCipher(master_key.bytes())
    for key in stored:
        try:
            cipher.decrypt(key.key_id, key.private_key)
        except MasterKeyMismatch:
            raise ConfigError(
                f"MS_MASTERKEY_FILE {config.masterkey_file}: it does not decrypt the store's signing key"
                f" {key.key_id}: not the master key the keys were made under"
            ) from None
    return cipher


async def set_up_instance(config: Config, domain: Domain) -> None:
    """What every start checks, and the first start makes: the organisation, its IAM_OWNER and
    the owner's token, written to MS_ADMIN_PAT_FILE."""
    await log_look_alikes(domain.store)
    # Before the instance is set up: a location that is refused must not cost the admin's token.
    check_private_location(Path(config.admin_pat_file))
    admin_token = await domain.commands.set_up_instance(FIRST_ORG_NAME, ADMIN_USER_NAME)
    if admin_token is not None:
        write_private_file(Path(config.admin_pat_file), admin_token + "\n")
        log.info("first start: the token of user %r is in %s", ADMIN_USER_NAME, config.admin_pat_file)


def build_admission(config: Config, metrics: Metrics) -> Admission:
    admission = Admission(config.max_inflight, config.max_unfinished, config.max_unfinished_per_source)
    metrics.inflight.set_function(lambda: admission.inflight)
    metrics.unfinished.set_function(lambda: admission.unfinished)
    return admission


def build_backlog(config: Config, metrics: Metrics, pipelines: list[Pipeline]) -> Backlog:
    """The HTTP servers' bound on requests read and not yet begun (transport/backlog.py), with
    the answers of build_http_app's routes: the RPCs', the OAuth endpoints', the JSON API's."""
    refusals = Refusals(
        rpc_paths=[pipeline.method for pipeline in pipelines],
        oauth_paths=[TOKEN_PATH, REVOKE_PATH, REVOCATION_PATH, INTROSPECT_PATH],
        exempt=[HEALTH_PATH, READY_PATH],
    )
    return Backlog(config.max_waiting, refusals, metrics.refused_waiting.inc)


def build_grpc_server(placement: Placement | None) -> aio.Server:
    return aio.server(
        options=[
            # grpcio turns SO_REUSEPORT on: a second server on a taken port would start silently.
            # Workers share their ports on purpose.
            ("grpc.so_reuseport", 0 if placement is None else 1),
            ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
            # No HPACK dynamic table: grpc core leaves its decoding table out of step with the
            # client's encoder after metadata it cannot parse, and the calls that follow on the
            # connection (behind Envoy: other callers' calls) decode with shifted headers.
            ("grpc.http2.hpack_table_size.decoder", 0),
            # Metadata: the pipeline refuses over 16 KiB with a rich status. grpc core's own limit
            # is a backstop above it, soft and hard alike: between its default soft limit (8 KiB)
            # and its hard one it would refuse a random share of calls.
            ("grpc.max_metadata_size", MAX_HEADER_BYTES),
            ("grpc.absolute_max_metadata_size", MAX_HEADER_BYTES),
        ],
    )


@dataclass(frozen=True)
class EnvoySockets:
    """The private Unix sockets by which an Envoy reaches this process's servers: its own Envoy's
    (in private_dir, 0700, so that its X-Forwarded-For can be believed without believing every
    local process), or a worker's supervisor's (Placement); None without either."""

    http: str | None
    grpc: str | None
    private_dir: tempfile.TemporaryDirectory[str] | None


def envoy_sockets(config: Config, placement: Placement | None) -> EnvoySockets:
    if placement is not None:
        return EnvoySockets(placement.http_socket, placement.grpc_socket, None)
    if not config.envoy_addr:
        return EnvoySockets(None, None, None)
    private_dir = private_temp_dir()
    folder = Path(private_dir.name)
    return EnvoySockets(str(folder / "http.sock"), str(folder / "grpc.sock"), private_dir)


def build_http_app(
    config: Config,
    domain: Domain,
    pipelines: list[Pipeline],
    admission: Admission,
    sockets: EnvoySockets,
    discovery: Discovery,
    readiness: Readiness,
) -> ASGIApp:
    """Everything the HTTP port serves: grpc-web and Connect at the gRPC paths, the native API's
    JSON, the OAuth endpoints, discovery, probes, the OpenAPI document and the console."""
    read_timeout_s = config.request_read_timeout.total_seconds()
    # grpc-web and the Connect call serve the very same pipelines, at their gRPC paths.
    grpc_web = CorsMiddleware(
        GrpcWebEndpoint(pipelines, MAX_REQUEST_BYTES, read_timeout_s), config.cors_origins
    )
    connect = ConnectEndpoint([(p, p.request_type) for p in pipelines], MAX_REQUEST_BYTES, read_timeout_s)
    rpc = ByContentType(connect=connect, other=grpc_web)
    # The native API's JSON on its own paths; ZITADEL's REST paths are Envoy's transcoder's.
    by_method = {p.method: p for p in pipelines}
    native = [(m, by_method[f"/{s.full_name}/{m.name}"]) for s in NATIVE_SERVICES for m in s.methods]
    rest = RestEndpoint(native, MAX_REQUEST_BYTES, read_timeout_s)
    client_address = ClientAddress(config.trusted_proxies, sockets.http)
    body = AdmittedBody(admission, read_timeout_s)
    metrics = domain.metrics
    # The JWT profile grant and private_key_jwt: an assertion's aud names an issuer discovery gives.
    jwt_profile = JwtProfile(
        domain.store,
        domain.commands,
        config.access_token_ttl,
        domain.limiter,
        lambda: audiences_of(discovery.issuers(), TOKEN_PATH),
        domain.clock,
    )
    # Workload identity federation: platform tokens of the organisations' trusted issuers.
    federation = Federation(
        domain.store,
        domain.commands,
        domain.issuer_keys,
        config.access_token_ttl,
        domain.limiter,
        domain.clock,
    )
    # RFC 7009: a client authenticates as at the token endpoint, or an API application as at
    # introspection, and ends a token it holds.
    token_revocation = TokenRevocation(
        domain.store, domain.commands, domain.credentials, jwt_profile, domain.introspection, federation
    )
    # HSTS on what it answers over TLS (its plaintext socket for Envoy carries none).
    return StrictTransportSecurity(
        RequestIds(
            HttpApp(
                {
                    TOKEN_PATH: TokenEndpoint(
                        domain.credentials, jwt_profile, metrics, body, client_address, federation, discovery
                    ),
                    KEYS_PATH: JwksEndpoint(domain.keyring),
                    REVOKE_PATH: RevocationEndpoint(domain.revocation, metrics, body, client_address),
                    REVOCATION_PATH: TokenRevocationEndpoint(token_revocation, metrics, body, client_address),
                    INTROSPECT_PATH: IntrospectionEndpoint(
                        domain.introspection, discovery, metrics, body, client_address
                    ),
                    EVENTS_STREAM_PATH: EventStream(by_method["/machinesecrets.v1.AuditService/ListEvents"]),
                    DISCOVERY_PATH: discovery,
                    METADATA_PATH: discovery,  # RFC 8414's name for the same document
                    HEALTH_PATH: healthz,
                    READY_PATH: readiness,
                    OPENAPI_PATH: StaticJson(OPENAPI_DOCUMENT.read_bytes()),
                    **{pipeline.method: rpc for pipeline in pipelines},
                },
                under={
                    **{prefix: rest for prefix in rest.prefixes()},
                    CONSOLE_PREFIX: ConsoleFiles(read_build()),
                },
            )
        )
    )


def add_grpc_port(server: aio.Server, config: Config, tls: ServingCertificate | None) -> int:
    try:
        if tls is None:
            return server.add_insecure_port(config.grpc_addr)
        return server.add_secure_port(config.grpc_addr, tls.grpc_credentials())
    except RuntimeError as error:  # grpcio's only word for it: "Failed to bind to address"
        raise CannotListen("MS_GRPC_ADDR", config.grpc_addr, "in use, or not this machine's") from error


async def _start(
    config: Config,
    raw_store: Store,
    clock: Clock,
    tls: ServingCertificate | None,
    placement: Placement | None,
) -> Service:
    domain = await build_domain(config, raw_store, clock)
    store, metrics = domain.store, domain.metrics
    await set_up_instance(config, domain)
    # The first signing key, on a new store, before any token is asked for.
    key_schedule = KeySchedule(domain.commands, domain.keyring)
    await key_schedule.start_up()
    admission = build_admission(config, metrics)
    # Every call of the API, on every transport, runs one of these.
    pipelines = build_pipelines(
        {
            USER_SERVICE: UserService(domain.commands, domain.queries),
            ORG_SERVICE: OrgService(domain.commands, domain.queries),
            AUDIT_SERVICE: AuditService(domain.audit),
            PROJECT_SERVICE: ProjectService(domain.commands, domain.queries),
            ZITADEL_MANAGEMENT: ManagementService(domain.commands, domain.queries),
            ZITADEL_USERS: UserServiceV2(domain.commands, domain.queries),
            ZITADEL_ORGS: OrganizationServiceV2(domain.commands),
            ZITADEL_ADMINISTRATORS: InternalPermissionService(domain.commands),
            ZITADEL_AUTH: AuthService(domain.queries),
            ZITADEL_WEB_KEYS: WebKeyService(domain.commands, domain.queries),
        },
        domain.access,
        metrics,
        admission,
    )
    server = build_grpc_server(placement)
    sweep_orphans()  # what a killed service left behind
    sockets = envoy_sockets(config, placement)
    try:
        discovery = Discovery(config.issuer, "http" if tls is None else "https")
        readiness = Readiness(store)
        server.add_generic_rpc_handlers(
            method_handlers(pipelines, config.request_read_timeout.total_seconds())
        )
        http_app = build_http_app(config, domain, pipelines, admission, sockets, discovery, readiness)
        health_servicer = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)  # type: ignore[no-untyped-call]
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)
        port = add_grpc_port(server, config, tls)
        if sockets.grpc is not None:
            server.add_insecure_port(f"unix:{sockets.grpc}")
        await server.start()
        try:
            ssl_context = None if tls is None else tls.http_context()
            http_server = await AsgiServer.start(
                http_app,
                config.http_addr,
                sockets.http,
                ssl_context,
                reuse_port=placement is not None,
                head_timeout_s=config.request_read_timeout.total_seconds(),
                backlog=build_backlog(config, metrics, pipelines),
            )
        except OSError as error:
            raise CannotListen("MS_HTTP_ADDR", config.http_addr, error.strerror or "refused") from error
        try:
            metrics_server = await start_metrics(config.metrics_addr, metrics, ssl_context, placement)
        except BaseException:
            await http_server.stop(0)
            raise
    except BaseException:  # a taken port, say: nothing is left running, and the socket's folder goes
        await server.stop(None)
        if sockets.private_dir is not None:
            sockets.private_dir.cleanup()
        raise
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    store_watch = StoreWatch(store, health_servicer, ("", *SERVICE_NAMES))
    store_watch.start()
    sweeper = Sweeper(store, clock, config.sweep_interval.total_seconds(), config.sweep_batch)
    sweeper.start()
    key_schedule.start()
    log.info("gRPC listening on %s", with_port(config.grpc_addr, port))
    log.info("grpc-web and HTTP listening on %s", with_port(config.http_addr, http_server.port))
    if config.metrics_addr is not None and metrics_server is not None:
        log.info("metrics listening on %s", with_port(config.metrics_addr, metrics_server.port))
    envoy = None
    if sockets.private_dir is not None:
        envoy = await start_envoy(config, (f"unix:{sockets.grpc}",), (f"unix:{sockets.http}",), tls)
        if envoy is not None and tls is not None:
            tls.on_reload(envoy.use_certificate)
    # Clients find the token endpoint by these addresses, Envoy's first.
    if config.envoy_addr is not None and envoy is not None:
        discovery.allow(with_port(config.envoy_addr, envoy.port))
    if placement is not None and placement.envoy_addr is not None:
        discovery.allow(placement.envoy_addr)
    discovery.allow(with_port(config.http_addr, http_server.port))
    return Service(
        store,
        server,
        port,
        http_server,
        envoy,
        health_servicer,
        readiness,
        store_watch,
        admission,
        sweeper,
        key_schedule,
        metrics_server,
        sockets.private_dir,
        domain.threads,
        tls,
    )


async def log_look_alikes(store: Store) -> None:
    """Users made before look-alike names were one name (migration 15), whose names look alike:
    one line each, at every start, until one of each pair is removed. Both are still served (each
    is found by its own name), so nothing is refused at start; no new look-alike can be made."""
    for holder, kept in await store.look_alike_users():
        log.warning(
            "users %s (%s, organisation %s) and %s (%s, organisation %s) have names that look alike"
            " (Unicode TS #39 skeleton); both are served: remove one",
            holder.id, ascii(holder.user_name), holder.org_id, kept.id, ascii(kept.user_name), kept.org_id,
        )  # fmt: skip


async def start_metrics(
    addr: str | None, metrics: Metrics, ssl_context: ssl.SSLContext | None, placement: Placement | None
) -> AsgiServer | None:
    """/metrics on an address of its own (MS_METRICS_ADDR), never on the API's ports: its counts
    (calls by method and code, failed authentications, tokens issued) are for operators, so it
    listens on loopback unless told otherwise, and Envoy does not route it. With TLS, over TLS.

    Workers (server/supervisor.py): each serves its own on a private Unix socket only, and the
    supervisor serves MS_METRICS_ADDR with every worker's summed (runtime/worker_metrics.py)."""
    app = StrictTransportSecurity(HttpApp({METRICS_PATH: MetricsEndpoint(metrics)}))
    if placement is not None:
        if placement.metrics_socket is None:
            return None
        return await AsgiServer.start(app, None, placement.metrics_socket)
    if addr is None:
        return None
    try:
        return await AsgiServer.start(app, addr, None, ssl_context)
    except OSError as error:
        raise CannotListen("MS_METRICS_ADDR", addr, error.strerror or "refused") from error


async def start_envoy(
    config: Config, grpc: tuple[str, ...], http: tuple[str, ...], tls: ServingCertificate | None
) -> EnvoyProcess | None:
    """Envoy in front of these servers (their private sockets), when configured. If it cannot
    start, the servers still serve gRPC and grpc-web directly, and the log says why."""
    if config.envoy_addr is None:
        return None
    settings = EnvoySettings(
        listen=config.envoy_addr,
        grpc=grpc,
        http=http,
        cors_origins=config.cors_origins,
        max_request_bytes=MAX_REQUEST_BYTES,
        request_read_timeout_s=config.request_read_timeout.total_seconds(),
        tls=None if tls is None else (tls.files.cert_file, tls.files.key_file),
    )
    try:
        envoy = await EnvoyProcess.start(
            settings, None if tls is None else (tls.files.chain_pem, tls.files.key_pem)
        )
    except EnvoyError as error:
        log.error("Envoy did not start, so JSON is not served; gRPC and grpc-web still are: %s", error)
        return None
    log.info("Envoy (JSON, gRPC, grpc-web) listening on %s", with_port(config.envoy_addr, envoy.port))
    return envoy


def with_port(addr: str, port: int) -> str:
    return f"{addr.rpartition(':')[0]}:{port}"
