"""The admin's first token, written where only the service's own user can read it.

The path comes from a setting (MS_ADMIN_PAT_FILE), and its directory may be shared: another local
user could have prepared it, with a symbolic link to a file of theirs (the token would be written
where they read it) or to a file of ours (it would be overwritten), or with a file or directory they
own. So the location is checked before the instance is set up (a refused path must not cost the
admin's only token), and the file is written through no link, into a directory that the service's
user owns and no one else may write to, under a new name that is then renamed into place.
"""

import os
import secrets
import stat
from pathlib import Path

from server.config import ConfigError

SETTING = "MS_ADMIN_PAT_FILE"


def _refuse(path: Path, reason: str, setting: str, what: str) -> ConfigError:
    return ConfigError(f"{setting} {path}: {reason}; refusing to write {what} there")


def check_private_location(path: Path, setting: str = SETTING, what: str = "the admin's token") -> None:
    """Creates the directory (0700) if it is missing; raises ConfigError, naming the setting and the
    reason, when the directory or the file is a link, belongs to another user, or the directory is
    writable by others."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for place in (directory, path):
        try:
            info = os.lstat(place)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise _refuse(path, f"{place} is a symbolic link", setting, what)
        if info.st_uid != os.geteuid():
            raise _refuse(path, f"{place} belongs to another user (uid {info.st_uid})", setting, what)
    directory_mode = os.lstat(directory).st_mode
    if directory_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise _refuse(path, f"{directory} is writable by other users", setting, what)
    if path.exists() and not path.is_file():
        raise _refuse(path, "it is not a regular file", setting, what)


def write_private_file(path: Path, text: str) -> None:
    """Writes text readable by the owner alone (0600), replacing the file if it existed."""
    check_private_location(path)
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        # rename() replaces the directory entry itself: it never follows a link put there since.
        os.replace(fresh, path)
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
