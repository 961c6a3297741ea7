"""Who made a change: the actor every event records (issue 31), beside what changed.

A neutral module: the transports build an Actor for each call, the domain carries it into the
events it writes, and the store writes its fields as columns of the events table. None of those
layers owns it, so each may import it (tests/test_layers.py).

The fields are part of the stored contract (SECURITY.md, "Verifying the audit chain", hashes
every one of them): their names and the values of `credential_kind` are never rewritten.
"""

from dataclasses import dataclass

# What authenticated the change. An event written before actors were recorded (migration 16) is
# KIND_UNKNOWN: nothing is back-filled by guesswork.
KIND_PAT = "pat"  # a personal access token: credential_id is its token id
KIND_SECRET = "secret"  # a client secret, at the token endpoint: credential_id is its secret id
KIND_ACCESS_TOKEN = "access_token"  # an OAuth2 access token: credential_id is its secret's id
KIND_MACHINE_KEY = "machine_key"  # a machine key, by an assertion it signed: credential_id is its key id
# a workload's platform token (issue 34): credential_id is the federated credential's id
KIND_FEDERATED = "federated"
# an API application's client secret (revoking a token meant for its project): credential_id is
# the application's id, and user_id is empty (an application is no user)
KIND_APP_SECRET = "app_secret"
KIND_SYSTEM = "system"  # the service itself: the first start, sweeps
KIND_ANONYMOUS = "anonymous"  # no credential: a report to the revocation endpoint
KIND_UNKNOWN = "unknown"
CREDENTIAL_KINDS = frozenset(
    {
        KIND_PAT,
        KIND_SECRET,
        KIND_ACCESS_TOKEN,
        KIND_MACHINE_KEY,
        KIND_FEDERATED,
        KIND_APP_SECRET,
        KIND_SYSTEM,
        KIND_ANONYMOUS,
        KIND_UNKNOWN,
    }
)

# The transports an actor came by: the access log's names for the pipeline's (grpc, grpc-web,
# connect, json: the native JSON paths, ndjson: the event stream), and the HTTP endpoints'.
TRANSPORT_OAUTH = "oauth"  # the token endpoint, and /oauth/v2/revoke
TRANSPORT_REVOCATION = "revocation"  # POST /secrets/revoke


@dataclass(frozen=True)
class Actor:
    """Who acted: a user (and its organisation) by a credential, in a request, from an address,
    over a transport. Empty strings where a field does not apply (the system has no user, an
    anonymous reporter no credential)."""

    user_id: str = ""
    org_id: str = ""
    credential_kind: str = KIND_UNKNOWN
    credential_id: str = ""
    request_id: str = ""
    # The client's address, as the trusted-proxy rules decide it (MS_TRUSTED_PROXIES, the
    # service's own Envoy): for a call, the address the access log's peer names.
    peer: str = ""
    transport: str = ""

    def fields(self) -> tuple[str, str, str, str, str, str, str]:
        """The fields in their order, as the events table's actor columns are written
        (server/audit/chain.py's ACTOR_FIELDS)."""
        return (
            self.user_id,
            self.org_id,
            self.credential_kind,
            self.credential_id,
            self.request_id,
            self.peer,
            self.transport,
        )


# Events written before migration 16, and any a caller writes without saying who acted.
UNKNOWN = Actor()
# The service itself: the first start's organisation, admin and token; the sweeps.
SYSTEM = Actor(credential_kind=KIND_SYSTEM)


def anonymous(peer: str, request_id: str = "", transport: str = TRANSPORT_REVOCATION) -> Actor:
    """Someone who presented no credential, known only by its address."""
    return Actor(credential_kind=KIND_ANONYMOUS, request_id=request_id, peer=peer, transport=transport)


def by_client_secret(origin: Actor, user_id: str, org_id: str, secret_id: str) -> Actor:
    """At the token endpoint: the client that proved it holds its secret `secret_id`, where origin
    is the request (its id, address and transport) before the client was known."""
    return Actor(user_id, org_id, KIND_SECRET, secret_id, origin.request_id, origin.peer, origin.transport)


def by_machine_key(origin: Actor, user_id: str, org_id: str, key_id: str) -> Actor:
    """At the token endpoint: the client that proved it holds the machine key `key_id` (an
    assertion it signed), where origin is the request."""
    return Actor(user_id, org_id, KIND_MACHINE_KEY, key_id, origin.request_id, origin.peer, origin.transport)


def by_app_secret(origin: Actor, app_id: str, org_id: str) -> Actor:
    """At the OAuth endpoints: the API application app_id (of a project of org_id) that proved
    it holds its secret, where origin is the request."""
    return Actor("", org_id, KIND_APP_SECRET, app_id, origin.request_id, origin.peer, origin.transport)


def by_federated_credential(origin: Actor, user_id: str, org_id: str, credential_id: str) -> Actor:
    """At the token endpoint: the workload whose platform token matched the federated credential
    `credential_id` (issue 34), where origin is the request."""
    return Actor(
        user_id, org_id, KIND_FEDERATED, credential_id, origin.request_id, origin.peer, origin.transport
    )
