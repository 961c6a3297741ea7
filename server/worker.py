"""One worker of several (MS_WORKERS): started by server/supervisor.py, never by hand, as

    python -m server.worker --grpc-socket PATH --http-socket PATH [--metrics-socket PATH]
                            [--envoy-addr-public HOST:PORT] [settings...]

It serves like `python -m server` on the shared ports, and reaches the supervisor's Envoy over its
own two sockets.
"""

import argparse
import asyncio
import os
import sys

from server import app, logs
from server.__main__ import serve
from server.config import ConfigError, load
from server.store.contract import StoreUnavailable


def main() -> int:
    parser = argparse.ArgumentParser(prog="server.worker", add_help=False)
    parser.add_argument("--grpc-socket", required=True)
    parser.add_argument("--http-socket", required=True)
    parser.add_argument("--metrics-socket", default=None)
    parser.add_argument("--envoy-addr-public", default=None)
    own, settings = parser.parse_known_args()
    try:
        config = load(settings, os.environ)
        logs.configure(config.log_level, config.log_format)
        asyncio.run(
            serve(
                config,
                app.Placement(own.grpc_socket, own.http_socket, own.envoy_addr_public, own.metrics_socket),
            )
        )
    except ConfigError as error:
        print(f"machine-secrets worker: {error}", file=sys.stderr)
        return 2
    except StoreUnavailable as error:
        print(f"machine-secrets worker: MS_DATABASE_URL: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
