"""The sweep of expired credentials: access tokens (of live secrets too) and personal access
tokens whose expiry has passed are refused already, but their rows stayed until their user was
removed, so that the tokens table (and the index every bearer call reads) grew with every token
ever issued. Every MS_SWEEP_INTERVAL each process forgets them, a batch (MS_SWEEP_BATCH) per
transaction, at most MAX_BATCHES_PER_RUN batches a run: no transaction holds a lock for long, and
SQLite's inline writes keep the event loop for a batch at a time.

Several processes on one PostgreSQL sweep independently: deletes of the same rows are idempotent
(the later one finds them gone), so no lock or leader is needed, and a process that dies leaves
nothing half done.

No event is written. A credential's expiry is in the event that made it (`token.access.added`,
`user.pat.added`): that it is dead afterwards is already the history, and forgetting a dead row
changes no decision. An event per swept token would double the appends of the token endpoint, the
busiest writer; and a PAT's event would move its user's sequence and change date, so that a sweep
would look like a change of the user, and race its writers for the next sequence.
"""

import asyncio
import logging

from server.clock import Clock, to_micros
from server.store.contract import Store, StoreError

log = logging.getLogger("machinesecrets")

# With the defaults, 100,000 credentials a run: far above what expires in 10 minutes unless tokens
# are issued at over 160 a second for hours on end; a shorter interval keeps up with more.
MAX_BATCHES_PER_RUN = 100


class Sweeper:
    def __init__(self, store: Store, clock: Clock, interval_s: float, batch: int) -> None:
        self._store = store
        self._clock = clock
        self._interval_s = interval_s
        self._batch = batch
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._every_interval())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def sweep(self) -> int:
        """One run: the credentials expired by now, a batch at a time, until a batch is not full
        or MAX_BATCHES_PER_RUN were done. How many it forgot."""
        swept = 0
        for _ in range(MAX_BATCHES_PER_RUN):
            found = await self._store.sweep_expired_tokens(to_micros(self._clock.now()), self._batch)
            swept += found
            if found < self._batch:
                break
            await asyncio.sleep(0)  # calls waiting on the loop go first
        return swept

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                swept = await self.sweep()
            except StoreError as error:  # the store is away: the next run tries again
                log.warning("the sweep of expired credentials failed: %s", error)
                continue
            if swept:
                log.info("swept %d expired access tokens and personal access tokens", swept)
