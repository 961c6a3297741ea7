"""Events of a machine user's keys (aggregate `user`, resource owner: the user's organisation),
ZITADEL's machine keys: the public half of a key pair whose private half signs the assertions of
the JWT profile grant (RFC 7523) and of private_key_jwt.

A key carries its id, its public key as PEM (SubjectPublicKeyInfo; never a private key: the
service forgets a key pair it generated once it has answered), the algorithm family ("RSA" or
"EC"), and its expiry in microseconds since the epoch (None: never).
"""

from dataclasses import dataclass, field

from server.events.base import AGGREGATE_USER, Event


@dataclass(frozen=True)
class MachineKeyAdded(
    Event, type_name="user.machine.key.added", aggregate=AGGREGATE_USER, changes_power=False
):
    """A new key: it is in no cache, and no token was earned with it yet."""

    key_id: str
    public_key: str = field(repr=False)
    key_type: str  # "RSA" or "EC": which algorithms an assertion it signs may name
    expires_at: int | None


@dataclass(frozen=True)
class MachineKeyRemoved(
    Event, type_name="user.machine.key.removed", aggregate=AGGREGATE_USER, changes_power=True
):
    """The key, and every access token it earned, end at once."""

    key_id: str
