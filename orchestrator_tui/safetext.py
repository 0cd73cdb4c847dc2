"""Make text that a model, an agent or a project controls safe to show to a human.

Everything the dashboard and the MCP text output display — session titles, commands, patterns,
diffs, questions, tool names, client names, error messages — can be written by an untrusted party.
Shown raw, a few characters let that party change what the human reads without changing what is
approved: ``ESC [ 8 m`` hides the rest of a command on terminals that honour SGR 8, OSC sequences
set the window title or (OSC 52) write the clipboard, a lone carriage return overwrites the start
of a line, and Unicode bidi overrides (U+202E …) reorder the characters on screen ("Trojan
source"). This module replaces each such character with a visible escape, so the human sees that
it is there and where.

The mapping (Python's own escapes, so they read the same in a terminal, a log and a bug report):

* C0 controls U+0000–U+001F, DEL U+007F and C1 controls U+0080–U+009F become ``\\x1b``,
  ``\\x7f``, ``\\x9b`` …; newline, tab and carriage return become ``\\n``, ``\\t``, ``\\r``.
* Unicode format characters (category Cf: bidi embeddings, overrides and isolates, marks,
  zero-width space, word joiner, BOM, invisible operators, tag characters …) and the line and
  paragraph separators U+2028/U+2029 become ``\\u202e`` or ``\\U000e0041``.
* In *multi-line* text (a response, a diff, a question, a command shown on several lines) newline,
  tab and CR LF stay as they are; a lone CR is still escaped (it overwrites the line on a
  terminal). In single-line text (a title, an inbox line, a pattern) they are escaped too, so
  nothing can break the layout or push a second line out of sight.
* The zero-width joiners U+200C/U+200D stay between two non-ASCII characters (that is how emoji
  sequences and several scripts are written); next to ASCII or at an edge they only hide a
  difference between two strings, and are escaped.

Display time only: the pool, the registry, the JSON output and everything sent back to OpenCode
keep the exact text. No dependencies (the MCP worker imports this; it must stay cheap).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

#: Unicode format characters (general category Cf, Unicode 16.0) other than the two joiners.
_FORMAT = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f"
)
#: Line and paragraph separators (categories Zl, Zp): line breaks for some renderers.
_SEPARATORS = "\u2028\u2029"
_JOINERS = "\u200c\u200d"

#: Any character that must never reach a terminal as is, whatever its context (joiners excepted:
#: they cannot move, hide or control anything). For the dashboard's last-line-of-defence filter.
UNSAFE_ANY = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_FORMAT}{_SEPARATORS}]")

# Candidates only: whether CR (before LF) and the joiners stay depends on their neighbours, which
# the replacement decides. Plain character classes keep the search fast (the common case is a
# search that finds nothing), and ASCII-only text (most of it) gets the smallest class.
_SINGLE = re.compile(f"[\\x00-\\x1f\\x7f-\\x9f{_FORMAT}{_SEPARATORS}{_JOINERS}]")
_MULTI = re.compile(f"[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f{_FORMAT}{_SEPARATORS}{_JOINERS}]")
_SINGLE_ASCII = re.compile("[\\x00-\\x1f\\x7f]")
_MULTI_ASCII = re.compile("[\\x00-\\x08\\x0b-\\x1f\\x7f]")

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def escape_char(char: str) -> str:
    """The visible escape of one character: ``\\x1b``, ``\\n``, ``\\u202e``, ``\\U000e0041``."""
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _pattern(text: str, multiline: bool) -> re.Pattern[str]:
    if text.isascii():
        return _MULTI_ASCII if multiline else _SINGLE_ASCII
    return _MULTI if multiline else _SINGLE


def _keeps(match: re.Match[str], multiline: bool) -> bool:
    """Whether a candidate stays as it is: CR of a CR LF in multi-line text, a joiner inside a word."""
    char, text, end = match.group(), match.string, match.end()
    if char == "\r":
        return multiline and text.startswith("\n", end)
    if char in _JOINERS:
        start = match.start()
        return start > 0 and end < len(text) and not text[start - 1].isascii() and not text[end].isascii()
    return False


def needs_escaping(text: str, *, multiline: bool = False) -> bool:
    """True when :func:`visible` would change ``text``."""
    return any(not _keeps(match, multiline) for match in _pattern(text, multiline).finditer(text))


def visible(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control or format character replaced by its visible escape."""
    pattern = _pattern(text, multiline)
    if pattern.search(text) is None:  # the common case: nothing to do, no copy
        return text
    return pattern.sub(lambda match: match.group() if _keeps(match, multiline) else escape_char(match.group()), text)


def visible_parts(text: str, *, multiline: bool = False) -> Iterator[tuple[str, bool]]:
    """``text`` as (piece, is_escape) pairs, so a renderer can make the escapes stand out."""
    start = 0
    for match in _pattern(text, multiline).finditer(text):
        if _keeps(match, multiline):
            continue
        if match.start() > start:
            yield text[start : match.start()], False
        yield escape_char(match.group()), True
        start = match.end()
    if start < len(text):
        yield text[start:], False
