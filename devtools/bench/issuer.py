"""A workload's platform, for the federated exchange's rows: an OIDC issuer on loopback (discovery
and a JWKS of one RSA key, served by a thread of the bench's own, `max-age=3600`), and the
Kubernetes-shaped tokens it signs. The service trusts it through MS_FEDERATION_ALLOWED_ORIGINS."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

SUBJECT = "system:serviceaccount:bench:deployer"
AUDIENCE = "https://machine-secrets.bench"


class LabIssuer:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "bench-1"}, private=True)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body: dict[str, Any]
                if self.path == "/.well-known/openid-configuration":
                    body = {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks"}
                elif self.path == "/jwks":
                    body = {"keys": [issuer.key.as_dict(private=False)]}
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("cache-control", "max-age=3600")
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def jwks(self) -> str:
        return json.dumps({"keys": [self.key.as_dict(private=False)]})

    def token(self, issuer: str | None = None) -> str:
        """A projected service-account token, without a jti (Kubernetes' before 1.30): it may be
        exchanged again while valid, 59 minutes, which the rows finish within."""
        now = int(time.time())
        claims = {
            "iss": issuer or self.url,
            "sub": SUBJECT,
            "aud": [AUDIENCE],
            "iat": now,
            "exp": now + 59 * 60,
        }
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
