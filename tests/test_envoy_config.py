"""envoy.yaml as a user runs it elsewhere: `python -m server.runtime.envoy --print-config` gives a
file that Envoy itself accepts."""

import subprocess
import sys
from pathlib import Path

from server.runtime.envoy import envoy_binary

ROOT = Path(__file__).resolve().parent.parent


def test_the_printed_configuration_validates(tmp_path: Path) -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "server.runtime.envoy", "--print-config"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        env={"MS_GRPC_ADDR": "10.0.0.5:50051", "MS_HTTP_ADDR": "10.0.0.5:8081", "MS_CORS_ORIGINS": "https://a.example",
             "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    config = tmp_path / "envoy.yaml"
    config.write_text(printed.stdout)
    assert "port_value: 50051" in printed.stdout
    assert 'exact: "https://a.example"' in printed.stdout
    validated = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr[-2000:]


def test_envoy_lets_an_idle_connection_to_the_http_app_go_before_uvicorn_does() -> None:
    """uvicorn closes a keep-alive connection after timeout_keep_alive idle seconds; Envoy reusing
    one it is closing answered the request with a 503 (seen from the console). Envoy must let it
    go first."""
    import uvicorn
    import yaml

    printed = subprocess.run(
        [sys.executable, "-m", "server.runtime.envoy", "--print-config"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        env={"MS_GRPC_ADDR": "10.0.0.5:50051", "MS_HTTP_ADDR": "10.0.0.5:8081", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    config = yaml.safe_load(printed.stdout)
    [cluster] = [c for c in config["static_resources"]["clusters"] if c["name"] == "http_app"]
    options = cluster["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
    ]
    idle_s = float(options["common_http_protocol_options"]["idle_timeout"].removesuffix("s"))
    assert (
        0 < idle_s < uvicorn.Config(app="server.app:unused").timeout_keep_alive
    )  # the service keeps uvicorn's default


def test_the_oauth_endpoints_go_to_the_http_app_untranscoded() -> None:
    """The token, introspection and revocation (RFC 7009) endpoints and both metadata documents
    (OpenID Connect's and RFC 8414's) reach the HTTP app through Envoy, its transcoder off: they
    are forms and JSON documents, not RPCs."""
    import yaml

    from server.transport.oauth import (
        DISCOVERY_PATH,
        INTROSPECT_PATH,
        METADATA_PATH,
        REVOCATION_PATH,
        TOKEN_PATH,
    )

    printed = subprocess.run(
        [sys.executable, "-m", "server.runtime.envoy", "--print-config"],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=60,
        env={"MS_GRPC_ADDR": "10.0.0.5:50051", "MS_HTTP_ADDR": "10.0.0.5:8081", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    config = yaml.safe_load(printed.stdout)
    [listener] = config["static_resources"]["listeners"]
    [manager] = [f for chain in listener["filter_chains"] for f in chain["filters"]]
    [host] = manager["typed_config"]["route_config"]["virtual_hosts"]
    for path in (TOKEN_PATH, INTROSPECT_PATH, REVOCATION_PATH, DISCOVERY_PATH, METADATA_PATH):
        route = next(
            r
            for r in host["routes"]
            if path.startswith(r["match"].get("prefix", "\0")) or path == r["match"].get("path")
        )
        assert route["route"]["cluster"] == "http_app", path
        transcoder = route["typed_per_filter_config"]["envoy.filters.http.grpc_json_transcoder"]
        assert transcoder["disabled"] is True, path
