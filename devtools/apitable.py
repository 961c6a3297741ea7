"""Writes the API reference's table from the descriptor set: each RPC, its HTTP bindings, the
permission its `machinesecrets.v1.auth_option` declares, and the first sentence of its comment in
the .proto. The table sits between two markers in docs/api.md; `make proto` rewrites it."""

import sys
from pathlib import Path

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from server.transport.methods import permission_of

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "generated" / "machinesecrets.binpb"
PAGE = ROOT / "docs" / "api.md"
BEGIN = "<!-- api-table: made by `make proto` from the .proto files; do not edit -->"
END = "<!-- /api-table -->"
PACKAGES = (
    "machinesecrets.v1",
    "zitadel.management.v1",
    "zitadel.user.v2",
    "zitadel.org.v2",
    "zitadel.internal_permission.v2",
    "zitadel.auth.v1",
)
# FileDescriptorProto field numbers, for the comments in source_code_info.
SERVICE_FIELD, METHOD_FIELD = 6, 2


def first_sentence(comment: str) -> str:
    text = " ".join(comment.split())
    head, dot, _ = text.partition(". ")
    return head + "." if dot else text


def table(files: descriptor_pb2.FileDescriptorSet) -> str:
    rows = ["| RPC | HTTP binding | needs | what it does |", "| --- | --- | --- | --- |"]
    for file in files.file:
        if file.package not in PACKAGES:
            continue
        comments = {
            tuple(location.path): location.leading_comments for location in file.source_code_info.location
        }
        for s, service in enumerate(file.service):
            for m, method in enumerate(service.method):
                rule = method.options.Extensions[annotations_pb2.http]
                bindings = []
                for binding in (
                    [rule, *rule.additional_bindings]
                    if method.options.HasExtension(annotations_pb2.http)
                    else []
                ):
                    verb = binding.WhichOneof("pattern")
                    bindings.append(f"`{verb.upper()} {getattr(binding, verb)}`")
                summary = first_sentence(comments.get((SERVICE_FIELD, s, METHOD_FIELD, m), ""))
                permission = permission_of(method.options)
                name = (
                    service.name
                    if file.package.startswith("machinesecrets")
                    else f"{file.package}.{service.name}"
                )
                paths = ", ".join(bindings) or "(gRPC and Connect only)"
                rows.append(f"| `{name}.{method.name}` | {paths} | `{permission}` | {summary} |")
    return "\n".join(rows)


def page_with_table(page: str, files: descriptor_pb2.FileDescriptorSet) -> str:
    head, begin, rest = page.partition(BEGIN)
    _, end, tail = rest.partition(END)
    if not begin or not end:
        raise SystemExit(f"{PAGE.relative_to(ROOT)} lacks the markers {BEGIN} ... {END}")
    return f"{head}{BEGIN}\n{table(files)}\n{END}{tail}"


def generate() -> str:
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    return page_with_table(PAGE.read_text(), files)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else PAGE
    target.write_text(generate())
