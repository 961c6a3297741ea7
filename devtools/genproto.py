"""Generates the Python code and the descriptor set for proto/ into a target folder.

Only our own protos are compiled: compiling google/* too would shadow the installed
googleapis-common-protos package. The include root for google/api and google/rpc is the
site-packages folder that package installs into.
"""

import sys
from pathlib import Path

import google.api.annotations_pb2
import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
# google/rpc/status.proto and error_details.proto are not imported by our protos, but Envoy's
# transcoder must know every type that can appear in error details, or it answers errors with an
# empty body: they are added to the descriptor set explicitly.
ERROR_DETAIL_PROTOS = ["google/rpc/status.proto", "google/rpc/error_details.proto"]
DESCRIPTOR_SET = "machinesecrets.binpb"


def generate(out: Path) -> None:
    """Writes the generated code for every proto under proto/ into out."""
    googleapis_root = Path(google.api.annotations_pb2.__file__).parent.parent.parent
    well_known_root = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    includes = [f"-I{PROTO_ROOT}", f"-I{googleapis_root}", f"-I{well_known_root}"]
    # mypy-protobuf's plugins live beside this interpreter, which need not be on PATH.
    bindir = Path(sys.executable).parent
    plugins = [
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
    ]
    out.mkdir(parents=True, exist_ok=True)
    _protoc(
        [
            *includes,
            *plugins,
            f"--python_out={out}",
            f"--mypy_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_grpc_out={out}",
            *protos,
        ]
    )
    _protoc(
        [
            *includes,
            "--include_imports",
            "--include_source_info",
            f"--descriptor_set_out={out / DESCRIPTOR_SET}",
            *protos,
            *ERROR_DETAIL_PROTOS,
        ]
    )
    # protoc does not write package markers; the generated modules import each other absolutely.
    for module in out.rglob("*_pb2.py"):
        for package in module.relative_to(out).parents[:-1]:  # every folder down to the module's
            (out / package / "__init__.py").touch()


def _protoc(args: list[str]) -> None:
    code = protoc.main(["grpc_tools.protoc", *args])
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    generate(ROOT / sys.argv[1] if len(sys.argv) > 1 else ROOT / "generated")
