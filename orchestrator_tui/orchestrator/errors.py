"""Tool error kinds and their display texts.

Every tool failure becomes an MCP result with ``isError: true`` whose only text is ``str(error)``.
The three kinds are separate classes, so callers can ``except`` each one, and the text is
fixed here so that no adapter needs to know the formats:

=================  ==========================
kind               ``str(error)``
=================  ==========================
``InvalidInput``   ``invalid input: <m>``
``Internal``       ``internal error: <m>``
``Cancelled``      ``cancelled``
=================  ==========================

``.message`` keeps the bare ``<m>`` so that wrappers (for example respond_* continuing with the run
logic, or the call log) can reuse it without parsing the display text.
"""

from __future__ import annotations

from typing import ClassVar


class ToolError(Exception):
    """Base class of the errors a tool call can end with.

    Not raised directly: use one of the subclasses, so the display text is always one of theirs.
    """

    #: Short machine name of the kind (``invalid_input`` / ``internal`` / ``cancelled``).
    kind: ClassVar[str] = "internal"
    #: Text placed before ``": <m>"`` in the display string.
    prefix: ClassVar[str] = "internal error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message: str = message

    def __str__(self) -> str:
        return f"{self.prefix}: {self.message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class InvalidInput(ToolError):
    """The caller's arguments are wrong (bad field, unknown session, blocked command, ...)."""

    kind: ClassVar[str] = "invalid_input"
    prefix: ClassVar[str] = "invalid input"


class Internal(ToolError):
    """Something on the server side failed (OpenCode unreachable, HTTP error, timeout, ...)."""

    kind: ClassVar[str] = "internal"
    prefix: ClassVar[str] = "internal error"


class Cancelled(ToolError):
    """The MCP request was cancelled by the client; the display text carries no detail."""

    kind: ClassVar[str] = "cancelled"
    prefix: ClassVar[str] = "cancelled"

    def __init__(self, message: str = "") -> None:
        # ``message`` is only a diagnostic for logs/repr; the display text stays exactly "cancelled".
        super().__init__(message)

    def __str__(self) -> str:
        return "cancelled"


__all__ = ["Cancelled", "Internal", "InvalidInput", "ToolError"]
