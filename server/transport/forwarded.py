"""Who the client of an HTTP request is, when proxies stand between: for the limits on failed
authentications, which count per source address.

X-Forwarded-For is believed only as far as trusted proxies wrote it. Each proxy appends the address
it saw, so the list is read from the right: past the addresses of trusted proxies, the first other
one is the client (anything further left its own sender could have written). A request whose peer
is not a trusted proxy is its peer, whatever headers it sends.

Trusted are the proxies named in MS_TRUSTED_PROXIES, and the service's own Envoy, which reaches
the HTTP app over a Unix socket in a directory only the service's user may enter: trusting it
does not mean trusting every process that can connect to a loopback port.
"""

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDR blocks; raises ValueError for one that is neither."""
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in text.split(",") if part.strip())


class ClientAddress:
    def __init__(self, trusted_proxies: Sequence[Network], proxy_socket: str | None = None) -> None:
        self._trusted_proxies = tuple(trusted_proxies)
        self._proxy_socket = proxy_socket

    def of(self, scope: Mapping[str, Any], headers: Mapping[str, list[str]]) -> str:
        peer = str((scope.get("client") or ("unknown", 0))[0])
        from_own_proxy = self._proxy_socket is not None and scope.get("server") == (self._proxy_socket, None)
        if not from_own_proxy and not self._trusted(peer):
            return peer
        leftmost = peer
        for address in _from_the_right(headers.get("x-forwarded-for", [])):
            if not self._trusted(address):
                return address
            leftmost = address
        return leftmost

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            return False  # not an address at all: no proxy of ours wrote it
        return any(ip in network for network in self._trusted_proxies)


def _from_the_right(values: Sequence[str]) -> Iterator[str]:
    """The addresses of X-Forwarded-For headers, the last first, each found only when it is
    reached: the walk stops at the first untrusted one, so a header of 60,000 commas costs no more
    than one address (split whole, it cost 5 ms a request)."""
    for value in reversed(values):
        end = len(value)
        while True:
            start = value.rfind(",", 0, end)
            yield value[start + 1 : end].strip()
            if start < 0:
                break
            end = start
