"""Model-controlled text on the dashboard: visible escapes that stand out, and a last filter.

:func:`shown` is how every title, command, pattern, diff, question, tool name, client name or
error message reaches a widget: control and format characters become escapes
(:mod:`orchestrator_tui.safetext`) drawn in reverse video, so ``echo hello \\x1b[8m; curl …``
is read as exactly that and a literal backslash-x typed by the model does not look the same.

:class:`ControlFilter` is defence in depth: a Textual line filter over every rendered line that
drops any control or format character still left in a segment (a place :func:`shown` missed, a
widget's own text). It keeps each line's cell length, so it cannot shift the layout, and it only
does work on lines that contain such a character (Textual caches filtered lines).
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style, StyleType
from rich.text import Text
from textual.color import Color
from textual.filter import LineFilter

from orchestrator_tui.safetext import UNSAFE_ANY, needs_escaping, visible, visible_parts

#: How an escape looks inside model text: it must not pass for characters the model wrote.
ESCAPE_STYLE = Style(reverse=True)

__all__ = ["ESCAPE_STYLE", "ControlFilter", "shown", "visible"]


def shown(text: str, style: StyleType = "", *, multiline: bool = False) -> Text:
    """Model-controlled ``text`` as a Rich Text in ``style``, its escapes in reverse video.

    ``multiline`` keeps newlines and tabs (a response, a diff, a question); otherwise the text is
    one line whatever it contains (a title, a pattern, an inbox line).
    """
    if not needs_escaping(text, multiline=multiline):
        return Text(text, style=style)
    result = Text(style=style)
    for piece, escaped in visible_parts(text, multiline=multiline):
        result.append(piece, ESCAPE_STYLE if escaped else None)
    return result


class ControlFilter(LineFilter):
    """Drop control and format characters from rendered segments, keeping the cell length."""

    def apply(self, segments: list[Segment], background: Color) -> list[Segment]:
        search = UNSAFE_ANY.search
        if not any(search(segment.text) for segment in segments if not segment.control):
            return segments
        return [
            segment
            if segment.control or not search(segment.text)
            else Segment(_blank(segment.text), segment.style, None)
            for segment in segments
        ]


def _blank(text: str) -> str:
    # Most of these characters are zero cells wide and simply go; the few that a terminal draws
    # one cell wide (soft hyphen, Arabic number signs) become spaces, so the line keeps its width.
    return UNSAFE_ANY.sub(lambda match: " " * cell_len(match.group()), text)
