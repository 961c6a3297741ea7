"""TLS for every port (MS_TLS_CERT_FILE, MS_TLS_KEY_FILE): the files are read and checked at
start, so that a certificate that cannot work stops the start with the setting and the reason
instead of failing every handshake later; and again on SIGHUP (ServingCertificate.reload), when a
renewed certificate is taken by every port for new connections, while the connections open keep
theirs. A renewal that cannot work is refused with its reason, and the old one still serves.

The same PEM files serve Envoy's listener (its own copy, runtime/envoy.py), the gRPC port
(grpcio's dynamic_ssl_server_credentials, which asks for the certificate at each handshake) and
the HTTP and metrics ports (an ssl.SSLContext for uvicorn, loaded again in place). The service's
own Envoy reaches the servers over private Unix sockets, in plaintext: no port is left without TLS.
"""

import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from server.config import ConfigError

log = logging.getLogger("machinesecrets")

CERT_SETTING = "MS_TLS_CERT_FILE"
KEY_SETTING = "MS_TLS_KEY_FILE"
ALPN = ("h2", "http/1.1")


@dataclass(frozen=True)
class TlsFiles:
    cert_file: str
    key_file: str
    chain_pem: bytes  # the server's certificate first, then any intermediates
    key_pem: bytes = field(repr=False)
    not_after: datetime

    def server_context(self) -> ssl.SSLContext:
        """For the HTTP port: TLS 1.2 and up, HTTP/1.1 (uvicorn's h11 speaks no h2)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.set_alpn_protocols(["http/1.1"])
        return context


def load_tls(cert_file: str, key_file: str, now: datetime | None = None) -> TlsFiles | None:
    """The checked files, or None when neither setting is given. Raises ConfigError naming the
    setting: one without the other, a file missing or unreadable, not PEM, a key that does not
    match the certificate (or is encrypted), a certificate expired or not yet valid."""
    if not cert_file and not key_file:
        return None
    if not cert_file or not key_file:
        given, missing = (CERT_SETTING, KEY_SETTING) if cert_file else (KEY_SETTING, CERT_SETTING)
        raise ConfigError(f"{given} is set but {missing} is not: TLS needs both")
    chain_pem, key_pem = _read(CERT_SETTING, cert_file), _read(KEY_SETTING, key_file)
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
    except ValueError:
        raise ConfigError(f"{CERT_SETTING}: {cert_file} holds no PEM certificate") from None
    try:
        load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(f"{KEY_SETTING}: {key_file} is encrypted; give the key unencrypted") from None
    except ValueError:
        raise ConfigError(f"{KEY_SETTING}: {key_file} holds no PEM private key") from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_file, key_file)
    except ssl.SSLError as error:
        raise ConfigError(
            f"{KEY_SETTING}: the key in {key_file} does not match the certificate in {cert_file}"
            f" ({error.reason or error})"
        ) from None
    now = now or datetime.now(UTC)
    leaf = chain[0]
    if leaf.not_valid_after_utc <= now:
        raise ConfigError(
            f"{CERT_SETTING}: the certificate in {cert_file} expired on"
            f" {leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
        )
    if leaf.not_valid_before_utc > now:
        raise ConfigError(
            f"{CERT_SETTING}: the certificate in {cert_file} is valid only from"
            f" {leaf.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
        )
    # Absolute, but links kept: a renewal that swaps a link (as Kubernetes mounts a secret) is
    # read at the next reload.
    return TlsFiles(
        os.path.abspath(cert_file),
        os.path.abspath(key_file),
        chain_pem,
        key_pem,
        leaf.not_valid_after_utc,
    )


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path}: {error.strerror or error}") from None


class ServingCertificate:
    """The certificate every TLS port of this process serves, and its reload."""

    def __init__(self, files: TlsFiles) -> None:
        self.files = files
        self._version = 0  # reloads so far
        self._contexts: list[ssl.SSLContext] = []
        self._watchers: list[Callable[[TlsFiles], None]] = []

    def http_context(self) -> ssl.SSLContext:
        """An SSLContext for uvicorn, loaded again at each reload."""
        context = self.files.server_context()
        self._contexts.append(context)
        return context

    def grpc_credentials(self) -> grpc.ServerCredentials:
        """grpcio asks the fetcher at each handshake; it answers None while nothing changed."""
        given = [self._version]

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            if given[0] == self._version:
                return None
            given[0] = self._version
            return grpc.ssl_server_certificate_configuration([(self.files.key_pem, self.files.chain_pem)])

        initial = grpc.ssl_server_certificate_configuration([(self.files.key_pem, self.files.chain_pem)])
        # grpcio's stubs type the fetcher's answer without None, which its docs (and its code)
        # take as "no change".
        return grpc.dynamic_ssl_server_credentials(initial, fetch)  # type: ignore[arg-type]

    def on_reload(self, watcher: Callable[[TlsFiles], None]) -> None:
        self._watchers.append(watcher)

    def reload(self, now: datetime | None = None) -> TlsFiles:
        """Reads and checks the files again, and serves them; ConfigError (with the reason) when
        they cannot work, and the certificate before still serves."""
        files = load_tls(self.files.cert_file, self.files.key_file, now)
        assert files is not None  # both settings were given at start
        # The checked bytes, not the files again: they may change between two reads.
        with tempfile.TemporaryDirectory(prefix="machinesecrets-tls-") as folder:  # 0700
            chain, key = Path(folder, "chain.pem"), Path(folder, "key.pem")
            chain.write_bytes(files.chain_pem)
            key.touch(0o600)
            key.write_bytes(files.key_pem)
            for context in self._contexts:
                context.load_cert_chain(chain, key)
        self.files = files
        self._version += 1
        for watcher in self._watchers:
            watcher(files)
        return files


def reload_on_signal(certificate: ServingCertificate | None) -> None:
    """SIGHUP's work: the certificate read again, and one log line either way."""
    if certificate is None:
        log.info("SIGHUP: TLS is off, nothing to reload")
        return
    try:
        files = certificate.reload()
    except ConfigError as error:
        log.error("TLS certificate not reloaded, the one before still serves: %s", error)
        return
    log.info(
        "TLS certificate reloaded from %s: valid until %s",
        files.cert_file,
        f"{files.not_after:%Y-%m-%d %H:%M} UTC",
    )
