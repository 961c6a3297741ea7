"""Commands on the signing keys of JWT access tokens (ZITADEL's web keys): the schedule every
process runs (maintain_web_keys) and an IAM_OWNER's requests (create, activate, delete).

Every decision is taken on the keys as the store holds them, read after the aggregate's sequence,
and appended with the next sequence of the one instance-wide aggregate: of two processes (or two
calls) that decide at once, one appends, and the other decides again on what it finds
(domain/signing_keys.py tells the whole schedule)."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from server.actor import SYSTEM
from server.clock import to_micros
from server.domain import validation as check
from server.domain.commands.writes import Who, Writer
from server.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound
from server.domain.signing_keys import (
    ALGORITHMS,
    KeyCipher,
    KeyTimes,
    active_key,
    make_key,
    superseded_at,
)
from server.events.base import WEBKEYS_ID, Event, NewEvent, StoredEvent
from server.events.webkey import WebKeyActivated, WebKeyAdded, WebKeyRemoved
from server.store.contract import WebKeyRecord

# What a decision on the keys appends, given the keys and the time.
DecideOnKeys = Callable[[list[WebKeyRecord], datetime], Awaitable[list[Event]]]


@dataclass(frozen=True)
class SigningKeySettings:
    cipher: KeyCipher
    times: KeyTimes
    algorithm: str  # of the keys the schedule makes


def web_key_not_found() -> NotFound:
    return NotFound("WEB_KEY_NOT_FOUND", "no such web key")


class WebKeyCommands(Writer):
    # Set by the composition root (app.py): without them, no key is made.
    signing_keys: SigningKeySettings | None = None

    def _settings(self) -> SigningKeySettings:
        if self.signing_keys is None:
            raise FailedPrecondition("NO_MASTER_KEY", "signing keys are not set up")
        return self.signing_keys

    async def _on_keys(self, who: Who, decide_on: DecideOnKeys) -> list[StoredEvent]:
        async def decide() -> list[NewEvent]:
            # The sequence before the keys: a decision that commits between the two reads either
            # shows in the keys, or takes this append's sequence.
            sequence = await self._store.sequence_of(WebKeyAdded.AGGREGATE, WEBKEYS_ID)
            events = await decide_on(await self._store.webkeys(), self._clock.now())
            return [NewEvent(WEBKEYS_ID, sequence + 1 + i, "", e) for i, e in enumerate(events)]

        return await self._write(who, WEBKEYS_ID, decide)

    async def _new_key(self, algorithm: str) -> WebKeyAdded:
        settings = self._settings()
        made = await make_key(settings.cipher, self._ids.new_id(), algorithm)
        return WebKeyAdded(made.key_id, made.algorithm, made.public_jwk, made.private_key)

    async def maintain_web_keys(self) -> list[StoredEvent]:
        """The schedule, run by every process now and then: the first key, signing at once, on a
        store that has none; the next key, published publish_wait before the active one's
        rotation is due (or one an IAM_OWNER made and left, chosen for it); the removal of keys
        whose tokens have all expired. What it appended (usually nothing)."""
        settings = self._settings()
        times = settings.times

        async def decide_on(keys: list[WebKeyRecord], now: datetime) -> list[Event]:
            active = active_key(keys, now)
            if active is None:
                # No key signs (a new store): one now. No JWKS served before it could hold the
                # key, so nothing is waited for (verifiers fetch the JWKS on an unknown kid).
                unstarted = [k for k in keys if k.signs_from is None]
                if unstarted:
                    return [WebKeyActivated(unstarted[0].key_id, to_micros(now))]
                added = await self._new_key(settings.algorithm)
                return [added, WebKeyActivated(added.key_id, to_micros(now))]
            assert active.signs_from is not None
            events: list[Event] = []
            due = active.signs_from + times.rotation
            scheduled = [k for k in keys if k.signs_from is not None and k.signs_from > now]
            if not scheduled and due - times.publish_wait <= now:
                waiting = [k for k in keys if k.signs_from is None]
                if waiting:  # an IAM_OWNER's key, published since it was made
                    newest = waiting[-1]
                    start = max(due, newest.created_at + times.publish_wait, now)
                    events.append(WebKeyActivated(newest.key_id, to_micros(start)))
                else:
                    added = await self._new_key(settings.algorithm)
                    events += [
                        added,
                        WebKeyActivated(added.key_id, to_micros(max(due, now + times.publish_wait))),
                    ]
            for key in keys:
                ended = superseded_at(key, keys, now)
                if ended is not None and ended + times.retire_after <= now:
                    events.append(WebKeyRemoved(key.key_id))
            return events

        return await self._on_keys(SYSTEM, decide_on)

    async def create_web_key(self, who: Who, algorithm: str) -> WebKeyRecord:
        """ZITADEL's CreateWebKey: a new key, published at once, signing only once activated."""
        algorithm = algorithm or self._settings().algorithm
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(
                [FieldViolation("key", f"the algorithm must be one of {', '.join(ALGORITHMS)}")]
            )
        made: list[WebKeyAdded] = []

        async def decide_on(keys: list[WebKeyRecord], now: datetime) -> list[Event]:
            made[:] = [await self._new_key(algorithm)]
            return list(made)

        stored = await self._on_keys(who, decide_on)
        added = made[0]
        return WebKeyRecord(added.key_id, added.algorithm, added.public_jwk, "", stored[0].created_at, None)

    async def activate_web_key(self, who: Who, key_id: str) -> datetime:
        """ZITADEL's ActivateWebKey: the key signs from the earliest moment that is safe for
        verifiers that cache the JWKS (publish_wait after it was published; at once if it was
        published that long ago); the active key then signs no more. Returns that moment."""
        check.raise_if_any(check.check_id("id", key_id))
        times = self._settings().times
        moment: list[datetime] = []

        async def decide_on(keys: list[WebKeyRecord], now: datetime) -> list[Event]:
            key = next((k for k in keys if k.key_id == key_id), None)
            if key is None:
                raise web_key_not_found()
            if key.signs_from is not None and key.signs_from <= now:
                # It signs, or it did: a key does not sign again after another took over (its
                # removal is counted from when it stopped).
                if (active := active_key(keys, now)) is not None and active.key_id == key_id:
                    moment[:] = [key.signs_from]
                    return []
                raise FailedPrecondition("WEB_KEY_RETIRED", "the key has signed already and was superseded")
            start = max(now, key.created_at + times.publish_wait)
            moment[:] = [start]
            if key.signs_from == start:
                return []
            return [WebKeyActivated(key_id, to_micros(start))]

        await self._on_keys(who, decide_on)
        return moment[0]

    async def delete_web_key(self, who: Who, key_id: str) -> datetime:
        """ZITADEL's DeleteWebKey: the key is no longer published. The active key cannot be
        deleted (activate another first); nor can one that takes over later (it would leave a
        gap in the schedule). Returns when it was deleted."""
        check.raise_if_any(check.check_id("id", key_id))

        async def decide_on(keys: list[WebKeyRecord], now: datetime) -> list[Event]:
            key = next((k for k in keys if k.key_id == key_id), None)
            if key is None:
                raise web_key_not_found()
            active = active_key(keys, now)
            if active is not None and active.key_id == key_id:
                raise FailedPrecondition(
                    "WEB_KEY_ACTIVE", "the active key cannot be deleted; activate another first"
                )
            if key.signs_from is not None and key.signs_from > now:
                raise FailedPrecondition(
                    "WEB_KEY_SCHEDULED", "the key is scheduled to sign; it cannot be deleted"
                )
            return [WebKeyRemoved(key_id)]

        [stored] = await self._on_keys(who, decide_on)
        return stored.created_at
