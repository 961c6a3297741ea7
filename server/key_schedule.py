"""The schedule of the signing keys, run by every process: at start (the first key, on a new
store), then every refresh interval (the next key published before a rotation is due, retired
keys removed). domain/signing_keys.py says what it decides, and why several processes that run it
at once agree: one of them appends, the others find nothing left to do."""

import asyncio
import logging

from server.config import ConfigError
from server.domain.commands import Commands
from server.domain.errors import DomainError
from server.domain.signing_keys import KeyRing, MasterKeyMismatch
from server.events.webkey import WebKeyActivated, WebKeyAdded, WebKeyRemoved
from server.store.codecs import from_micros
from server.store.contract import StoreError

log = logging.getLogger("machinesecrets")


class KeySchedule:
    def __init__(self, commands: Commands, keyring: KeyRing) -> None:
        self._commands = commands
        self._keyring = keyring
        self._task: asyncio.Task[None] | None = None

    async def start_up(self) -> None:
        """At start: the schedule once (the first key, on a new store), then every key read and
        decrypted, strictly: a key made under another master key stops the start (ConfigError)."""
        await self.run_once()
        try:
            await self._keyring.load(strict=True)
        except MasterKeyMismatch as mismatch:
            raise ConfigError(
                f"MS_MASTERKEY_FILE: it does not decrypt the store's signing key {mismatch}: not the"
                " master key the keys were made under"
            ) from None

    async def run_once(self) -> None:
        for stored in await self._commands.maintain_web_keys():
            match stored.event:
                case WebKeyAdded(key_id=key_id, algorithm=algorithm):
                    log.info("signing key %s (%s) made and published", key_id, algorithm)
                case WebKeyActivated(key_id=key_id, signs_from=signs_from):
                    log.info("signing key %s signs from %s", key_id, from_micros(signs_from).isoformat())
                case WebKeyRemoved(key_id=key_id):
                    log.info("signing key %s retired: every token it signed has expired", key_id)
        await self._keyring.load()

    def start(self) -> None:
        self._task = asyncio.create_task(self._every_interval())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._keyring.times.refresh.total_seconds())
            try:
                await self.run_once()
            except (StoreError, DomainError) as error:  # the store is away, or a race lost 8 times
                log.warning("the signing keys' schedule failed; it runs again: %s", error)
            except Exception:  # anything else must not end the schedule: keys would never rotate
                log.exception("the signing keys' schedule failed unexpectedly; it runs again")
