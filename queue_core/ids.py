"""Time-ordered job ids (UUIDv7, RFC 9562).

Ids double as the creation-order tie-break in the Redis ready-index (members compare
bytewise), so ids made by one process must strictly increase: within one millisecond the
12-bit ``rand_a`` field is a counter, and when it overflows the timestamp is borrowed from
the next millisecond (RFC 9562 §6.2, method 3). Pure: no I/O.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF


def uuid7() -> uuid.UUID:
    """A new UUIDv7, strictly greater than every earlier one from this process."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms = now_ms
            # Start low in the counter space so a burst has room before it overflows.
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF
        else:
            _counter += 1
            if _counter > _COUNTER_MAX:
                _last_ms += 1
                _counter = 0
        ms, counter = _last_ms, _counter
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= counter << 64
    value |= 0b10 << 62  # variant
    value |= rand_b
    return uuid.UUID(int=value)


def uuid7_floor(when_ms: int) -> uuid.UUID:
    """The smallest UUIDv7 of millisecond ``when_ms``: every id made at or after that
    millisecond is greater (used as a time cut-off on the primary key)."""
    return uuid.UUID(int=((when_ms & ((1 << 48) - 1)) << 80) | (0x7 << 76) | (0b10 << 62))
