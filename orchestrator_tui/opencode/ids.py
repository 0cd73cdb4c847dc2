"""OpenCode identifiers made on our side, where OpenCode lets the client choose them.

A prompt or command that carries its own ``messageID`` can be recognised in everything OpenCode
says afterwards: the user message has that id and every assistant message answering it names it
as ``parentID``. That correlation, not timing, is how a run knows its turn is over.

OpenCode 1.18.33 only checks the prefix (``msg``), but its ids sort by creation (``msg_`` + 12 hex
digits of ``ms * 4096 + counter``, low 48 bits, + 14 random base-62 characters), and so do ours:
the same layout, so a transcript listed by id keeps our message where it belongs. Which message
is the latest is decided by OpenCode on its own clock (``time.created``), never by our id.
"""

from __future__ import annotations

import secrets
import threading
import time

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_RANDOM_CHARS = 14
_MASK_48 = (1 << 48) - 1

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def ascending(prefix: str) -> str:
    """A new id that sorts after every id this process made before (even if the clock steps back)."""
    global _last_ms, _counter
    with _lock:
        now = int(time.time() * 1000)
        if now > _last_ms:
            _last_ms, _counter = now, 0
        _counter += 1
        value = (_last_ms * 4096 + _counter) & _MASK_48
    tail = "".join(_BASE62[b % 62] for b in secrets.token_bytes(_RANDOM_CHARS))
    return f"{prefix}_{value.to_bytes(6, 'big').hex()}{tail}"


def message_id() -> str:
    """A ``msg_…`` id for a prompt or command we send."""
    return ascending("msg")
