"""`machine-secrets audit verify` and `machine-secrets audit export --since POSITION`: the audit
chain checked, or written out for an independent verifier, on the store the service's settings
name (MS_DATABASE_URL and the other flags and variables of `python -m server`).

verify reads every event in position order and checks both chains (server/audit/chain.py), then
the head that audit_head keeps and that no event lies outside the chain. It prints the first link
that does not hold (position, aggregate, expected and found) and exits 1, or the number of events
and the head, and exits 0.

export writes the events after POSITION (0: all), one JSON object a line, each with its hashes and
the two it was chained after (SECURITY.md, "Verifying the audit chain", is their algorithm).

Opening the store is opening it as the service does: a store of an older schema is migrated first.
"""

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TextIO, TypeVar

from server.app import open_store
from server.audit.chain import CANONICAL_FIELDS, Break, Verifier
from server.config import Config, ConfigError, load
from server.store.contract import Store, StoreUnavailable

BATCH = 1000
T = TypeVar("T")
EXIT_BROKEN = 1
EXIT_USAGE = 2


async def verify(store: Store, out: TextIO) -> Break | None:
    """Checks the whole chain; writes one line saying what it found; answers the first break."""
    verifier = Verifier()
    after = 0
    while verifier.broken is None and (rows := await store.chain_rows(after, BATCH)):
        for row in rows:
            verifier.add(row)
        after = int(rows[-1]["position"])
    broken = verifier.finish(*await store.audit_head())
    if broken is None and (held := await store.event_count()) != verifier.checked:
        broken = Break(verifier.checked, "", "events in the chain", str(held), str(verifier.checked))
    if broken is not None:
        print(f"audit chain broken: {broken}", file=out)
        return broken
    position, head = await store.audit_head()
    print(f"audit chain verified: {verifier.checked} events, head at position {position}: {head}", file=out)
    return None


async def export(store: Store, since: int, out: TextIO) -> int:
    """Writes the events after position since, one JSON line each; answers how many."""
    previous_head = await _head_at(store, since)
    chains: dict[tuple[str, str], str] = {}
    written, after = 0, since
    while rows := await store.chain_rows(after, BATCH):
        for row in rows:
            aggregate = (str(row["aggregate_type"]), str(row["aggregate_id"]))
            if aggregate not in chains:
                chains[aggregate] = await _chain_before(store, row, since)
            out.write(json.dumps(export_line(row, chains[aggregate], previous_head), sort_keys=True) + "\n")
            chains[aggregate], previous_head = str(row["chain_hash"]), str(row["head_hash"])
            written += 1
        after = int(rows[-1]["position"])
    return written


def export_line(row: Mapping[str, Any], previous_chain: str, previous_head: str) -> dict[str, Any]:
    """An exported event: every field of its canonical form (the payload an object), its position
    and hashes, and the hashes it was chained after."""
    line = {name: row[name] for name in CANONICAL_FIELDS}
    line["payload"] = json.loads(row["payload"])
    return {
        **line,
        "position": int(row["position"]),
        "chain_hash": row["chain_hash"],
        "head_hash": row["head_hash"],
        "previous_chain_hash": previous_chain,
        "previous_head_hash": previous_head,
    }


async def _head_at(store: Store, position: int) -> str:
    if position <= 0:
        return ""
    rows = await store.chain_rows(position - 1, 1)
    return str(rows[0]["head_hash"]) if rows and int(rows[0]["position"]) == position else ""


async def _chain_before(store: Store, row: Mapping[str, Any], since: int) -> str:
    """The chain_hash an aggregate's first exported event was chained after: "" in a whole export
    for its first event; else its event before, which lies before the export."""
    if since <= 0:
        return ""
    return await store.chain_hash_before(
        str(row["aggregate_type"]), str(row["aggregate_id"]), int(row["sequence"])
    )


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None, out: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="machine-secrets audit",
        description="Verify or export the audit chain of the store the service's settings name"
        " (flags and MS_* variables as `machine-secrets` reads them).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("verify", help="check every event's hashes; exit 1 at the first broken link")
    exporting = commands.add_parser("export", help="write the events after a position as JSON lines")
    exporting.add_argument("--since", type=int, default=0, metavar="POSITION", help="0: every event")
    args, settings = parser.parse_known_args(list(argv))
    try:
        config = load(settings, os.environ if environ is None else environ)
    except ConfigError as error:
        print(f"machine-secrets audit: {error}", file=sys.stderr)
        return EXIT_USAGE

    async def run(store: Store) -> Break | int | None:
        if args.command == "verify":
            return await verify(store, out)
        return await export(store, max(0, args.since), out)

    try:
        outcome = asyncio.run(_with_store(config, run))
    except StoreUnavailable as error:
        print(f"machine-secrets audit: MS_DATABASE_URL: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_BROKEN if isinstance(outcome, Break) else 0


async def _with_store(config: Config, run: Callable[[Store], Awaitable[T]]) -> T:
    store = await open_store(config)
    try:
        return await run(store)
    finally:
        await store.close()
