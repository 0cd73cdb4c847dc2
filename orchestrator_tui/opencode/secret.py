"""A value that must not show up in reprs, logs or crash screens: the OpenCode server password.

Textual's crash screen renders a traceback with the locals of every frame, and a dataclass's
default repr prints every field; a plain ``str`` password travels into both. A `Secret` prints as
``Secret('***')`` wherever it goes and gives its value only through `Secret.reveal`, called where
the value is sent (the Basic-auth header, the child's environment, the owner-only record file).

It is deliberately not a ``str`` subclass: Rich truncates long strings by slicing them, and a
slice of a ``str`` subclass is a plain ``str`` that prints the value.
"""

from __future__ import annotations

import hmac
from typing import Final, final

REDACTED: Final = "***"


@final
class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    @classmethod
    def of(cls, value: str | Secret | None) -> Secret | None:
        """Wrap a plain value (a `Secret` and None are returned as they are)."""
        if value is None or isinstance(value, Secret):
            return value
        return cls(value)

    def reveal(self) -> str:
        """The value itself: only where it is sent, never into anything that is shown or logged."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED!r})"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))
