"""The secret lifecycle against a small model, in random sequences: create, rotate, delete, replace
(AddSecret), remove all, time passing (the service's clock is moved, not waited for), policy
changes and token requests. After every step the model says which secrets authenticate, what
ListSecrets shows, and which events the user's aggregate holds.

The model is written from the issue's rules (docs/rotation.md), not from server/:
- a secret is live until its expiry; rotation moves every other secret's expiry to now + grace
  if that is sooner; AddSecret leaves only its own secret; RemoveSecret leaves none;
- a new secret without an expiry gets the policy's default lifetime, else its maximum, else none;
  one asked to live past the maximum, or a grace past the maximum grace, is INVALID_ARGUMENT;
- at most max_secrets_per_user (5 by default) live secrets, counted after the change;
- a policy applies to secrets made after it;
- a token request succeeds exactly with a live secret, and writes no event on the user.
Expiries within a second of "now" are not judged: the model and the service read the time a few
milliseconds apart.
"""

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from machinesecrets.v1 import org_service_pb2 as org_pb
from machinesecrets.v1 import user_service_pb2 as user_pb

from server import app
from server.clock import ShiftedClock
from server.events.base import AGGREGATE_USER
from server.events.secret import SecretAdded, SecretDeleted, SecretRotated, SecretSet, SecretsRemoved
from server.events.user import MachineUserAdded
from tests import postgres
from tests.api import ApiError, GrpcApi
from tests.service import BACKENDS, Running, config_for
from tests.world import World

DEFAULT_MAX_SECRETS = 5
MAX_EXPIRED_KEPT = 20  # docs/rotation.md: older expired secrets go when a new one is made
FUZZ = timedelta(seconds=1)
EXAMPLES = 80  # per store; each is STEPS calls against the model (about a minute in all)
STEPS = 30
_names = itertools.count()

# Spans that do not add up to each other to the second, to keep expiries away from "now".
ADVANCES = [
    timedelta(minutes=7, seconds=13),
    timedelta(minutes=41, seconds=7),
    timedelta(hours=13, seconds=17),
]
GRACES = [timedelta(0), timedelta(minutes=10), timedelta(hours=1)]
ASKED_LIFETIMES = [None, timedelta(minutes=30), timedelta(hours=3), timedelta(days=40)]
POLICY_SPANS = [None, timedelta(minutes=30), timedelta(hours=2), timedelta(days=30)]


def stamp(moment: datetime) -> timestamp_pb2.Timestamp:
    value = timestamp_pb2.Timestamp()
    value.FromDatetime(moment)
    return value


@dataclass
class Policy:
    max_lifetime: timedelta | None = None
    default_lifetime: timedelta | None = None
    max_secrets: int | None = None
    max_grace: timedelta | None = None


@dataclass
class Secret:
    text: str
    secret_id: str
    expires_at: datetime | None
    description: str


@dataclass
class Harness:
    """What one run of the machine uses: the service (in this process, on the test's loop), its
    clock, and clients."""

    loop: asyncio.AbstractEventLoop
    running: Running
    clock: ShiftedClock
    world: World

    def run(self, work: Any) -> Any:
        return self.loop.run_until_complete(work)


class SecretLifecycle(RuleBasedStateMachine):
    harness: Harness

    @initialize()
    def start(self) -> None:
        self.world = self.harness.world
        self.org = self.run(self.world.org())  # a fresh organisation: its own policy
        self.user_name = f"lifecycle-{next(_names)}"
        self.user_id = self.run(self.world.machine_user(org=self.org, user_name=self.user_name))
        self.secrets: dict[str, Secret] = {}  # by secret id: the ones that exist
        self.gone: list[Secret] = []  # deleted, replaced, removed: they must never work again
        self.policy = Policy()
        self.events = [MachineUserAdded.TYPE]

    # The model's rules ----------------------------------------------------------------------

    def now(self) -> datetime:
        return self.harness.clock.now()

    def live(self, secret: Secret) -> bool | None:
        """Whether a secret is live now; None when its expiry is too close to now to judge."""
        if secret.expires_at is None:
            return True
        if abs(secret.expires_at - self.now()) < FUZZ:
            return None
        return secret.expires_at > self.now()

    def live_count(self) -> int | None:
        states = [self.live(s) for s in self.secrets.values()]
        return None if None in states else sum(bool(s) for s in states)

    def expected_expiry(self, asked: timedelta | None) -> tuple[datetime | None, str | None]:
        """The expiry of a new secret, or the field a policy refuses."""
        if asked is None:
            lifetime = self.policy.default_lifetime or self.policy.max_lifetime
            return (None if lifetime is None else self.now() + lifetime), None
        if self.policy.max_lifetime is not None and asked > self.policy.max_lifetime:
            return None, "expiration_date"
        return self.now() + asked, None

    def prune(self) -> None:
        """A user keeps its MAX_EXPIRED_KEPT most recently expired secrets."""
        expired = [
            s for s in self.secrets.values() if s.expires_at is not None and s.expires_at <= self.now()
        ]
        expired.sort(key=lambda s: (s.expires_at, s.secret_id))
        for secret in expired[:-MAX_EXPIRED_KEPT]:
            self.gone.append(self.secrets.pop(secret.secret_id))

    def limit(self) -> int:
        return DEFAULT_MAX_SECRETS if self.policy.max_secrets is None else self.policy.max_secrets

    # Calls ---------------------------------------------------------------------------------

    def run(self, work: Any) -> Any:
        return self.harness.run(work)

    def call(self, method: str, request: Any) -> Any:
        return self.run(self.world.call(method, request, org=self.org))

    def refused(self, method: str, request: Any) -> ApiError:
        with pytest.raises(ApiError) as caught:
            self.call(method, request)
        return caught.value

    def issue(self, method: str, request: Any, expires_at: datetime | None, description: str) -> str:
        answer = self.call(method, request)
        secret_id = answer.secret_id if method != "AddSecret" else self.only_listed_id()
        if method != "AddSecret":
            assert answer.HasField("expiration_date") == (expires_at is not None)
            if expires_at is not None:
                assert abs(answer.expiration_date.ToDatetime(expires_at.tzinfo) - expires_at) < FUZZ
                expires_at = answer.expiration_date.ToDatetime(expires_at.tzinfo)
        self.secrets[secret_id] = Secret(answer.client_secret, secret_id, expires_at, description)
        return str(secret_id)

    def only_listed_id(self) -> str:
        [only] = self.call("ListSecrets", user_pb.ListSecretsRequest(user_id=self.user_id)).secrets
        return str(only.secret_id)

    # Rules ---------------------------------------------------------------------------------

    @rule(asked=st.sampled_from(ASKED_LIFETIMES), description=st.sampled_from(["", "ci", "prod"]))
    def create(self, asked: timedelta | None, description: str) -> None:
        live = self.live_count()
        if live is None:
            return
        request = user_pb.CreateSecretRequest(user_id=self.user_id, description=description)
        if asked is not None:
            request.expiration_date.CopyFrom(stamp(self.now() + asked))
        expires_at, refused_field = self.expected_expiry(asked)
        if refused_field is not None:
            error = self.refused("CreateSecret", request)
            assert (error.code, list(error.violations)) == (grpc.StatusCode.INVALID_ARGUMENT, [refused_field])
            return
        if live + 1 > self.limit():
            error = self.refused("CreateSecret", request)
            assert error.reason == "SECRET_LIMIT_REACHED"
            return
        self.issue("CreateSecret", request, expires_at, description)
        self.prune()
        self.events.append(SecretAdded.TYPE)

    @rule(grace=st.sampled_from(GRACES))
    def rotate(self, grace: timedelta) -> None:
        live = self.live_count()
        if live is None:
            return
        request = user_pb.RotateSecretRequest(
            user_id=self.user_id, grace_period=duration_pb2.Duration(seconds=int(grace.total_seconds()))
        )
        if self.policy.max_grace is not None and grace > self.policy.max_grace:
            error = self.refused("RotateSecret", request)
            assert list(error.violations) == ["grace_period"]
            return
        if (live if grace else 0) + 1 > self.limit():
            assert self.refused("RotateSecret", request).reason == "SECRET_LIMIT_REACHED"
            return
        retire = self.now() + grace
        expires_at, _ = self.expected_expiry(None)
        newest = self.issue("RotateSecret", request, expires_at, "")
        for secret in self.secrets.values():
            if secret.secret_id != newest and (secret.expires_at is None or secret.expires_at > retire):
                secret.expires_at = retire
        self.prune()
        self.events.append(SecretRotated.TYPE)

    @precondition(lambda self: bool(self.secrets))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        secret_id = data.draw(st.sampled_from(sorted(self.secrets)))
        self.call("DeleteSecret", user_pb.DeleteSecretRequest(user_id=self.user_id, secret_id=secret_id))
        self.gone.append(self.secrets.pop(secret_id))
        self.events.append(SecretDeleted.TYPE)

    @rule()
    def replace(self) -> None:
        expires_at, _ = self.expected_expiry(None)
        self.gone += self.secrets.values()
        self.secrets = {}
        self.issue("AddSecret", user_pb.AddSecretRequest(user_id=self.user_id), expires_at, "")
        self.events.append(SecretSet.TYPE)

    @rule()
    def remove_all(self) -> None:
        request = user_pb.RemoveSecretRequest(user_id=self.user_id)
        if not self.secrets:
            assert self.refused("RemoveSecret", request).reason == "SECRET_NOT_FOUND"
            return
        self.call("RemoveSecret", request)
        self.gone += self.secrets.values()
        self.secrets = {}
        self.events.append(SecretsRemoved.TYPE)

    @rule(by=st.sampled_from(ADVANCES))
    def time_passes(self, by: timedelta) -> None:
        self.harness.clock.advance(by)

    @rule(
        max_lifetime=st.sampled_from(POLICY_SPANS),
        default_lifetime=st.sampled_from([None, timedelta(hours=1)]),
        max_secrets=st.sampled_from([None, 1, 2, 3]),
        max_grace=st.sampled_from([None, timedelta(0), timedelta(minutes=30)]),
    )
    def set_policy(
        self,
        max_lifetime: timedelta | None,
        default_lifetime: timedelta | None,
        max_secrets: int | None,
        max_grace: timedelta | None,
    ) -> None:
        policy = org_pb.SecretPolicy(max_secrets_per_user=max_secrets)
        for field, span in (
            ("max_lifetime", max_lifetime),
            ("default_lifetime", default_lifetime),
            ("max_grace_period", max_grace),
        ):
            if span is not None:
                getattr(policy, field).FromTimedelta(span)
        request = org_pb.SetSecretPolicyRequest(policy=policy)
        if default_lifetime is not None and max_lifetime is not None and default_lifetime > max_lifetime:
            assert list(self.refused("SetSecretPolicy", request).violations) == ["policy.default_lifetime"]
            return
        self.call("SetSecretPolicy", request)
        self.policy = Policy(max_lifetime, default_lifetime, max_secrets, max_grace)

    @precondition(lambda self: bool(self.secrets or self.gone))
    @rule(data=st.data())
    def token_request(self, data: st.DataObject) -> None:
        secret = data.draw(st.sampled_from([*self.secrets.values(), *self.gone]))
        expected = self.live(secret) if secret.secret_id in self.secrets else False
        if expected is None:
            return
        base = f"http://127.0.0.1:{self.harness.running.service.http_port}"

        async def exchange() -> httpx.Response:
            async with httpx.AsyncClient() as http:
                return await http.post(
                    base + "/oauth/v2/token",
                    data={"grant_type": "client_credentials"},
                    auth=(self.user_name, secret.text),
                )

        answer = self.run(exchange())
        assert answer.status_code == (200 if expected else 401), (secret, self.now(), answer.text)

    # What must hold after every step -------------------------------------------------------

    @invariant()
    def listed_as_modelled(self) -> None:
        if not hasattr(self, "user_id"):
            return
        listed = self.call("ListSecrets", user_pb.ListSecretsRequest(user_id=self.user_id)).secrets
        assert [s.secret_id for s in listed] == sorted(self.secrets, key=int)
        for shown in listed:
            secret = self.secrets[shown.secret_id]
            assert shown.hint == secret.text[4:8]
            assert shown.description == secret.description
            assert shown.HasField("expiration_date") == (secret.expires_at is not None)
            if secret.expires_at is not None:
                assert (
                    abs(shown.expiration_date.ToDatetime(secret.expires_at.tzinfo) - secret.expires_at) < FUZZ
                )
            live = self.live(secret)
            if live is not None:
                assert shown.state == (user_pb.SECRET_STATE_ACTIVE if live else user_pb.SECRET_STATE_EXPIRED)

    @invariant()
    def events_as_modelled(self) -> None:
        if not hasattr(self, "user_id"):
            return
        stored = self.run(self.harness.running.service.store.events(AGGREGATE_USER, self.user_id))
        assert [e.type for e in stored] == self.events


@contextlib.contextmanager
def harness(backend: str, folder: Path) -> Iterator[Harness]:
    loop = asyncio.new_event_loop()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(postgres.throwaway_database()) if backend == "postgres" else None
        clock = ShiftedClock()
        config = config_for(folder, database_url=url)
        service = loop.run_until_complete(app.start(config, clock))
        running = Running(config, service)
        api = loop.run_until_complete(_client(running))
        try:
            world = loop.run_until_complete(World.create(api, running.admin_token))
            yield Harness(loop, running, clock, world)
        finally:
            loop.run_until_complete(api.close())
            loop.run_until_complete(service.stop(0))
            loop.close()


async def _client(running: Running) -> GrpcApi:  # made inside the loop it will run on
    return GrpcApi("grpc", f"127.0.0.1:{running.service.grpc_port}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_lifecycle_follows_the_model(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        postgres.admin_url()  # skips, or fails when PostgreSQL is required, before anything starts
    with harness(backend, tmp_path) as h:
        SecretLifecycle.harness = h
        run_state_machine_as_test(
            SecretLifecycle,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
