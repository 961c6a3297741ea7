"""MS_READY_FILE: once serving, every bound port as JSON, for tools and tests
(devtools/launcher.py): `{"grpc", "http", "envoy", "metrics", "pid"}` (envoy and metrics: null when
not served)."""

import json
import os
from pathlib import Path


def write_ready_file(path: Path, grpc: int, http: int, envoy: int | None, metrics: int | None) -> None:
    """Written whole, then renamed into place, so that a reader never sees half of it."""
    ready = {"grpc": grpc, "http": http, "envoy": envoy, "metrics": metrics, "pid": os.getpid()}
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(ready) + "\n")
    partial.replace(path)


def remove_ready_file(path: Path) -> None:
    path.unlink(missing_ok=True)
