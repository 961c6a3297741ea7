"""deploy/kubernetes.yaml, read with a YAML parser: the probes are on the service's own paths and
ports, every MS_* variable is a real setting with a valid value, and no secret is in the file."""

from pathlib import Path
from typing import Any

import yaml

from server.config import SETTINGS, load
from server.transport.health import HEALTH_PATH, READY_PATH

MANIFEST = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes.yaml"


def documents() -> dict[str, Any]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(MANIFEST.read_text())}


def container() -> dict[str, Any]:
    [only] = documents()["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def test_the_probes_are_on_the_http_port_and_the_service_paths() -> None:
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    env = {e["name"]: e.get("value") for e in container()["env"]}
    config = load([], {k: v for k, v in env.items() if v is not None})
    assert ports["http"] == int(config.http_addr.rpartition(":")[2])
    assert ports["grpc"] == int(config.grpc_addr.rpartition(":")[2])
    assert config.envoy_addr is not None
    assert ports["envoy"] == int(config.envoy_addr.rpartition(":")[2])
    assert config.metrics_addr is not None
    assert ports["metrics"] == int(config.metrics_addr.rpartition(":")[2])
    liveness, readiness = container()["livenessProbe"]["httpGet"], container()["readinessProbe"]["httpGet"]
    assert (liveness["path"], liveness["port"]) == (HEALTH_PATH, "http")
    assert (readiness["path"], readiness["port"]) == (READY_PATH, "http")
    # The port serves TLS when the certificate is set: the probes must speak it.
    assert config.tls_cert_file
    assert liveness["scheme"] == readiness["scheme"] == "HTTPS"


def test_every_variable_is_a_setting_and_the_grace_fits_the_pod() -> None:
    names = {e["name"] for e in container()["env"]}
    assert names <= {s.env for s in SETTINGS}, names - {s.env for s in SETTINGS}
    env = {e["name"]: e["value"] for e in container()["env"] if "value" in e}
    grace = load([], env).shutdown_grace.total_seconds()
    pod = documents()["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] > grace


def test_the_service_targets_ports_the_pod_has() -> None:
    ports = {p["name"] for p in container()["ports"]}
    service = documents()["Service"]
    assert service["spec"]["selector"] == documents()["Deployment"]["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_no_secret_is_in_the_manifest() -> None:
    text = MANIFEST.read_text()
    assert "-----BEGIN" not in text
    for variable in container()["env"]:
        if variable["name"] == "MS_DATABASE_URL":  # may carry a password: from a Secret only
            assert set(variable) == {"name", "valueFrom"}
            assert "secretKeyRef" in variable["valueFrom"]
    for document in documents().values():
        assert document["kind"] != "Secret"
    tls = next(
        v for v in documents()["Deployment"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "tls"
    )
    assert set(tls["secret"]) == {"secretName", "defaultMode"}  # a reference, nothing more
