"""`python -m server`: runs the service until SIGTERM or Ctrl-C, then stops gracefully."""

import os

# The service forks only to exec Envoy; grpc's fork handlers would just log that they were
# skipped ("Other threads are currently calling into gRPC"). Read when grpc is imported.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import asyncio
import logging
import signal
import sys

from server import app
from server.config import Config, ConfigError, load

log = logging.getLogger("machinesecrets")


async def serve(config: Config) -> None:
    service = await app.start(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("stopping")
    await service.stop()


def main() -> int:
    try:
        config = load(sys.argv[1:], os.environ)
    except ConfigError as error:
        print(f"machine-secrets: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(serve(config))
    except ConfigError as error:  # a setting that proved wrong only at start (e.g. a refused path)
        print(f"machine-secrets: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
