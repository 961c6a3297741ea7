"""`python -m server`: runs the service until SIGTERM or Ctrl-C, then stops gracefully; SIGHUP
reads the TLS certificate again (server/runtime/tls.py).
`python -m server audit ...`: checks or exports the audit chain instead (server/audit/cli.py)."""

import os

# The service forks only to exec Envoy; grpc's fork handlers would just log that they were
# skipped ("Other threads are currently calling into gRPC"). Read when grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import logging
import signal
import sys
from pathlib import Path

from server import app, logs, supervisor
from server.audit import cli as audit_cli
from server.config import Config, ConfigError, load
from server.runtime.ready_file import remove_ready_file, write_ready_file
from server.runtime.tls import reload_on_signal
from server.store.contract import StoreUnavailable

log = logging.getLogger("machinesecrets")


async def serve(config: Config, placement: app.Placement | None = None) -> None:
    service = await app.start(config, placement=placement)
    if config.ready_file:
        write_ready_file(
            Path(config.ready_file),
            service.grpc_port,
            service.http_port,
            service.envoy_port,
            service.metrics_port,
        )
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.add_signal_handler(signal.SIGHUP, reload_on_signal, service.certificate)
    await stopping.wait()
    log.info("stopping")
    await service.stop(config.shutdown_grace.total_seconds())
    if config.ready_file:
        remove_ready_file(Path(config.ready_file))


def main() -> int:
    if sys.argv[1:2] == ["audit"]:  # `machine-secrets audit verify|export`: no service started
        return audit_cli.main(sys.argv[2:])
    try:
        config = load(sys.argv[1:], os.environ)
    except ConfigError as error:
        print(f"machine-secrets: {error}", file=sys.stderr)
        return 2
    logs.configure(config.log_level, config.log_format)
    try:
        if config.workers > 1:
            asyncio.run(supervisor.supervise(config, sys.argv[1:]))
        else:
            asyncio.run(serve(config))
    except ConfigError as error:  # a setting that proved wrong only at start (e.g. a refused path)
        print(f"machine-secrets: {error}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:  # at start: the store's own reason, not a traceback
        print(f"machine-secrets: MS_DATABASE_URL: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
