"""The scripted model's directive language: what it answers to each request, as a pure function.

Tests and the demo drive a real OpenCode through prompts written in this language: the scripted
model (:mod:`orchestrator_tui.scripted_model.server` serves it over HTTP) answers each
chat-completions request with what :func:`choose_reply` decides from the request body alone, so
every answer is deterministic and testable without HTTP.

The script is chosen by the text of the *last* message only (OpenCode resends the whole history
every turn, so looking further back would make earlier turns leak into later ones):

* A request without tools is OpenCode's title generator: answer a short title.
* A tool result: answer from what the tool returned (a `read` gives back the file's exact text).
* Directives (an uppercase word anywhere in the text; the earliest one in the text wins):
  ``READ <path>``, ``BASH <command>``, ``EDIT <path> <old> => <new>``, ``WRITE <path> <content>``,
  ``ASK``, ``ASKMULTI``, ``CALL <tool> <json>``, ``ECHO <text>``, ``FAST <n>``, ``SLOW <n> <ms>``,
  ``HANG``, ``STALL``, ``ERROR500``, ``ERROR400``, ``STREAM <text>``. ``HANG`` streams a few
  words, then holds the stream open; ``STALL`` holds it open before the first token (a model
  that never starts answering).
  ``READ``/``BASH``/``EDIT`` arguments end at the end of their line; ``WRITE``/``ECHO``/``STREAM``
  text and ``CALL``'s JSON run on to the end of the message, so they may span lines.
* Natural prompts used by the integration tests: a double-quoted file path plus the word "read"
  calls the `read` tool; ``Say exactly 'X'`` / ``Say 'X' and nothing else`` answers ``X``.
* Anything else gets a short friendly reply quoting the prompt's first line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Seconds between words of ``STREAM``: slow enough for a person to watch text arrive live.
STREAM_WORD_DELAY: Final = 0.03
_TITLE_MAX_CHARS: Final = 50
_TITLE_MAX_WORDS: Final = 8
_MAX_DELTAS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class TextReply:
    """Assistant text, sent as one SSE delta per chunk (or joined, when not streaming).

    `delay` is the pause between chunks in seconds. `hang` keeps the stream open after the chunks
    (with keepalive comments) until the client goes away or the server stops, which is how tests
    hold a session busy for as long as they like.
    """

    chunks: tuple[str, ...]
    kind: str
    delay: float = 0.0
    hang: bool = False

    @property
    def text(self) -> str:
        return "".join(self.chunks)


@dataclass(frozen=True, slots=True)
class ToolCallReply:
    """One function call; OpenCode runs the tool and comes back with its result."""

    name: str
    arguments: dict[str, Any]
    kind: str


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An OpenAI-style error response (OpenCode retries 5xx about 66 s, fails 4xx at once)."""

    status: int
    message: str
    error_type: str
    kind: str


Reply = TextReply | ToolCallReply | ErrorReply


def message_text(message: Mapping[str, Any]) -> str:
    """The text of a chat message whose content is a string or a list of content parts."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
        return "\n".join(texts)
    return ""


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def make_title(text: str) -> str:
    """A readable session title from a prompt: the first words of its first line.

    The dashboard lists sessions by title, so the title keeps whole words, stays on one line and
    within 50 characters, and drops trailing punctuation.
    """
    words = _first_line(text).split()
    title = ""
    for word in words[:_TITLE_MAX_WORDS]:
        candidate = f"{title} {word}" if title else word
        if len(candidate) > _TITLE_MAX_CHARS:
            break
        title = candidate
    if not title and words:  # a single word longer than the limit
        title = words[0][: _TITLE_MAX_CHARS - 1] + "…"
    title = title.rstrip(".,;:!?-")
    return title or "Untitled session"


_READ_NOTE = re.compile(r"^\((?:End of file|Showing lines|Output capped|File has more|Use offset)[^\n]*\)$")
_NUMBERED_LINE = re.compile(r"^\d+: ?(.*)$")


def parse_read_output(output: str) -> str | None:
    """The file text inside OpenCode's `read` tool output, or None if it is not a file listing.

    OpenCode 1.18.33 returns ``<path>…</path>\\n<type>file</type>\\n<content>\\n1: line\\n…\\n\\n
    (End of file - total N lines)\\n</content>``. The model is expected to quote the file, so
    strip the wrapper, the trailing note and the ``N: `` line-number prefixes.
    """
    if "<type>file</type>" not in output:
        return None
    start = output.find("<content>")
    end = output.rfind("</content>")
    if start < 0 or end < start:
        return None
    lines = output[start + len("<content>") : end].strip("\n").split("\n")
    while lines and (not lines[-1].strip() or _READ_NOTE.match(lines[-1].strip())):
        lines.pop()
    return "\n".join(m.group(1) if (m := _NUMBERED_LINE.match(line)) else line for line in lines)


#: Markers of a tool that did not run. OpenCode sends a failed tool's error text as the tool
#: result, with nothing else to tell it apart from output, so recognise its own wordings.
_TOOL_ERROR_MARKERS: Final = (
    "rejected permission",  # "The user rejected permission to use this specific tool call…"
    "dismissed this question",  # "The user dismissed this question"
)
#: Prefixes of a failed tool's message; not applied to `bash`, whose output is arbitrary text.
_TOOL_ERROR_PREFIXES: Final = ("error", "file not found", "permission denied")


def _is_tool_error(result: str, tool: str) -> bool:
    lowered = result.lower().strip()
    if any(marker in lowered for marker in _TOOL_ERROR_MARKERS):
        return True
    return tool != "bash" and lowered.startswith(_TOOL_ERROR_PREFIXES)


def tool_name_for(messages: list[Mapping[str, Any]], call_id: object) -> str:
    """The tool a tool-result message answers, looked up in the assistant's earlier tool calls."""
    for message in reversed(messages):
        for call in message.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            function = call.get("function") or {}
            if call_id is None or call.get("id") == call_id:
                return str(function.get("name") or "unknown")
    return "unknown"


def _reply_to_tool_result(messages: list[Mapping[str, Any]]) -> TextReply:
    last = messages[-1]
    result = message_text(last)
    name = tool_name_for(messages[:-1], last.get("tool_call_id"))
    if _is_tool_error(result, name):
        return TextReply((f"Understood: {_first_line(result)}",), kind=f"after:{name}:error")
    if name == "read" and (contents := parse_read_output(result)) is not None:
        return TextReply((contents,), kind="after:read")
    if name == "bash":
        return TextReply((f"Command output:\n{result.strip()}",), kind="after:bash")
    if name == "question":
        return TextReply((result.strip(),), kind="after:question")
    return TextReply((f"Tool {name} returned: {result[:200]}",), kind=f"after:{name}")


_COLOUR_QUESTION: Final = {
    "question": "Pick a colour",
    "header": "Colour",
    "options": [{"label": "red", "description": "warm"}, {"label": "blue", "description": "cold"}],
}
_TOPPINGS_QUESTION: Final = {
    "question": "Pick toppings",
    "header": "Toppings",
    "multiple": True,
    "options": [
        {"label": "cheese", "description": "melted on top"},
        {"label": "ham", "description": "sliced"},
    ],
}


def _words(text: str) -> tuple[str, ...]:
    """Split text into words that keep their trailing whitespace, so the chunks rejoin exactly."""
    leading = text[: len(text) - len(text.lstrip())]
    words = re.findall(r"\S+\s*", text)
    if leading and words:
        words[0] = leading + words[0]
    return tuple(words) or ((text,) if text else ())


def _call(match: re.Match[str]) -> Reply:
    source = match.group(2)
    try:
        arguments, _ = json.JSONDecoder().raw_decode(source)
    except json.JSONDecodeError as exc:
        return TextReply(
            (f"scripted model: CALL needs a JSON object after the tool name ({exc.msg}).",), "call:bad"
        )
    if not isinstance(arguments, dict):
        return TextReply(("scripted model: CALL needs a JSON object after the tool name.",), "call:bad")
    return ToolCallReply(match.group(1), arguments, kind=f"tool:{match.group(1)}")


def _fast(match: re.Match[str]) -> Reply:
    count = min(int(match.group(1)), _MAX_DELTAS)
    return TextReply(tuple(f"w{i} " for i in range(count)), kind="fast")


def _slow(match: re.Match[str]) -> Reply:
    count = min(int(match.group(1)), _MAX_DELTAS)
    return TextReply(tuple(f"s{i} " for i in range(count)), kind="slow", delay=int(match.group(2)) / 1000)


_Builder = Callable[[re.Match[str]], Reply]

#: Directive patterns. Each must start with its keyword, so the match start is the keyword's
#: position: among all that match, the one earliest in the text wins.
_DIRECTIVES: Final[tuple[tuple[re.Pattern[str], _Builder], ...]] = (
    (
        re.compile(r"\bREAD[ \t]+(\S+)"),
        lambda m: ToolCallReply("read", {"filePath": m.group(1)}, kind="tool:read"),
    ),
    (
        re.compile(r"\bBASH[ \t]+([^\n]*\S)"),
        lambda m: ToolCallReply(
            "bash",
            {"command": m.group(1).strip(), "description": "Run a scripted command"},
            kind="tool:bash",
        ),
    ),
    (
        re.compile(r"\bEDIT[ \t]+(\S+)[ \t]+([^\n]*?)[ \t]*=>[ \t]*([^\n]*)"),
        lambda m: ToolCallReply(
            "edit",
            {"filePath": m.group(1), "oldString": m.group(2), "newString": m.group(3).rstrip()},
            kind="tool:edit",
        ),
    ),
    (
        re.compile(r"\bWRITE[ \t]+(\S+)[ \t\n]?(.*)", re.DOTALL),
        lambda m: ToolCallReply("write", {"filePath": m.group(1), "content": m.group(2)}, kind="tool:write"),
    ),
    (
        re.compile(r"\bASKMULTI\b"),
        lambda m: ToolCallReply(
            "question",
            {"questions": [dict(_COLOUR_QUESTION), dict(_TOPPINGS_QUESTION)]},
            kind="tool:question",
        ),
    ),
    (
        re.compile(r"\bASK\b"),
        lambda m: ToolCallReply("question", {"questions": [dict(_COLOUR_QUESTION)]}, kind="tool:question"),
    ),
    (re.compile(r"\bCALL[ \t]+([\w.:-]+)[ \t\n]+(.*)", re.DOTALL), _call),
    (re.compile(r"\bECHO[ \t\n]+(.*)", re.DOTALL), lambda m: TextReply((m.group(1).strip(),), kind="echo")),
    (re.compile(r"\bFAST[ \t]+(\d+)\b"), _fast),
    (re.compile(r"\bSLOW[ \t]+(\d+)[ \t]+(\d+)\b"), _slow),
    (re.compile(r"\bHANG\b"), lambda m: TextReply(("hanging... ",), kind="hang", hang=True)),
    (re.compile(r"\bSTALL\b"), lambda m: TextReply((), kind="stall", hang=True)),
    (
        re.compile(r"\bERROR500\b"),
        lambda m: ErrorReply(500, "scripted internal error", "server_error", kind="error500"),
    ),
    (
        re.compile(r"\bERROR400\b"),
        lambda m: ErrorReply(400, "scripted bad request", "invalid_request_error", kind="error400"),
    ),
    (
        re.compile(r"\bSTREAM[ \t\n]+(.*)", re.DOTALL),
        lambda m: TextReply(_words(m.group(1).strip()), kind="stream", delay=STREAM_WORD_DELAY),
    ),
)

_QUOTED_PATH = re.compile(r'"([^"\n]*[/\\][^"\n]*|[\w.-]+\.\w+)"')
_READ_WORD = re.compile(r"\bread\b", re.IGNORECASE)
_SAY = re.compile(
    r"""\bsay\s+(?:exactly\s*:?\s*)?(?P<q>['"‘“])(?P<text>.+?)['"’”](?=\s|[.,;:!?)]|$)""",
    re.IGNORECASE,
)


def _reply_to_prompt(text: str) -> Reply:
    found = [(m.start(), m, build) for pattern, build in _DIRECTIVES if (m := pattern.search(text))]
    if found:
        _, match, build = min(found, key=lambda item: item[0])
        return build(match)
    if _READ_WORD.search(text) and (path := _QUOTED_PATH.search(text)):
        return ToolCallReply("read", {"filePath": path.group(1)}, kind="tool:read")
    if say := _SAY.search(text):
        return TextReply((say.group("text"),), kind="say")
    first = _first_line(text)
    if not first:
        return TextReply(("scripted model: received an empty message.",), kind="default")
    if len(first) > 80:
        first = first[:79] + "…"
    return TextReply((f'scripted model: received "{first}"',), kind="default")


def choose_reply(body: Mapping[str, Any]) -> Reply:
    """Decide the answer to one chat-completions request body (see the module docstring)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    last: Mapping[str, Any] = messages[-1] if messages else {}
    if not body.get("tools"):
        return TextReply((make_title(message_text(last)),), kind="title")
    if last.get("role") == "tool":
        return _reply_to_tool_result(messages)
    return _reply_to_prompt(message_text(last))
