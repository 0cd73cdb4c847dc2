"""What OpenCode 1.18.33 makes of a command template and its arguments, before the model sees it.

``POST /session/{id}/command`` does not send the template to the model as it is. OpenCode first
puts the arguments into it, then runs every ``!`…` `` block of the result through the shell and
puts the output in its place, then attaches every file an ``@path`` in the text names. None of
this asks for a permission: a shell command or a file outside the project gets in without the
human seeing it. So a supervisor has to know, before it sends a command, what that expansion will
run and read. This module reproduces it, step for step, from OpenCode 1.18.33's own code
(``SessionPrompt.command`` and ``ConfigMarkdown``):

1. the arguments are split like a shell would, roughly: ``"quoted words"``, ``'quoted'``,
   ``[Image N]`` or runs of non-blanks, with one leading and one trailing quote removed;
2. ``$1``, ``$2``, … take those words, the highest one taking all the rest; a missing one is empty;
3. ``$ARGUMENTS`` takes the whole argument string, through JavaScript's ``replaceAll`` with a
   *string* replacement, so ``$$``, ``$&``, `` $` `` and ``$'`` in the arguments are patterns,
   not text;
4. a template without any placeholder gets the arguments appended after a blank line;
5. ``!`cmd` `` blocks run in the shell (:data:`SHELL`); ``@path`` references
   (:data:`FILE_REFERENCE`) are resolved against the worktree (``~/`` against the home folder).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# JavaScript's classes, spelled out: Python's \s and \w differ (\w is Unicode-aware, \s misses
# U+FEFF), and a reference that ends one character later than OpenCode's can name another path.
_JS_SPACE = "\t\n\v\f\r \u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_JS_WORD = "A-Za-z0-9_"

#: ``ConfigMarkdown.SHELL_REGEX``: a shell block in a command template.
SHELL = re.compile(r"!`([^`]+)`")
#: ``ConfigMarkdown.FILE_REGEX``: a file (or agent) reference.
FILE_REFERENCE = re.compile(rf"(?<![{_JS_WORD}`])@(\.?[^{_JS_SPACE}`,.]*(?:\.[^{_JS_SPACE}`,.]+)*)")
_WORDS = re.compile(rf"""(?:\[Image[{_JS_SPACE}]+[0-9]+\]|"[^"]*"|'[^']*'|[^{_JS_SPACE}"']+)""", re.IGNORECASE)
_EDGE_QUOTES = re.compile(r"""\A["']|["']\Z""")
_NUMBERED = re.compile(r"\$([0-9]+)")
_ARGUMENTS = "$ARGUMENTS"


@dataclass(frozen=True, slots=True)
class Expansion:
    """A template with its arguments in place: the text, and what OpenCode will run and read."""

    text: str
    #: The shell commands of the ``!`…` `` blocks, in order.
    shell: tuple[str, ...]
    #: The ``@`` references, in order, as written (``/etc/passwd``, ``~/x``, ``src/a.py``).
    references: tuple[str, ...]


def expand(template: str, arguments: str) -> Expansion:
    """``template`` with ``arguments`` in place, exactly as OpenCode 1.18.33 does it."""
    words = [_EDGE_QUOTES.sub("", w) for w in _WORDS.findall(arguments)]
    numbered = _NUMBERED.findall(template)
    last = max((int(n) for n in numbered), default=0)

    def positional(match: re.Match[str]) -> str:
        n = int(match.group(1))
        index = n - 1
        if index >= len(words):
            return ""
        return " ".join(words[index:]) if n == last else words[index]

    text = _NUMBERED.sub(positional, template)
    has_arguments = _ARGUMENTS in template
    text = _js_replace_all(text, _ARGUMENTS, arguments)
    if not numbered and not has_arguments and arguments.strip():
        text = f"{text}\n\n{arguments}"
    shell = tuple(m.group(1) for m in SHELL.finditer(text))
    # References are resolved on the text after the shell blocks ran; their output is not
    # known here, so the blocks are left out of the text searched (their commands are judged).
    searched = SHELL.sub(" ", text).strip()
    references = tuple(m.group(1) for m in FILE_REFERENCE.finditer(searched) if m.group(1))
    return Expansion(text=text, shell=shell, references=references)


def _js_replace_all(text: str, search: str, replacement: str) -> str:
    """``text.replaceAll(search, replacement)`` with JavaScript's replacement patterns.

    With a string (not a function) replacement, ``$$`` is ``$``, ``$&`` the match, `` $` `` the
    text before it and ``$'`` the text after it; any other ``$`` is literal.
    """
    if not search:
        return text
    out: list[str] = []
    start = 0
    while (at := text.find(search, start)) != -1:
        out.append(text[start:at])
        before, after = text[:at], text[at + len(search) :]
        i = 0
        while i < len(replacement):
            c = replacement[i]
            nxt = replacement[i + 1] if i + 1 < len(replacement) else ""
            if c == "$" and nxt in ("$", "&", "`", "'"):
                out.append({"$": "$", "&": search, "`": before, "'": after}[nxt])
                i += 2
                continue
            out.append(c)
            i += 1
        start = at + len(search)
    out.append(text[start:])
    return "".join(out)
