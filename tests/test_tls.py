"""TLS on every port (MS_TLS_CERT_FILE, MS_TLS_KEY_FILE), against a real `python -m server` with
its Envoy, with a throwaway CA made at run time: real clients that trust the CA get through on
every port and transport; a plaintext client and one that does not trust the CA fail cleanly; a
certificate that cannot work stops the start with the setting and the reason."""

import asyncio
import base64
import os
import signal
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from machinesecrets.v1 import user_service_pb2 as user_pb
from machinesecrets.v1 import user_service_pb2_grpc

from server.config import ConfigError
from server.runtime.envoy import EnvoySettings, render
from server.runtime.tls import load_tls
from server.transport.oauth import DISCOVERY_PATH, METADATA_PATH, TOKEN_PATH
from tests.api import frame, grpc_web_frames, trailer_map
from tests.processes import ServerProcess, start_with_envoy
from tests.tls_files import Ca, make_ca, server_files


@dataclass
class TlsService:
    process: ServerProcess
    admin: str
    ca: Ca
    stranger: Ca  # a CA the service's certificate does not come from

    def trusting(self, ca: Ca | None = None) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str((ca or self.ca).pem_file))

    def channel(self, port: int, ca: Ca | None = None) -> grpc.aio.Channel:
        return grpc.aio.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials((ca or self.ca).pem))


@pytest.fixture(scope="module")
async def tls_service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsService]:
    folder = tmp_path_factory.mktemp("tls")
    ca, stranger = make_ca(folder), make_ca(folder, "someone else's CA")
    files = server_files(ca, folder)
    process, admin = await start_with_envoy(
        folder, MS_TLS_CERT_FILE=str(files.cert_file), MS_TLS_KEY_FILE=str(files.key_file)
    )
    yield TlsService(process, admin, ca, stranger)
    assert await process.stop() == 0


async def add_machine_user(
    channel: grpc.aio.Channel, admin: str, name: str
) -> user_pb.AddMachineUserResponse:
    stub = user_service_pb2_grpc.UserServiceStub(channel)
    request = user_pb.AddMachineUserRequest(user_name=name, name="Service")
    return await stub.AddMachineUser(request, metadata=(("authorization", f"Bearer {admin}"),), timeout=10)


async def test_clients_that_trust_the_ca_get_through_on_every_port(tls_service: TlsService) -> None:
    process, admin = tls_service.process, tls_service.admin
    auth = {"authorization": f"Bearer {admin}"}
    # gRPC, direct and through Envoy, verifying the certificate.
    for name, port in (("direct", process.grpc_port), ("envoy", process.envoy_port)):
        async with tls_service.channel(port) as channel:
            created = await add_machine_user(channel, admin, f"svc-tls-grpc-{name}")
            assert created.user_id
            secret = await user_service_pb2_grpc.UserServiceStub(channel).AddSecret(
                user_pb.AddSecretRequest(user_id=created.user_id), metadata=tuple(auth.items())
            )
    envoy, web = f"https://127.0.0.1:{process.envoy_port}", f"https://127.0.0.1:{process.http_port}"
    async with httpx.AsyncClient(verify=tls_service.trusting(), http2=True) as http:
        # JSON through Envoy, over HTTP/2 by ALPN.
        answer = await http.post(
            f"{envoy}/users/machine", json={"userName": "svc-tls-json", "name": "S"}, headers=auth
        )
        assert answer.status_code == 200, answer.text
        assert answer.http_version == "HTTP/2"
        # grpc-web, direct (HTTP/1.1: uvicorn offers only that) and through Envoy.
        request = frame(user_pb.GetUserByIDRequest(user_id=created.user_id).SerializeToString())
        for base in (web, envoy):
            answer = await http.post(
                f"{base}/machinesecrets.v1.UserService/GetUserByID",
                content=request,
                headers={**auth, "content-type": "application/grpc-web+proto", "x-grpc-web": "1"},
            )
            messages, trailers = grpc_web_frames(answer.content)
            status = trailer_map(trailers).get("grpc-status") or answer.headers.get("grpc-status")
            assert (answer.status_code, status, len(messages)) == (200, "0", 1), (base, answer.headers)
        # The token endpoint, on both, and the discovery document that names it.
        basic = base64.b64encode(f"{secret.client_id}:{secret.client_secret}".encode()).decode()
        for base in (web, envoy):
            token = await http.post(
                base + TOKEN_PATH,
                data={"grant_type": "client_credentials"},
                headers={"authorization": f"Basic {basic}"},
            )
            assert token.status_code == 200, token.text
            discovery = (await http.get(base + DISCOVERY_PATH)).json()
            assert discovery["issuer"] == base
            assert discovery["token_endpoint"] == base + TOKEN_PATH
            # RFC 8414's document, the same, and RFC 7009 revocation of the token just issued.
            assert (await http.get(base + METADATA_PATH)).json() == discovery
            revoked = await http.post(
                discovery["revocation_endpoint"],
                data={"token": token.json()["access_token"]},
                headers={"authorization": f"Basic {basic}"},
            )
            assert revoked.status_code == 200, revoked.text
        # The operator's endpoints: the probes on the HTTP port, the metrics on their own.
        for path in ("/healthz", "/readyz"):
            assert (await http.get(web + path)).status_code == 200, path
        metrics = await http.get(f"https://127.0.0.1:{process.metrics_port}/metrics")
        assert metrics.status_code == 200
        assert metrics.headers["strict-transport-security"] == "max-age=63072000"


async def test_plaintext_and_untrusting_clients_fail_cleanly(tls_service: TlsService) -> None:
    process, admin = tls_service.process, tls_service.admin
    ports = {
        "gRPC": process.grpc_port,
        "HTTP": process.http_port,
        "Envoy": process.envoy_port,
        "metrics": process.metrics_port,
    }
    for name, port in ports.items():
        # Plaintext: gRPC without TLS, and HTTP/1.1 without TLS.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await add_machine_user(channel, admin, "svc-plain")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, name
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.TransportError):
                await http.get(f"http://127.0.0.1:{port}/healthz")
        # A client that does not trust the CA: its own check fails the handshake.
        async with tls_service.channel(port, tls_service.stranger) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as untrusted:
                await add_machine_user(channel, admin, "svc-untrusted")
            assert untrusted.value.code() == grpc.StatusCode.UNAVAILABLE, name
        async with httpx.AsyncClient(verify=tls_service.trusting(tls_service.stranger)) as http:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await http.get(f"https://127.0.0.1:{port}/healthz")
    # None of it harmed the service, and none of it wrote anything: the names are still free.
    async with tls_service.channel(process.grpc_port) as channel:
        for name in ("svc-plain", "svc-untrusted"):
            assert (await add_machine_user(channel, admin, name)).user_id
    assert process.alive


async def test_every_https_answer_carries_strict_transport_security(tls_service: TlsService) -> None:
    """RFC 6797: on the HTTP port and on Envoy's listener, whatever answers (the service, or Envoy
    itself: an unknown path, a refused query, a stream it resets), and whatever the status."""
    process, admin = tls_service.process, tls_service.admin
    auth = {"authorization": f"Bearer {admin}"}
    grpc_web = {**auth, "content-type": "application/grpc-web+proto", "x-grpc-web": "1"}
    envoy, web = f"https://127.0.0.1:{process.envoy_port}", f"https://127.0.0.1:{process.http_port}"
    get_user = frame(user_pb.GetUserByIDRequest(user_id="1").SerializeToString())
    requests = [
        ("GET", "/healthz", {}, b""),
        ("GET", "/readyz", {}, b""),
        ("GET", "/.well-known/openid-configuration", {}, b""),
        ("GET", "/no/such/path", {}, b""),
        ("GET", "/users/1", auth, b""),  # 404 from the service
        ("GET", "/users/1", {}, b""),  # 401
        ("PUT", "/users/1/secret?userId=2", auth, b"{}"),  # Envoy's 400; the HTTP app's 404
        ("POST", TOKEN_PATH, {"authorization": "Basic eDp5"}, b"grant_type=client_credentials"),
        ("POST", "/machinesecrets.v1.UserService/GetUserByID", grpc_web, get_user),
        ("GET", "/console/", {}, b""),
    ]
    seen = []
    async with httpx.AsyncClient(verify=tls_service.trusting(), http2=True) as http:
        for base in (web, envoy):
            for method, path, headers, body in requests:
                answer = await http.request(method, base + path, headers=headers, content=body)
                seen.append((base, path, answer.status_code))
                hsts = answer.headers.get_list("strict-transport-security")
                assert hsts == ["max-age=63072000"], (base, method, path, answer.status_code, hsts)
    assert {status for _, _, status in seen} >= {200, 400, 401, 404}, seen
    # gRPC through Envoy carries it in the answer's headers (a browser never reads them; a gRPC
    # client ignores them).
    async with tls_service.channel(process.envoy_port) as channel:
        call = user_service_pb2_grpc.UserServiceStub(channel).GetUserByID(
            user_pb.GetUserByIDRequest(user_id="1"), metadata=tuple(auth.items()), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await call
        assert ("strict-transport-security", "max-age=63072000") in tuple(await call.initial_metadata())


def test_plaintext_answers_never_carry_strict_transport_security() -> None:
    """RFC 6797 §7.2: not over a non-secure transport. Envoy's plaintext listener adds no header."""
    settings = EnvoySettings("127.0.0.1:0", ("127.0.0.1:1",), ("127.0.0.1:2",), (), 1024)
    assert "strict-transport-security" not in render(settings)
    with_tls = render(replace(settings, tls=("cert.pem", "key.pem")))
    assert with_tls.count("strict-transport-security") == 1


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Ca:
    return make_ca(tmp_path_factory.mktemp("ca"))


def _broken(kind: str, ca: Ca, folder: Path) -> tuple[str, str]:
    good = server_files(ca, folder, prefix="good")
    match kind:
        case "missing":
            return str(folder / "nowhere.crt"), str(good.key_file)
        case "a-directory":
            return str(folder), str(good.key_file)
        case "not-pem":
            (folder / "junk.crt").write_text("not a certificate\n")
            return str(folder / "junk.crt"), str(good.key_file)
        case "key-not-pem":
            return str(good.cert_file), str(good.cert_file)
        case "mismatched":
            other = server_files(ca, folder, prefix="other")
            return str(good.cert_file), str(other.key_file)
        case "expired":
            old = server_files(
                ca, folder, valid_from=timedelta(days=-30), valid_until=timedelta(days=-1), prefix="old"
            )
            return str(old.cert_file), str(old.key_file)
        case "not-yet-valid":
            new = server_files(
                ca, folder, valid_from=timedelta(days=1), valid_until=timedelta(days=30), prefix="new"
            )
            return str(new.cert_file), str(new.key_file)
        case "cert-alone":
            return str(good.cert_file), ""
        case "key-alone":
            return "", str(good.key_file)
    raise ValueError(kind)


BROKEN = {
    "missing": ("MS_TLS_CERT_FILE", "No such file"),
    "a-directory": ("MS_TLS_CERT_FILE", "Is a directory"),
    "not-pem": ("MS_TLS_CERT_FILE", "no PEM certificate"),
    "key-not-pem": ("MS_TLS_KEY_FILE", "no PEM private key"),
    "mismatched": ("MS_TLS_KEY_FILE", "does not match"),
    "expired": ("MS_TLS_CERT_FILE", "expired on"),
    "not-yet-valid": ("MS_TLS_CERT_FILE", "valid only from"),
    "cert-alone": ("MS_TLS_CERT_FILE", "MS_TLS_KEY_FILE is not"),
    "key-alone": ("MS_TLS_KEY_FILE", "MS_TLS_CERT_FILE is not"),
}


@pytest.mark.parametrize("kind", BROKEN)
def test_a_certificate_that_cannot_work_is_refused_with_its_reason(kind: str, ca: Ca, tmp_path: Path) -> None:
    setting, reason = BROKEN[kind]
    cert_file, key_file = _broken(kind, ca, tmp_path)
    with pytest.raises(ConfigError) as refused:
        load_tls(cert_file, key_file)
    assert str(refused.value).startswith(setting), str(refused.value)
    assert reason in str(refused.value)


def test_the_start_stops_on_an_expired_certificate(ca: Ca, tmp_path: Path) -> None:
    cert_file, key_file = _broken("expired", ca, tmp_path)
    env = {
        "MS_DATABASE_URL": f"sqlite:///{tmp_path / 'ms.db'}",
        "MS_ADMIN_PAT_FILE": str(tmp_path / "admin.pat"),
        "MS_TLS_CERT_FILE": cert_file,
        "MS_TLS_KEY_FILE": key_file,
        "PATH": "/usr/bin:/bin",
    }
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-m", "server"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("machine-secrets: MS_TLS_CERT_FILE: the certificate in"), done.stderr
    assert "expired on" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "admin.pat").exists()  # nothing started


def served_certificate(port: int, ca: Ca) -> bytes:
    """The certificate a new TLS connection to the port is given (DER), verified against ca."""
    context = ssl.create_default_context(cafile=str(ca.pem_file))
    context.set_alpn_protocols(["h2", "http/1.1"])  # the gRPC port speaks h2 only
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def connection_certificate(answer: httpx.Response) -> bytes:
    """The certificate of the connection an answer came on."""
    ssl_object = answer.extensions["network_stream"].get_extra_info("ssl_object")
    return bytes(ssl_object.getpeercert(binary_form=True))


async def test_sighup_serves_a_renewed_certificate_and_keeps_open_connections(tmp_path: Path) -> None:
    """A renewal in place (new files renamed over the old, as certbot and Kubernetes do), then
    SIGHUP: new connections on every port get the new certificate, connections open before go
    on with theirs; a renewal that cannot work is refused with its reason, and the last good one
    still serves."""
    ca = make_ca(tmp_path)
    first = server_files(ca, tmp_path)
    process, admin = await start_with_envoy(
        tmp_path, MS_TLS_CERT_FILE=str(first.cert_file), MS_TLS_KEY_FILE=str(first.key_file)
    )
    ports = {
        "grpc": process.grpc_port,
        "http": process.http_port,
        "envoy": process.envoy_port,
        "metrics": process.metrics_port,
    }
    trusting = ssl.create_default_context(cafile=str(ca.pem_file))
    try:
        for port in ports.values():
            assert await asyncio.to_thread(served_certificate, port, ca) == der(first.cert)
        async with (
            httpx.AsyncClient(verify=trusting) as http,
            grpc.aio.secure_channel(
                f"127.0.0.1:{process.grpc_port}", grpc.ssl_channel_credentials(ca.pem)
            ) as channel,
        ):
            before = {
                name: await http.get(f"https://127.0.0.1:{ports[name]}{DISCOVERY_PATH}")
                for name in ("http", "envoy")
            }
            await add_machine_user(channel, admin, "svc-before-renewal")

            renewed = server_files(ca, tmp_path, prefix="renewed")
            os.replace(renewed.cert_file, first.cert_file)
            os.replace(renewed.key_file, first.key_file)
            os.kill(process.pid, signal.SIGHUP)
            await process.wait_for_log("TLS certificate reloaded")
            for port in ports.values():
                async with asyncio.timeout(10):  # Envoy takes it within moments
                    while await asyncio.to_thread(served_certificate, port, ca) != der(renewed.cert):  # noqa: ASYNC110
                        await asyncio.sleep(0.1)

            # The connections opened before: still open, with the certificate they began with.
            for name, answer in before.items():
                again = await http.get(f"https://127.0.0.1:{ports[name]}{DISCOVERY_PATH}")
                assert again.status_code == 200
                assert connection_certificate(again) == connection_certificate(answer) == der(first.cert), (
                    name
                )
            await add_machine_user(channel, admin, "svc-after-renewal")

        # A key that does not match the certificate: refused, said in the log, the renewed one serves.
        stranger = server_files(ca, tmp_path, prefix="stranger")
        os.replace(stranger.key_file, first.key_file)
        os.kill(process.pid, signal.SIGHUP)
        await process.wait_for_log("TLS certificate not reloaded, the one before still serves")
        assert any("does not match the certificate" in line for line in process.log)
        for port in ports.values():
            assert await asyncio.to_thread(served_certificate, port, ca) == der(renewed.cert)
    finally:
        assert await process.stop() == 0
