"""The text the agent reads: each tool result laid out exactly as the Rust reference printed it.

Agents parse these texts (``Request ID: …``, ``Status: Busy``), so every layout is pinned, full
string by full string, by ``tests/test_orchestrator_types.py``. Two deliberate fixes: ages are
computed from OpenCode's *millisecond* timestamps (the reference read them as seconds, so every
session was "just now"), and an empty ``path`` (OpenCode 1.18.33 always sends ``""``) prints no
``Path:`` line. One deliberate difference: every string that a model, an agent or a project
controls (titles, responses, questions and options, patterns, tool names, errors) goes through
:func:`orchestrator_tui.safetext.visible`, so control and bidi characters show as ``\\x1b`` /
``\\u202e`` escapes instead of acting on whatever terminal or log shows the text, and a newline
inside a one-line field cannot forge another line (a fake ``Request ID:``). The structured JSON
keeps the exact strings.

The output models of :mod:`orchestrator_tui.orchestrator.types` render themselves through the
functions here (their ``.text()``); this module reads them only by their fields, so it does not
import them at run time and the two stay free of an import cycle.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from orchestrator_tui.safetext import visible

if TYPE_CHECKING:
    from orchestrator_tui.orchestrator.types import (
        GetSessionStateOutput,
        ListAgentsOutput,
        ListCommandsOutput,
        ListSessionsOutput,
        RunOutput,
        SessionStatusBusy,
        SessionStatusIdle,
        SessionStatusRetry,
    )


@runtime_checkable
class Rendered(Protocol):
    """An output model with a text rendering (every tool's output has one)."""

    def text(self, now_ms: int | None = None) -> str: ...


def render_text(output: object, now_ms: int | None = None) -> str:
    """The text content of a tool result; ``now_ms`` (default: the wall clock) dates the ages."""
    if not isinstance(output, Rendered):
        raise TypeError(f"no text rendering for {type(output).__name__}")
    return output.text(now_ms)


_RUN_ICONS = {
    "completed": "\u2713",  # check mark
    "permission_required": "\u23f8",  # pause
    "question_required": "?",
}


def run_text(out: RunOutput) -> str:
    """``run`` and the respond_* tools: status line, warnings, the request to answer, the response."""
    status = str(out.status)
    lines = [f"{_RUN_ICONS[status]} session {status} {_shown(out.session_id)}\n"]
    lines.extend(f"  warning: {_shown(warning)}\n" for warning in out.warnings)

    if status == "permission_required":
        lines.append("\n--- Permission Request ---\n")
        if out.permission_type is not None:
            lines.append(f"Type: {_shown(out.permission_type)}\n")
        if out.permission_patterns:
            lines.append(f"Patterns: {', '.join(map(_shown, out.permission_patterns))}\n")
        if out.permission_request_id is not None:
            lines.append(f"Request ID: {_shown(out.permission_request_id)}\n")
        # The `orchestrator_` prefix is how OpenCode shows this server's tools to its agents.
        lines.append("\nTo respond: orchestrator_respond_permission(session_id, reply)\n")
        lines.append("  reply options: once | always | reject\n")
        lines.append("  tip: include permission_request_id=<Request ID> when provided\n")

    if status == "question_required":
        lines.append("\n--- Question Request ---\n")
        if out.question_request_id is not None:
            lines.append(f"Request ID: {_shown(out.question_request_id)}\n")
        for index, question in enumerate(out.questions, start=1):
            if question.header:
                lines.append(f"Header: {_shown(question.header)}\n")
            lines.append(f"Question {index}: {_shown(question.question)}\n")
            for option in question.options:
                if option.description:
                    lines.append(f"  - {_shown(option.label)}: {_shown(option.description)}\n")
                else:
                    lines.append(f"  - {_shown(option.label)}\n")
            lines.append(f"  multiple: {_rust_bool(question.multiple)}\n")
            lines.append(f"  custom: {_rust_bool(question.custom)}\n")
        lines.append("\nTo respond: orchestrator_respond_question(session_id, action, answers)\n")
        lines.append("  action options: reply | reject\n")
        lines.append("  tip: include question_request_id=<Request ID> when provided\n")

    if out.response is not None:
        lines.append("\n--- Response ---\n")
        lines.append(visible(out.response, multiline=True))
    elif out.partial_response is not None and _rust_trim(out.partial_response):
        lines.append("\n--- Partial Response ---\n")
        lines.append(visible(out.partial_response, multiline=True))
    return "".join(lines)


def list_sessions_text(out: ListSessionsOutput, now_ms: int | None = None) -> str:
    """One line per session (id, title, age, status, launched by you), its path on the next."""
    lines = [f"Sessions ({len(out.sessions)}):\n"]
    for s in out.sessions:
        age = "unknown" if s.updated is None else format_time_ago(s.updated, now_ms)
        launched = " [launched by you]" if s.launched_by_you else ""
        server = f" [server: {_shown(s.server)}]" if s.server else ""
        lines.append(f"  {_shown(s.id)} - {_shown(s.title)} ({age}, {_status_word(s.status)}){launched}{server}\n")
        if s.path:
            lines.append(f"    Path: {_shown(s.path)}\n")
    if not out.sessions:
        lines.append("  (no sessions found)\n")
    return "".join(lines)


def session_state_text(out: GetSessionStateOutput, now_ms: int | None = None) -> str:
    """``get_session_state``: one ``Key: value`` line each, then the recent tool calls."""
    lines = [f"Session: {_shown(out.session_id)} ({_shown(out.title)})\n"]
    if out.server is not None:
        lines.append(f"  Server: {_shown(out.server)}\n")
    if out.directory is not None:
        lines.append(f"  Directory: {_shown(out.directory)}\n")
    if out.path:
        lines.append(f"  Path: {_shown(out.path)}\n")
    status = out.status
    if status.state == "retry":
        status_str = f"Retry (attempt {status.attempt}, next at {status.next}, reason: {_shown(status.message)})"
    else:
        status_str = "Busy" if status.state == "busy" else "Idle"
    lines.append(f"  Status: {status_str}\n")
    lines.append(f"  Launched by you: {_rust_bool(out.launched_by_you)}\n")
    lines.append(f"  Pending messages: {out.pending_message_count}\n")
    if out.last_activity is not None:
        lines.append(f"  Last activity: {format_time_ago(out.last_activity, now_ms)}\n")
    if out.recent_tool_calls:
        lines.append("  Recent tool calls:\n")
        for call in out.recent_tool_calls:
            state = call.state
            state_str = f"error: {_shown(state.message)}" if state.status == "error" else state.status
            lines.append(f"    {_shown(call.call_id)} ({_shown(call.tool_name)}) - {state_str}\n")
    return "".join(lines)


def list_commands_text(out: ListCommandsOutput) -> str:
    """One line per command with the first line of its description, then how to run one."""
    return _listing(
        "Available commands:",
        [(c.name, c.description) for c in out.commands],
        "(no commands available)",
        "Use orchestrator_run(command=<name>, message=<args>) to execute",
    )


def list_agents_text(out: ListAgentsOutput) -> str:
    """One line per agent with the first line of its description, then how to use one."""
    return _listing(
        "Available agents:",
        [(a.name, a.description) for a in out.agents],
        "(no agents available)",
        "Use orchestrator_run(message=<prompt>, agent=<name>) for raw prompts",
    )


def _listing(header: str, entries: list[tuple[str, str | None]], empty: str, footer: str) -> str:
    """The reference's shape for both lists: ``  name - first line of the description``."""
    lines = [header + "\n"]
    for name, description in entries:
        line = f"  {_shown(name)}"
        first = _first_line(description) if description is not None else None
        if first is not None:
            line += f" - {_shown(first)}"
        lines.append(line + "\n")
    if not entries:
        lines.append(f"  {empty}\n")
    lines.append(f"\n{footer}\n")
    return "".join(lines)


def format_time_ago(timestamp_ms: int, now_ms: int | None = None) -> str:
    """Age of an OpenCode timestamp: ``just now`` / ``<n>m ago`` / ``<n>h ago`` / ``<n>d ago``.

    OpenCode timestamps are **milliseconds** since the epoch. The reference treated them as seconds,
    so every age read "just now" against a real server; here the difference is computed in
    milliseconds and converted to whole seconds before the reference's buckets are applied (integer
    division; a timestamp in the future reads "just now").
    """
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    diff = (now_ms - timestamp_ms) // 1000
    if diff < 60:
        return "just now"
    if diff < 3600:
        return f"{diff // 60}m ago"
    if diff < 86400:
        return f"{diff // 3600}h ago"
    return f"{diff // 86400}d ago"


# Rust's `str::trim` strips Unicode White_Space; Python's `str.strip()` also strips \x1c-\x1f.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _shown(value: str) -> str:
    """A model-controlled string on one line of the text output: escapes for controls and newlines."""
    return visible(value)


def _status_word(status: SessionStatusIdle | SessionStatusBusy | SessionStatusRetry | None) -> str:
    return "unknown" if status is None else status.state


def _rust_trim(value: str) -> str:
    return value.strip(_RUST_WHITESPACE)


def _rust_bool(value: bool) -> str:
    return "true" if value else "false"


def _first_line(text: str) -> str | None:
    """Rust's ``text.lines().next()``: ``None`` for ``""``, else up to the first ``\\n`` minus a ``\\r``.

    (``str.splitlines`` would also split on form feeds, U+2028 and friends, which Rust does not.)
    """
    if text == "":
        return None
    line = text.split("\n", 1)[0]
    return line[:-1] if line.endswith("\r") else line
