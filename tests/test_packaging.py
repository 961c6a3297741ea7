"""`pip install .` gives a working `machine-secrets` command: the wheel is built from the sources,
installed into a fresh environment (with the project's dependencies beside it, and without the
checkout's editable install), and run from outside the checkout, with its Envoy."""

import json
import os
import shutil
import signal
import site
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from server.config import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh environment with the wheel installed."""
    folder = tmp_path_factory.mktemp("package")
    source = folder / "source"  # a copy: building writes build/ and *.egg-info where it runs
    for name in ("pyproject.toml", "envoy.yaml"):
        source.mkdir(exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    for name in ("server", "generated"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", folder, source], check=True)
    [wheel] = folder.glob("machine_secrets-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    data = "machine_secrets-0.1.0.data/data/share/machine-secrets/"
    for expected in (
        "server/__main__.py",
        "server/console/index.html",
        "server/console/console.js",
        "machinesecrets/v1/user_service_pb2.py",
        "zitadel/management/v1/management_pb2.py",
        data + "envoy.yaml",
        data + "machinesecrets.binpb",
        data + "openapi.json",
    ):
        assert expected in names, expected
    entry_points = zipfile.ZipFile(wheel).read("machine_secrets-0.1.0.dist-info/entry_points.txt").decode()
    assert "machine-secrets = server.__main__:main" in entry_points

    venv = folder / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    # The dependencies, from the project's environment: a folder a .pth names is not a site
    # folder, so the checkout's editable install (a .pth there) stays out.
    [site_packages] = (venv / "lib").glob("python*/site-packages")
    (site_packages / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    subprocess.run([*pip, "--python", venv / "bin" / "python", "install", "--no-deps", wheel], check=True)
    return venv / "bin"


def test_the_command_lists_every_setting(installed: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [installed / "machine-secrets", "--help"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.startswith("usage: machine-secrets")
    for setting in SETTINGS:
        assert setting.flag in done.stdout, setting.flag
        assert setting.env in done.stdout, setting.env
    imported = subprocess.run(
        [installed / "python", "-c", "import server; print(server.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.startswith(str(installed.parent)), (
        imported.stdout
    )  # the wheel's, not the checkout's


def test_the_installed_command_serves_with_its_envoy(installed: Path, tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {
        "PATH": os.environ["PATH"],
        "MS_DATABASE_URL": f"sqlite:///{tmp_path / 'ms.db'}",
        "MS_ADMIN_PAT_FILE": str(tmp_path / "admin.pat"),
        "MS_GRPC_ADDR": "127.0.0.1:0",
        "MS_HTTP_ADDR": "127.0.0.1:0",
        "MS_ENVOY_ADDR": "127.0.0.1:0",
        "MS_METRICS_ADDR": "127.0.0.1:0",
        "MS_READY_FILE": str(ready),
    }
    with (tmp_path / "log").open("wb") as log:
        process = subprocess.Popen(
            [installed / "machine-secrets"], cwd=tmp_path, env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None, (tmp_path / "log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "log").read_text()
            time.sleep(0.05)
        ports = json.loads(ready.read_text())
        assert ports["envoy"], (tmp_path / "log").read_text()  # Envoy found its template and descriptors
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['envoy']}/openapi.json", timeout=10) as answer:
            assert json.loads(answer.read())["openapi"].startswith("3.")
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/readyz", timeout=10) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(
            f"http://127.0.0.1:{ports['envoy']}/console/console.js", timeout=10
        ) as answer:
            assert answer.read() == (ROOT / "server" / "console" / "console.js").read_bytes()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0


def test_the_wheel_holds_every_package_of_the_checkout(installed: Path) -> None:
    """Each folder of server/ and generated/ with an __init__.py is a package of the wheel: a new
    one is found, not listed by hand (server.tools once was left out)."""
    [site_packages] = (installed.parent / "lib").glob("python*/site-packages")
    roots = {ROOT: ["server"], ROOT / "generated": ["machinesecrets", "zitadel"]}
    packages = [
        init.parent.relative_to(root)
        for root, names in roots.items()
        for name in names
        for init in (root / name).rglob("__init__.py")
    ]
    assert len(packages) >= 20
    missing = [str(p) for p in packages if not (site_packages / p / "__init__.py").exists()]
    assert missing == []


def test_the_documented_secret_checker_runs_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    """docs/leaks.md, "Secret format, for scanners": `python -m server.tools.check_secret STRING...`."""
    from server.domain.secret_format import new_secret

    good, bad = new_secret().text, "msk_" + "0" * 61
    done = subprocess.run(
        [installed / "python", "-m", "server.tools.check_secret", good, bad],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    checksum_wrong = "not a secret: the checksum (the last 6 characters) does not match"
    assert done.stdout.splitlines() == ["1: ok", f"2: {checksum_wrong}"]
    assert good not in done.stdout + done.stderr


def test_a_checkout_reads_its_own_files() -> None:
    """server/runtime/resources.py finds envoy.yaml and generated/ in the checkout it runs from (a
    wrong depth would fall back to an installed copy, or to none)."""
    from server.runtime.resources import resource

    for name in ("envoy.yaml", "generated/machinesecrets.binpb", "generated/openapi.json"):
        assert resource(name) == ROOT / name
