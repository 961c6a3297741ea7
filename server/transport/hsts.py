"""HTTP Strict Transport Security (RFC 6797) on the HTTP port's HTTPS answers, as an ASGI middleware.

Once a browser has seen the header over HTTPS, it goes to this host over HTTPS only for max-age,
and refuses to click through a certificate warning (§12.1): a network attacker can no longer
strip TLS off the console or the token endpoint. The header is sent only over a secure
transport (§7.2: never over plain HTTP, where an attacker could forge or strip it anyway), so
the Envoy's private plaintext socket never carries it; Envoy adds its own on its TLS listener
(server/runtime/envoy.py).

No `includeSubDomains` and no `preload` (§6.1.2): the service answers for one host name, and
often on a port of a host that serves other things, or under a domain whose other hosts it does
not know. Pinning every subdomain to HTTPS (for two years, and in browsers' preload lists for
longer) is the decision of whoever owns the domain, made at its edge, not this service's.
"""

from typing import Any

from server.transport.asgi import ASGIApp, Receive, Send

MAX_AGE_S = 63_072_000  # two years: what hstspreload.org asks of a domain; far beyond a release cycle
HEADER = "strict-transport-security"
VALUE = f"max-age={MAX_AGE_S}"


class StrictTransportSecurity:
    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "https":
            await self._app(scope, receive, send)
            return

        async def send_with_hsts(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": [*message.get("headers", []), (HEADER.encode(), VALUE.encode())],
                }
            await send(message)

        await self._app(scope, receive, send_with_hsts)
