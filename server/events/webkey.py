"""Events of the signing keys of JWT access tokens (aggregate `webkeys`, one for the instance:
WEBKEYS_ID; resource owner "": no organisation owns them). ZITADEL calls them web keys.

A key's life: added (published in the JWKS at once), activated (it signs from a moment, at least
one JWKS cache TTL after it was added: domain/signing_keys.py), superseded by the next activation,
removed (no longer published, once every token it signed has expired, or by an IAM_OWNER).
"""

from dataclasses import dataclass, field

from server.events.base import AGGREGATE_WEBKEYS, Event


@dataclass(frozen=True)
class WebKeyAdded(Event, type_name="webkey.added", aggregate=AGGREGATE_WEBKEYS, changes_power=False):
    """A new key pair: its public JWK, and its private key only encrypted (AES-256-GCM under a key
    derived from the master key, the key id as associated data; base64 of nonce and ciphertext)."""

    key_id: str
    algorithm: str  # "RS256" or "ES256"
    public_jwk: str  # JSON: the public key alone, as the JWKS serves it
    private_key: str = field(repr=False)  # encrypted, never readable without the master key


@dataclass(frozen=True)
class WebKeyActivated(Event, type_name="webkey.activated", aggregate=AGGREGATE_WEBKEYS, changes_power=False):
    """The key signs from signs_from (microseconds since the epoch) on, until a later activation
    takes over. Every process reads the moment, so all switch together, without asking the store."""

    key_id: str
    signs_from: int


@dataclass(frozen=True)
class WebKeyRemoved(Event, type_name="webkey.removed", aggregate=AGGREGATE_WEBKEYS, changes_power=False):
    """No longer published: verifiers that fetch the JWKS again refuse what it signed. Tokens it
    signed still have their rows, so this service's own checks do not change."""

    key_id: str
