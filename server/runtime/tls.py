"""TLS for every port (MS_TLS_CERT_FILE, MS_TLS_KEY_FILE): the files are read and checked once,
at start, so that a certificate that cannot work stops the start with the setting and the reason
instead of failing every handshake later.

The same PEM files serve Envoy's listener (Envoy reads them itself), the gRPC port (grpcio's
ssl_server_credentials) and the HTTP port (an ssl.SSLContext for uvicorn). The service's own
Envoy reaches the servers over private Unix sockets, in plaintext: no port is left without TLS.
"""

import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from server.config import ConfigError

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
    return TlsFiles(
        str(Path(cert_file).resolve()),
        str(Path(key_file).resolve()),
        chain_pem,
        key_pem,
        leaf.not_valid_after_utc,
    )


def _read(setting: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise ConfigError(f"{setting}: cannot read {path}: {error.strerror or error}") from None
