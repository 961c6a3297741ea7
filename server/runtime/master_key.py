"""The master key (MS_MASTERKEY_FILE): 32 bytes, as ZITADEL's `--masterkey`, under which the
private signing keys are encrypted in the store (domain/signing_keys.py).

It is never in the store, never logged and never in an answer: whoever holds the database alone
holds only ciphertext. On a store that holds no signing key yet (a first start, like the admin's
token) a missing file is made, readable by the service's user alone, and the log names its path;
on a store that holds some, a missing file stops the start, since a new key could decrypt none of
them. Several processes starting together (workers) make it once: the file appears whole, by one
link(), or not at all, and a process that loses the race reads the winner's.
"""

import logging
import os
import secrets
from pathlib import Path

from server.config import ConfigError
from server.runtime.private_files import check_private_location

SETTING = "MS_MASTERKEY_FILE"
MASTER_KEY_BYTES = 32

log = logging.getLogger("machinesecrets")


class MasterKey:
    """The 32 bytes; their repr is masked, so that no log or traceback shows them."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) != MASTER_KEY_BYTES:
            raise ValueError(f"a master key has {MASTER_KEY_BYTES} bytes")
        self._key = key

    def bytes(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "MasterKey('***')"


def load_master_key(path_text: str, may_create: bool) -> MasterKey:
    """The master key in the file; made there first when it is missing and may_create (the store
    holds no signing key). ConfigError, one line naming the setting, for anything else."""
    if not path_text:
        raise ConfigError(f"{SETTING} is empty: the service needs a master key file of 32 bytes")
    path = Path(path_text)
    if not path.exists():
        if not may_create:
            raise ConfigError(
                f"{SETTING} {path} does not exist, and the store holds signing keys encrypted under a"
                " master key: restore that file (a new key could decrypt none of them)"
            )
        if _create(path):
            log.info("first start: made the master key %s; keep it with the database's backups", path)
    try:
        key = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as error:
        raise ConfigError(f"{SETTING} {path}: cannot read it: {error.strerror or error}") from None
    if mode & 0o077:
        # With a copy of the database, whoever reads this file reads every signing key. Said, not
        # refused: a start that stops on a mode would take the service down for a chmod.
        log.warning(
            "%s %s may be read by other users (mode %o): make it 0600 or 0400", SETTING, path, mode & 0o777
        )
    # A key written by hand with an editor ends with a newline; it is not part of the key.
    if len(key) == MASTER_KEY_BYTES + 1 and key.endswith(b"\n"):
        key = key[:-1]
    if len(key) != MASTER_KEY_BYTES:
        raise ConfigError(
            f"{SETTING} {path}: a master key has exactly {MASTER_KEY_BYTES} bytes, this has {len(key)}"
        )
    return MasterKey(key)


def _create(path: Path) -> bool:
    """Writes 32 random bytes to path (0600), unless another process did first: False then."""
    check_private_location(path, SETTING, "the master key")
    fresh = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    fd = os.open(fresh, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(secrets.token_bytes(MASTER_KEY_BYTES))
            file.flush()
            os.fsync(file.fileno())
        # link() never replaces: of processes racing here, one file wins, whole.
        os.link(fresh, path)
        return True
    except FileExistsError:
        return False
    finally:
        fresh.unlink(missing_ok=True)
