"""The service's temporary folders (Envoy's configuration and log, the private socket's folder):
named after the process that made them, so that a later start can remove those of a process that
died without cleaning up (SIGKILL, a crash), instead of leaving them in /tmp for good."""

import os
import re
import shutil
import tempfile
from pathlib import Path

PREFIX = "machinesecrets-"
_OURS = re.compile(rf"{PREFIX}(?:[a-z]+-)?pid(\d+)-")


def private_temp_dir(kind: str = "") -> tempfile.TemporaryDirectory[str]:
    """A new folder only this user may enter (0700, as mkdtemp makes it), named after this process."""
    return tempfile.TemporaryDirectory(prefix=f"{PREFIX}{kind + '-' if kind else ''}pid{os.getpid()}-")


def sweep_orphans() -> None:
    """Removes the folders of this user's service processes that are gone."""
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*"):
        found = _OURS.match(folder.name)
        try:
            if found is None or folder.lstat().st_uid != os.geteuid() or _alive(int(found[1])):
                continue
        except OSError:
            continue  # gone meanwhile
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process now has that number
    return True
