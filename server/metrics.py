"""What an operator watches, as Prometheus metrics (prometheus_client), served at GET /metrics on
the HTTP port (transport/metrics_endpoint.py; Envoy does not route it).

One Metrics per service, with a registry of its own: a process may run several services (the
tests do), and each must count only its own calls. Every layer records through the one object
it is given, so that no module keeps a global counter.

Labels are bounded sets: methods and paths are the service's own, codes are gRPC's or HTTP's, and
reasons are the service's ErrorInfo reasons. Nothing a caller sends becomes a label value.
"""

import time
from collections.abc import Awaitable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.parser import text_string_to_metric_families

from server.events.base import NewEvent, StoredEvent
from server.events.org import SecretPolicySet
from server.store.contract import (
    AppendObserver,
    AppKeyRecord,
    AppRecord,
    AuditedEvent,
    CallerRecord,
    ClientRecord,
    EventFilter,
    FederatedCredentialRecord,
    GrantRecord,
    MachineKeyRecord,
    MemberRecord,
    MetadataRecord,
    OrgRecord,
    PatRecord,
    ProjectRecord,
    ProjectRoleRecord,
    RevocationReportCount,
    SecretRecord,
    Store,
    StoreError,
    TrustedIssuerRecord,
    UserName,
    UserRecord,
    WebKeyRecord,
)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
PREFIX = "machinesecrets"
# Calls take from a tenth of a millisecond (a refused one) to seconds (bcrypt at a high cost).
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# bcrypt's cost doubles its time: cost 4 takes about a millisecond, cost 12 about a quarter second.
BCRYPT_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.calls = Counter(
            f"{PREFIX}_calls",
            "Calls answered, by method (RPC or HTTP path), transport and code (gRPC code or HTTP status)",
            ["method", "transport", "code"],
            registry=registry,
        )
        self.call_seconds = Histogram(
            f"{PREFIX}_call_duration_seconds",
            "Time from a call's arrival to its answer, by method and transport",
            ["method", "transport"],
            buckets=CALL_BUCKETS,
            registry=registry,
        )
        self.inflight = Gauge(
            f"{PREFIX}_calls_in_flight",
            "Calls being worked on now (MS_MAX_INFLIGHT bounds it)",
            registry=registry,
        )
        self.unfinished = Gauge(
            f"{PREFIX}_requests_arriving",
            "Requests whose body is still arriving (MS_MAX_UNFINISHED bounds it)",
            registry=registry,
        )
        self.refused_waiting = Counter(
            f"{PREFIX}_requests_refused_waiting",
            "HTTP requests refused as they were read, with more than MS_MAX_WAITING waiting to begin"
            " (no access line is written for these)",
            registry=registry,
        )
        self.bcrypt_seconds = Histogram(
            f"{PREFIX}_bcrypt_duration_seconds",
            "Time of one bcrypt operation: hash (a new secret) or verify (a token request, a report)",
            ["operation"],
            buckets=BCRYPT_BUCKETS,
            registry=registry,
        )
        self.store_seconds = Histogram(
            f"{PREFIX}_store_operation_duration_seconds",
            "Time of one store operation, by operation",
            ["operation"],
            buckets=STORE_BUCKETS,
            registry=registry,
        )
        self.store_errors = Counter(
            f"{PREFIX}_store_errors",
            "Store operations that failed, by operation and error (conflicts are part of the design)",
            ["operation", "error"],
            registry=registry,
        )
        self.tokens_issued = Counter(
            f"{PREFIX}_access_tokens_issued", "Access tokens issued at the token endpoint", registry=registry
        )
        self.authentication_failures = Counter(
            f"{PREFIX}_authentication_failures",
            "Refused authentications, by reason: a bearer token's (TOKEN_MISSING, TOKEN_MALFORMED,"
            " TOKEN_INVALID) or a client's at the token endpoint (invalid_client, slow_down)",
            ["reason"],
            registry=registry,
        )

    def count_call(self, method: str, transport: str, code: str, seconds: float) -> None:
        self.calls.labels(method, transport, code).inc()
        self.call_seconds.labels(method, transport).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def calls_by_code(exposition: str, method: str) -> dict[str, int]:
    """From a scrape of /metrics: how many calls of method were answered with each code, over
    every transport (for the benchmark and the tests)."""
    counts: dict[str, int] = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples if family.name == f"{PREFIX}_calls" else ():
            if sample.name == f"{PREFIX}_calls_total" and sample.labels["method"] == method:
                code = sample.labels["code"]
                counts[code] = counts.get(code, 0) + int(sample.value)
    return counts


T = TypeVar("T")
# What each of TimedStore's methods returns: the timed call, awaited by the caller (a method that
# returns it, rather than an async method that awaits it, costs no second coroutine per call).
Timed = Coroutine[Any, Any, T]


class TimedStore:
    """The store, with every operation timed, and its failures counted, by the operation's name.

    Method by method, so that mypy checks it against Store: a method the contract gains must be
    added here (tests/test_observability.py checks that each is timed under its own name)."""

    def __init__(self, store: Store, metrics: Metrics) -> None:
        self._store = store
        self._metrics = metrics
        self._seconds: dict[str, Histogram] = {}

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        seconds = self._seconds.get(operation)
        if seconds is None:
            seconds = self._seconds[operation] = self._metrics.store_seconds.labels(operation)
        started = time.perf_counter()
        try:
            return await call
        except StoreError as error:
            self._metrics.store_errors.labels(operation, type(error).__name__).inc()
            raise
        finally:
            seconds.observe(time.perf_counter() - started)

    def append(self, events: Sequence[NewEvent], *, durable: bool = True) -> Timed[list[StoredEvent]]:
        return self._timed("append", self._store.append(events, durable=durable))

    def observe_appends(self, observer: AppendObserver) -> None:
        self._store.observe_appends(observer)

    def durable(self) -> Timed[None]:
        return self._timed("durable", self._store.durable())

    def events(self, aggregate_type: str, aggregate_id: str) -> Timed[list[StoredEvent]]:
        return self._timed("events", self._store.events(aggregate_type, aggregate_id))

    def sequence_of(self, aggregate_type: str, aggregate_id: str) -> Timed[int]:
        return self._timed("sequence_of", self._store.sequence_of(aggregate_type, aggregate_id))

    def user(self, user_id: str) -> Timed[UserRecord | None]:
        return self._timed("user", self._store.user(user_id))

    def orgs_page(self, org_ids: Sequence[str] | None, after_id: str, limit: int) -> Timed[list[OrgRecord]]:
        return self._timed("orgs_page", self._store.orgs_page(org_ids, after_id, limit))

    def users_page(
        self, org_id: str, prefix_key: str, user_type: str, after_key: str, limit: int
    ) -> Timed[list[UserRecord]]:
        return self._timed(
            "users_page", self._store.users_page(org_id, prefix_key, user_type, after_key, limit)
        )

    def user_by_name(self, user_name: str) -> Timed[UserRecord | None]:
        return self._timed("user_by_name", self._store.user_by_name(user_name))

    def client(self, user_name: str, lookup: str | None) -> Timed[ClientRecord]:
        return self._timed("client", self._store.client(user_name, lookup))

    def secrets(self, user_id: str) -> Timed[list[SecretRecord]]:
        return self._timed("secrets", self._store.secrets(user_id))

    def secrets_by_lookup(self, lookups: Sequence[str]) -> Timed[list[SecretRecord]]:
        return self._timed("secrets_by_lookup", self._store.secrets_by_lookup(lookups))

    def touch_secret(self, secret_id: str, at_micros: int, unless_since_micros: int) -> Timed[None]:
        return self._timed(
            "touch_secret", self._store.touch_secret(secret_id, at_micros, unless_since_micros)
        )

    def secret_policy(self, org_id: str) -> Timed[SecretPolicySet]:
        return self._timed("secret_policy", self._store.secret_policy(org_id))

    def org(self, org_id: str) -> Timed[OrgRecord | None]:
        return self._timed("org", self._store.org(org_id))

    def any_org(self) -> Timed[bool]:
        return self._timed("any_org", self._store.any_org())

    def member_roles(self, org_id: str, user_id: str) -> Timed[frozenset[str] | None]:
        return self._timed("member_roles", self._store.member_roles(org_id, user_id))

    def roles_of(self, user_id: str) -> Timed[dict[str, frozenset[str]]]:
        return self._timed("roles_of", self._store.roles_of(user_id))

    def members_page(
        self, org_id: str, user_id: str, after_id: str, limit: int, offset: int = 0
    ) -> Timed[list[MemberRecord]]:
        return self._timed("members_page", self._store.members_page(org_id, user_id, after_id, limit, offset))

    def member_count(self, org_id: str, user_id: str) -> Timed[int]:
        return self._timed("member_count", self._store.member_count(org_id, user_id))

    def caller(self, token_hash: str) -> Timed[CallerRecord | None]:
        return self._timed("caller", self._store.caller(token_hash))

    def sweep_expired_tokens(self, now_micros: int, limit: int) -> Timed[int]:
        return self._timed("sweep_expired_tokens", self._store.sweep_expired_tokens(now_micros, limit))

    def look_alike_users(self) -> Timed[list[tuple[UserName, UserName]]]:
        return self._timed("look_alike_users", self._store.look_alike_users())

    def active_iam_owners(self) -> Timed[set[str]]:
        return self._timed("active_iam_owners", self._store.active_iam_owners())

    def machine_keys(self, user_id: str) -> Timed[list[MachineKeyRecord]]:
        return self._timed("machine_keys", self._store.machine_keys(user_id))

    def machine_key(self, key_id: str) -> Timed[MachineKeyRecord | None]:
        return self._timed("machine_key", self._store.machine_key(key_id))

    def touch_machine_key(self, key_id: str, at_micros: int, unless_since_micros: int) -> Timed[None]:
        return self._timed(
            "touch_machine_key", self._store.touch_machine_key(key_id, at_micros, unless_since_micros)
        )

    def trusted_issuers(self, org_id: str) -> Timed[list[TrustedIssuerRecord]]:
        return self._timed("trusted_issuers", self._store.trusted_issuers(org_id))

    def federated_credentials(self, user_id: str) -> Timed[list[FederatedCredentialRecord]]:
        return self._timed("federated_credentials", self._store.federated_credentials(user_id))

    def touch_federated_credential(
        self, credential_id: str, at_micros: int, unless_since_micros: int
    ) -> Timed[None]:
        return self._timed(
            "touch_federated_credential",
            self._store.touch_federated_credential(credential_id, at_micros, unless_since_micros),
        )

    def remember_assertion(self, jti_key: str, expires_micros: int, now_micros: int) -> Timed[bool]:
        return self._timed(
            "remember_assertion", self._store.remember_assertion(jti_key, expires_micros, now_micros)
        )

    def personal_access_tokens(self, user_id: str) -> Timed[list[PatRecord]]:
        return self._timed("personal_access_tokens", self._store.personal_access_tokens(user_id))

    def touch_token(self, token_hash: str, at_micros: int, unless_since_micros: int) -> Timed[None]:
        return self._timed("touch_token", self._store.touch_token(token_hash, at_micros, unless_since_micros))

    def record_failure(
        self, keys: tuple[str, str], at_micros: int, after_micros: int, forget_micros: int, count: int = 1
    ) -> Timed[dict[str, tuple[int, int]]]:
        failure = self._store.record_failure(keys, at_micros, after_micros, forget_micros, count)
        return self._timed("record_failure", failure)

    def recent_failures(self, keys: tuple[str, str], after_micros: int) -> Timed[dict[str, tuple[int, int]]]:
        return self._timed("recent_failures", self._store.recent_failures(keys, after_micros))

    def count_revocation_report(
        self, report: RevocationReportCount, max_sources: int, forget_before_micros: int
    ) -> Timed[None]:
        count = self._store.count_revocation_report(report, max_sources, forget_before_micros)
        return self._timed("count_revocation_report", count)

    def revocation_report_counts(self) -> Timed[list[RevocationReportCount]]:
        return self._timed("revocation_report_counts", self._store.revocation_report_counts())

    def project(self, project_id: str) -> Timed[ProjectRecord | None]:
        return self._timed("project", self._store.project(project_id))

    def projects(self, org_id: str) -> Timed[list[ProjectRecord]]:
        return self._timed("projects", self._store.projects(org_id))

    def project_roles(self, project_id: str) -> Timed[list[ProjectRoleRecord]]:
        return self._timed("project_roles", self._store.project_roles(project_id))

    def apps(self, project_id: str) -> Timed[list[AppRecord]]:
        return self._timed("apps", self._store.apps(project_id))

    def app_by_client_id(self, client_id: str) -> Timed[AppRecord | None]:
        return self._timed("app_by_client_id", self._store.app_by_client_id(client_id))

    def app_keys(self, app_id: str) -> Timed[list[AppKeyRecord]]:
        return self._timed("app_keys", self._store.app_keys(app_id))

    def user_grant(self, grant_id: str) -> Timed[GrantRecord | None]:
        return self._timed("user_grant", self._store.user_grant(grant_id))

    def user_grants(self, org_id: str) -> Timed[list[GrantRecord]]:
        return self._timed("user_grants", self._store.user_grants(org_id))

    def grants_of_user(self, user_id: str) -> Timed[list[GrantRecord]]:
        return self._timed("grants_of_user", self._store.grants_of_user(user_id))

    def webkeys(self) -> Timed[list[WebKeyRecord]]:
        return self._timed("webkeys", self._store.webkeys())

    def user_metadata(self, user_id: str) -> Timed[list[MetadataRecord]]:
        return self._timed("user_metadata", self._store.user_metadata(user_id))

    def server_key(self, name: str) -> Timed[bytes]:
        return self._timed("server_key", self._store.server_key(name))

    def close(self) -> Timed[None]:
        return self._timed("close", self._store.close())

    def audit_events(self, where: EventFilter, after_position: int, limit: int) -> Timed[list[AuditedEvent]]:
        return self._timed("audit_events", self._store.audit_events(where, after_position, limit))

    def user_audit_events(
        self, user_id: str, org_id: str, before_position: int, limit: int
    ) -> Timed[list[AuditedEvent]]:
        events = self._store.user_audit_events(user_id, org_id, before_position, limit)
        return self._timed("user_audit_events", events)

    def chain_rows(self, after_position: int, limit: int) -> Timed[list[Mapping[str, Any]]]:
        return self._timed("chain_rows", self._store.chain_rows(after_position, limit))

    def chain_hash_before(self, aggregate_type: str, aggregate_id: str, sequence: int) -> Timed[str]:
        return self._timed(
            "chain_hash_before", self._store.chain_hash_before(aggregate_type, aggregate_id, sequence)
        )

    def audit_head(self) -> Timed[tuple[int, str]]:
        return self._timed("audit_head", self._store.audit_head())

    def event_count(self) -> Timed[int]:
        return self._timed("event_count", self._store.event_count())
