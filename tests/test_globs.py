"""The pool's globs match exactly as OpenCode 1.18.33's permission matcher does.

The table below was taken from OpenCode's own ``Wildcard.match``; a second test runs that very
function, cut out of the pinned binary, with Node over the table and over a few thousand random
cases, so a difference between the two can never go unnoticed. The set questions ``intersects``
and ``covers`` are checked against brute force over every short string of a small alphabet.
"""

from __future__ import annotations

import itertools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from orchestrator_tui.opencode import binary
from orchestrator_tui.pool import globs

#: (text, pattern, OpenCode's answer). Each row is a way fnmatch (or a careless regex) differs.
TABLE: list[tuple[str, str, bool]] = [
    ("git push", "git push *", True),  # a trailing " *" is optional
    ("git push origin main", "git push *", True),
    ("git pushx", "git push *", False),
    ("git push", "git push*", True),
    ("ls a", "ls [ab]", False),  # "[" is a literal, not a class
    ("ls [ab]", "ls [ab]", True),
    ("a/b/c.txt", "*.txt", True),  # "*" crosses "/"
    ("a\nb", "a*b", True),  # and newlines (dot-all)
    ("ab", "a?", True),
    ("a", "a?", False),
    ("a.txt", "a?txt", True),
    ("a+b", "a+b", True),  # regex metacharacters are literals
    ("aab", "a+b", False),
    ("a|b", "a|b", True),
    ("a", "a|b", False),
    ("(x)", "(x)", True),
    ("x^y$", "x^y$", True),
    ("C:\\dir\\f.txt", "C:/dir/*", True),  # backslashes are "/" on both sides
    ("src/a.py", "src\\*", True),
    ("", "", True),
    ("x", "", False),
    ("", "*", True),
    ("rm -rf /", "rm *", True),
    ("rm", "rm *", True),
    ("rmdir x", "rm *", False),
    ("echo 😀", "echo ?", False),  # JavaScript's "." is one UTF-16 unit: an emoji is two
    ("echo 😀", "echo ??", True),
    ("echo é", "echo ?", True),
    ("a  b", "a *", True),
    ("a", "a *", True),
    ("a b", "a  *", False),
    ("{x}", "{x}", True),
    (".env", "*.env", True),
    ("a/.env", "*.env", True),
]


@pytest.mark.parametrize(("text", "pattern", "expected"), TABLE)
def test_match_is_opencodes(text: str, pattern: str, expected: bool) -> None:
    assert globs.match(text, pattern) is expected


def _opencode_matcher_source() -> str:
    """``Wildcard.match`` as the pinned OpenCode binary carries it (a JavaScript function)."""
    exe = binary.resolve_launcher(Path.cwd()).binary
    data = Path(exe).read_bytes()
    body = b'.replace(/\\*/g,".*").replace(/\\?/g,".");if('
    at = data.find(body)
    assert at != -1, f"OpenCode's permission matcher was not found in {exe}: the pinned version changed?"
    start = data.rfind(b"function ", 0, at)
    end = data.find(b"}", data.find(b".test(", at)) + 1
    source = data[start:end].decode()
    assert source.count("{") == source.count("}"), source
    return source


def _random_case(rng: random.Random) -> tuple[str, str]:
    alphabet = "ab /.*?[]\\+ x"
    pattern = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6)))
    text = "".join(rng.choice("ab /.*?[]\\+x") for _ in range(rng.randint(0, 7)))
    return text, pattern


@pytest.mark.real_opencode
def test_match_agrees_with_the_pinned_binary() -> None:
    node = shutil.which("node")
    assert node, "Node.js is needed (it also installs OpenCode)"
    source = _opencode_matcher_source()
    name = source[len("function ") : source.index("(")]
    rng = random.Random(1833)
    cases = [(t, p) for t, p, _ in TABLE] + [_random_case(rng) for _ in range(3000)]
    script = f"{source}\nconst cases = JSON.parse(require('fs').readFileSync(0, 'utf8'));\n"
    script += f"process.stdout.write(JSON.stringify(cases.map(([t, p]) => {name}(t, p))));\n"
    done = subprocess.run(
        [node, "-e", script], input=json.dumps(cases), capture_output=True, text=True, timeout=60, check=True
    )
    theirs = json.loads(done.stdout)
    differ = [(t, p, o) for (t, p), o in zip(cases, theirs, strict=True) if globs.match(t, p) is not o]
    assert differ == [], differ[:10]


# -------------------------------------------------------------------------------- set questions

ALPHABET = "ab "
PATTERN_TOKENS = "ab *?"


def _strings(limit: int) -> list[str]:
    return ["".join(p) for n in range(limit + 1) for p in itertools.product(ALPHABET, repeat=n)]


STRINGS = _strings(6)
PATTERNS = sorted({"".join(p) for n in range(4) for p in itertools.product(PATTERN_TOKENS, repeat=n)})


def test_intersects_and_covers_agree_with_brute_force() -> None:
    matched = {p: frozenset(s for s in STRINGS if globs.match(s, p)) for p in PATTERNS}
    for a, b in itertools.product(PATTERNS, repeat=2):
        # Bounded strings can only prove an overlap, and only refute a cover: check those directions,
        # plus the exact answer where both patterns are short enough for 6 characters to decide.
        if matched[a] & matched[b]:
            assert globs.intersects(a, b), (a, b)
        if not matched[b] <= matched[a]:
            assert not globs.covers(a, b), (a, b)
        if globs.intersects(a, b):
            assert matched[a] & matched[b], (a, b)
        if not globs.covers(a, b):
            assert not matched[b] <= matched[a], (a, b)


@pytest.mark.parametrize(
    ("outer", "inner", "covers", "intersects"),
    [
        ("*", ".github/*", True, True),
        (".github/*", "*", False, True),  # an "always *" overlaps what the human keeps
        ("src/*", ".github/*", False, False),
        ("git *", "git status", True, True),
        ("git push *", "git push", True, True),
        ("git push", "git push *", False, True),
        ("git *", "git push *", True, True),
        ("rm *", "r?", False, True),  # "rm" itself
        ("rm *", "r*", False, True),
        ("/tmp/x/*", "/tmp/x/proj/*", True, True),
        ("[ab]", "a", False, False),
    ],
)
def test_known_set_answers(outer: str, inner: str, covers: bool, intersects: bool) -> None:
    assert globs.covers(outer, inner) is covers
    assert globs.intersects(outer, inner) is intersects
    assert globs.intersects(inner, outer) is intersects
