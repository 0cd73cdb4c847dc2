"""Permission globs exactly as OpenCode 1.18.33 matches them, and the set questions the gate asks.

OpenCode's ``Wildcard.match(str, pattern)`` (its permission matcher) turns a pattern into an
anchored, dot-all regular expression: backslashes become ``/`` on both sides, ``*`` matches any
run of characters (``/`` and newlines included), ``?`` any one character, every other character
is literal (``[`` too: there are no character classes), and a pattern ending in `` *`` also
matches without that tail, so ``git push *`` matches a bare ``git push``. Python's ``fnmatch``
differs on the last two points, and a policy that matches differently from the server it
guards can be walked around; :func:`match` is the one matcher the pool uses.

An ``always`` reply grants *patterns*, not strings: OpenCode stores them as allow rules and lets
every later request whose pattern they match through. Judging such a grant needs two questions
about pattern languages, answered here by a small automaton search (patterns have only ``*`` and
``?``, so both are decidable and cheap):

* :func:`intersects`: could some request be matched by both patterns? (A grant that overlaps a
  pattern reserved for the human would let reserved requests through.)
* :func:`covers`: is everything the inner pattern matches also matched by the outer one? (A grant
  is the agent's to give only when an agent rule covers all of it.)
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable, Iterator
from functools import lru_cache

_STAR = "*"
_ONE = "?"
#: A character no pattern names: stands for "any other character" in the automaton search.
_OTHER = "\x00"

Token = str  # "*", "?" or one literal character ("\\*" never occurs: there is no escaping)
Alts = tuple[tuple[Token, ...], ...]
States = frozenset[tuple[int, int]]


def _normalize(text: str) -> str:
    """Backslashes as ``/``, and the text as UTF-16 code units, as JavaScript's regexes see it.

    Without the ``u`` flag ``.`` matches one code unit, so ``?`` does not match a character
    outside the Basic Multilingual Plane (an emoji is two units): exactly like OpenCode.
    """
    text = text.replace("\\", "/")
    if text.isascii() or all(ord(c) < 0x10000 for c in text):
        return text
    units = text.encode("utf-16-le", "surrogatepass")
    return "".join(chr(int.from_bytes(units[i : i + 2], "little")) for i in range(0, len(units), 2))


@lru_cache(maxsize=4096)
def _regex(pattern: str) -> re.Pattern[str]:
    body = "".join(".*" if c == _STAR else "." if c == _ONE else re.escape(c) for c in _normalize(pattern))
    if body.endswith(r"\ .*"):
        body = body[: -len(r"\ .*")] + "( .*)?"
    return re.compile(body, re.DOTALL)


def match(text: str, pattern: str) -> bool:
    """Whether OpenCode 1.18.33 would say ``pattern`` matches ``text``."""
    return _regex(pattern).fullmatch(_normalize(text)) is not None


def _alternatives(pattern: str) -> Alts:
    """The pattern as plain token sequences: the trailing `` *`` one has a second, shorter form.

    Backslashes in a pattern become ``/`` (as in :func:`match`), so every other character,
    ``[`` included, is a literal token.
    """
    tokens = tuple(_normalize(pattern))
    if tokens[-2:] == (" ", _STAR):
        return (tokens, tokens[:-2])
    return (tokens,)


# An automaton state is (alternative, position); `*` is a loop that may also be skipped.


def _closure(alts: Alts, states: Iterable[tuple[int, int]]) -> States:
    seen: set[tuple[int, int]] = set()
    todo = list(states)
    while todo:
        state = todo.pop()
        if state in seen:
            continue
        seen.add(state)
        alt, pos = state
        if pos < len(alts[alt]) and alts[alt][pos] == _STAR:
            todo.append((alt, pos + 1))
    return frozenset(seen)


def _step(alts: Alts, states: States, char: str) -> States:
    nxt: list[tuple[int, int]] = []
    for alt, pos in states:
        tokens = alts[alt]
        if pos >= len(tokens):
            continue
        token = tokens[pos]
        if token == _STAR:
            nxt.append((alt, pos))
        elif token in (_ONE, char):
            nxt.append((alt, pos + 1))
    return _closure(alts, nxt)


def _start(alts: Alts) -> States:
    return _closure(alts, [(i, 0) for i in range(len(alts))])


def _accepts(alts: Alts, states: States) -> bool:
    return any(pos == len(alts[alt]) for alt, pos in states)


def _alphabet(*patterns: Alts) -> list[str]:
    """Every literal the patterns name, plus one character standing for all the others."""
    chars = {t for alts in patterns for tokens in alts for t in tokens if t not in (_STAR, _ONE)}
    return [*sorted(chars), _OTHER]


def _pairs(a: Alts, b: Alts, *, both_alive: bool) -> Iterator[tuple[States, States]]:
    """Every pair of states the two automata reach reading the same string, breadth first.

    ``both_alive``: stop following a string once either automaton is dead (an overlap needs
    both); otherwise follow it while ``a`` lives (``b`` dead is what a cover looks for).
    """
    alphabet = _alphabet(a, b)
    start = (_start(a), _start(b))
    seen = {start}
    queue = deque([start])
    while queue:
        pair = queue.popleft()
        yield pair
        sa, sb = pair
        for char in alphabet:
            na, nb = _step(a, sa, char), _step(b, sb, char)
            if na and (nb or not both_alive) and (na, nb) not in seen:
                seen.add((na, nb))
                queue.append((na, nb))


@lru_cache(maxsize=4096)
def intersects(first: str, second: str) -> bool:
    """Whether some string is matched by both patterns (their languages overlap)."""
    a, b = _alternatives(first), _alternatives(second)
    return any(_accepts(a, sa) and _accepts(b, sb) for sa, sb in _pairs(a, b, both_alive=True))


@lru_cache(maxsize=4096)
def covers(outer: str, inner: str) -> bool:
    """Whether every string ``inner`` matches is matched by ``outer`` too (inner ⊆ outer)."""
    a, b = _alternatives(inner), _alternatives(outer)
    # A reachable pair where the inner pattern accepts and the outer does not is a counterexample.
    return not any(_accepts(a, sa) and not _accepts(b, sb) for sa, sb in _pairs(a, b, both_alive=False))
