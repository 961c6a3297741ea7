"""uvicorn, embedded in the service's event loop beside the grpc.aio server.

uvicorn's `serve()` installs its own signal handlers, which would fight the service's; so the
socket is bound here (port 0 works, a taken port fails loudly) and uvicorn's startup, main loop
and shutdown are driven directly.
"""

import asyncio
import contextlib
import logging
import os
import socket
import ssl

import uvicorn

from server.limits import MAX_HEADER_BYTES
from server.transport.asgi import ASGIApp
from server.transport.backlog import Backlog
from server.transport.h11_limits import bounded_h11


class AsgiServer:
    """The HTTP app on a TCP address (with TLS when given a context) and, if asked, on a private
    Unix socket in plaintext for the service's own Envoy: one uvicorn server per socket, since
    uvicorn applies its TLS to every socket it serves."""

    def __init__(self, servers: list[tuple[uvicorn.Server, socket.socket, asyncio.Task[None]]]) -> None:
        self._servers = servers
        first = servers[0][1]
        self.port: int = first.getsockname()[1] if first.family != socket.AF_UNIX else 0

    @classmethod
    async def start(
        cls,
        app: ASGIApp,
        addr: str | None,
        unix_path: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        reuse_port: bool = False,
        head_timeout_s: float = 10.0,
        backlog: Backlog | None = None,
    ) -> "AsgiServer":
        """Serves app on addr (host:port; None: none) and, if given, on a Unix socket at
        unix_path (made 0600). reuse_port: the port is shared with other processes (workers),
        each accepting its share; head_timeout_s: how long a request's head may take to arrive;
        backlog: the bound on requests read and not yet begun, shared by every socket's server."""
        listeners: list[tuple[socket.socket, ssl.SSLContext | None]] = []
        if addr is not None:
            listeners.append((_tcp_socket(addr, reuse_port), ssl_context))
        if unix_path is not None:
            private = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with contextlib.suppress(FileNotFoundError):  # a worker's, left by the one it replaces
                os.unlink(unix_path)
            private.bind(unix_path)
            os.chmod(unix_path, 0o600)
            listeners.append((private, None))
        # uvicorn logs access whenever "uvicorn.access" has handlers, root's included (pytest's
        # too). Its lines carry the request path, and on the JSON API's paths a caller may put
        # anything there, a secret where an id belongs: off for good. The service's own access
        # log writes one line per call, without the path's values.
        logging.getLogger("uvicorn.access").disabled = True
        servers = []
        try:
            for listener, context in listeners:
                server = _uvicorn(app, head_timeout_s, backlog)
                server.config.ssl = context
                await server.startup(sockets=[listener])
                servers.append((server, listener, asyncio.create_task(server.main_loop())))
        except BaseException:
            for listener, _ in listeners:
                listener.close()
            raise
        return cls(servers)

    def connection_sockets(self) -> list[socket.socket]:
        """The sockets of the open connections, for inspection."""
        return [
            c.transport.get_extra_info("socket")
            for server, _, _ in self._servers
            for c in server.server_state.connections
        ]

    async def stop(self, grace: float) -> None:
        """Closes the listening sockets and idle connections at once; requests in progress get
        grace seconds to finish (uvicorn waits for none at all when given 0: a hundredth it is)."""
        await asyncio.gather(
            *(_stop(server, listener, task, grace) for server, listener, task in self._servers)
        )


def _tcp_socket(addr: str, reuse_port: bool) -> socket.socket:
    host, _, port = addr.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    # proto must say TCP: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on accepted
    # sockets whose proto is IPPROTO_TCP. With proto 0, each response on a kept-alive
    # connection waited about 40 ms for the client's delayed ACK (measured: 22 req/s on one
    # connection, 44 ms each).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host.strip("[]"), int(port)))
    except OSError:
        sock.close()
        raise
    return sock


def _uvicorn(app: ASGIApp, head_timeout_s: float, backlog: Backlog | None) -> uvicorn.Server:
    # proxy_headers=False: uvicorn by default rewrites the ASGI client address from
    # X-Forwarded-For for any peer on 127.0.0.1 (forwarded_allow_ips), so that every local
    # process could name its own source. Whom to believe is decided in one place, with the
    # service's own settings: server/transport/forwarded.py.
    config = uvicorn.Config(
        app,
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
        http=bounded_h11(head_timeout_s, backlog),
        ws="none",  # no WebSockets are served: an upgrade is a plain request
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    return server


async def _stop(
    server: uvicorn.Server, listener: socket.socket, task: asyncio.Task[None], grace: float
) -> None:
    server.should_exit = True
    # uvicorn types it int, and passes it to asyncio.wait_for, which takes any number.
    server.config.timeout_graceful_shutdown = max(grace, 0.01)  # type: ignore[assignment]
    await task
    await server.shutdown(sockets=[listener])
    listener.close()
