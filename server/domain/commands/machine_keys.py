"""Commands on machine keys: the key pairs whose private half signs a machine user's assertions
(the JWT profile grant, private_key_jwt). A key is a credential like a secret: made and ended by
a caller who may act on the user (the gate _credential_holder), bounded by the organisation's
policy (its maxKeyLifetime and maxKeysPerUser), and ended with its user.

A generated key pair is made outside the user's turn (RSA generation is the slow part), and only
its public half is written: the private half is answered once, in ZITADEL's key file.
"""

from dataclasses import dataclass
from datetime import datetime

from server.clock import to_micros
from server.domain import machine_key_material as material
from server.domain import secret_policy as rules
from server.domain import validation as check
from server.domain.commands.writes import Writer, next_of_user
from server.domain.errors import NotFound
from server.domain.model import Details
from server.domain.permissions import CallContext
from server.domain.secret_policy import SecretPolicy
from server.events.base import NewEvent
from server.events.machine_key import MachineKeyAdded, MachineKeyRemoved


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    user_id: str
    expiration_date: datetime | None
    # ZITADEL's key file (JSON, with the private key) for a generated pair; None for an upload.
    key_file: bytes | None
    details: Details

    def __repr__(self) -> str:  # the private key must never reach a log through a repr
        return (
            f"IssuedKey(key_id={self.key_id!r}, user_id={self.user_id!r},"
            f" expiration_date={self.expiration_date!r}, key_file='***', details={self.details!r})"
        )


def key_not_found() -> NotFound:
    return NotFound("KEY_NOT_FOUND", "the machine user has no key with this id")


class MachineKeyCommands(Writer):
    async def add_machine_key(
        self, ctx: CallContext, user_id: str, expires_at: datetime | None, public_key: bytes
    ) -> IssuedKey:
        """A new key of the machine user: the uploaded public key (PEM), or, if none is given, a
        new RSA key pair whose private half is answered once. Expires when asked (None: never),
        at most the organisation's maxKeyLifetime from now."""
        policy = SecretPolicy.of(await self._store.secret_policy(ctx.org_id))
        expires_at, violations = rules.key_expiry(policy, expires_at, self._clock.now())
        violations = check.check_id("user_id", user_id) + violations
        uploaded: material.PublicKey | None = None
        if public_key:
            uploaded, refused = material.read_public_key(public_key)
            violations += refused
        check.raise_if_any(violations)
        pair = None if uploaded is not None else material.generate()
        public = pair.public if pair is not None else uploaded
        assert public is not None  # uploaded, or else generated
        key_id = self._ids.new_id()
        added = MachineKeyAdded(
            key_id, public.pem, public.key_type, None if expires_at is None else to_micros(expires_at)
        )

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            now = self._clock.now()
            live = sum(key.live(now) for key in await self._store.machine_keys(user.id))
            rules.check_key_count(policy, live + 1)
            return [next_of_user(user, added)]

        [stored] = await self._write(ctx, user_id, decide)
        content = None if pair is None else material.key_file(key_id, user_id, pair.private_pem)
        return IssuedKey(key_id, user_id, expires_at, content, Details.of_change(stored))

    async def remove_machine_key(self, ctx: CallContext, user_id: str, key_id: str) -> Details:
        """One key of the user, and the access tokens it earned, at once."""
        check.raise_if_any(check.check_id("user_id", user_id) + check.check_id("key_id", key_id))

        async def decide() -> list[NewEvent]:
            user = await self._credential_holder(ctx, user_id)
            if all(key.key_id != key_id for key in await self._store.machine_keys(user.id)):
                raise key_not_found()
            return [next_of_user(user, MachineKeyRemoved(key_id))]

        [stored] = await self._write(ctx, user_id, decide)
        return Details.of_change(stored)
