"""Time-ordered 63-bit ids, printed in decimal (like `69629023906488334`).

Layout, high bit first: 41 bits of milliseconds since 2020-01-01 (enough until 2089), 10 bits of
node (random per process, so several processes on one database rarely share one; the store's
primary keys refuse a collision rather than overwrite), 12 bits of counter within the millisecond.
"""

import secrets
import threading
import time

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
NODE_BITS = 10
COUNTER_BITS = 12
MAX_ID = (1 << 63) - 1
MAX_ID_DIGITS = len(str(MAX_ID))


class IdGenerator:
    def __init__(self, node: int | None = None) -> None:
        self._node = secrets.randbelow(1 << NODE_BITS) if node is None else node
        self._lock = threading.Lock()
        self._last_ms = 0
        self._counter = 0

    def new_id(self) -> str:
        with self._lock:
            now = max(int(time.time() * 1000) - EPOCH_MS, self._last_ms)
            if now == self._last_ms:
                self._counter = (self._counter + 1) % (1 << COUNTER_BITS)
                if self._counter == 0:  # this millisecond is used up: borrow the next one
                    now += 1
            else:
                self._counter = 0
            self._last_ms = now
            value = (now << (NODE_BITS + COUNTER_BITS)) | (self._node << COUNTER_BITS) | self._counter
        return str(value)


def is_id(text: str) -> bool:
    """Whether text is an id in canonical form: decimal digits, no sign or leading zero, 63 bits."""
    # The length first: int() of a long text is slow, and refused past 4,300 digits.
    return (
        len(text) <= MAX_ID_DIGITS
        and text.isascii()
        and text.isdigit()
        and text[0] != "0"
        and int(text) <= MAX_ID
    )
