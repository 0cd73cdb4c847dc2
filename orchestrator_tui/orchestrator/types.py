"""Inputs, outputs, schemas and text renderings of the six orchestrator tools.

This module is the wire contract of the MCP surface, ported from the reference crate's
``types.rs`` (spec §1): field names, which fields are omitted from JSON, the JSON schemas
advertised in ``tools/list`` and the exact text each result renders to. It is transport-free
(no HTTP, no MCP) so that both the MCP adapter and the tests can use it directly.

What lives here and why:

* **Models.** Inputs are strict (a string field never accepts ``5``, a boolean never ``"true"``)
  because the reference deserializes with serde, which rejects such values; unknown extra fields are
  ignored, as serde does. Outputs are plain models built by the run logic.
* **Serialization.** ``model_dump(mode="json")`` (and ``to_json()``) of an output omits exactly the
  fields the reference skips (``None`` options, empty lists/strings marked ``skip_serializing_if``)
  and keeps the always-present ones, so structured results match the reference byte for byte.
* **Schemas.** :func:`input_schema` / :func:`output_schema` post-process pydantic's schema into
  the reference's shape (draft 2020-12, optional fields nullable with ``"null"`` first and an
  "Optional; omit or use null." hint, string enums inlined, no ``title`` clutter), because LLM
  clients read these schemas to decide how to call the tools.
* **Input parsing.** :func:`parse_input` turns *any* JSON value into a model or an
  :class:`~orchestrator_tui.orchestrator.errors.InvalidInput` whose text names the field, what is
  wrong and, where useful, the fix; it never raises anything else.
* **Text.** ``.text()`` / :func:`render_text` reproduce §1.4's layouts exactly, with two deliberate
  fixes from §10: ages are computed from OpenCode's *millisecond* timestamps, and an empty ``path``
  is treated as absent. One deliberate difference: every string that a model, an agent or a
  project controls (titles, responses, questions and options, patterns, tool names, errors) goes
  through :func:`orchestrator_tui.safetext.visible`, so control and bidi characters show as
  ``\x1b`` / ``\u202e`` escapes instead of acting on whatever terminal or log shows the text, and
  a newline inside a one-line field cannot forge another line (a fake ``Request ID:``). The
  structured JSON keeps the exact strings (JSON escapes them anyway).

Import cost matters (the MCP worker must start fast): models use ``defer_build`` so their
validators are only built on first use, schema generation happens lazily, once per model, and
this module deliberately does *not* use ``from __future__ import annotations`` (pydantic would
then have to compile every annotation string at class creation, about half the import time).
"""

import copy
import functools
import math
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from orchestrator_tui.orchestrator.errors import InvalidInput
from orchestrator_tui.safetext import visible

#: The tool names as the MCP server lists them (OpenCode shows them as ``orchestrator_<name>``).
TOOL_NAMES: tuple[str, ...] = (
    "run",
    "list_sessions",
    "get_session_state",
    "list_commands",
    "respond_permission",
    "respond_question",
)

#: ``list_sessions`` returns at most this many sessions when ``limit`` is omitted (§6.3).
DEFAULT_LIST_LIMIT = 20

_U64_MAX = 2**64 - 1

#: Appended to the description of every optional, nullable property (the reference's schema hint).
OPTIONAL_PROPERTY_GUIDANCE = "Optional; omit or use null."

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


# ================================================================================================
# Serialization helpers
# ================================================================================================


class _Omit:
    """Field marker: leave the field out of JSON output, like serde's ``skip_serializing_if``.

    ``OMIT_IF_NONE`` mirrors ``Option::is_none``; ``OMIT_IF_EMPTY`` mirrors ``Vec::is_empty`` and
    ``String::is_empty``. Markers live in ``Annotated`` metadata so the rule sits next to the field.
    """

    __slots__ = ("when",)

    def __init__(self, when: Literal["none", "empty"]) -> None:
        self.when = when

    def __repr__(self) -> str:
        return f"OMIT_IF_{self.when.upper()}"


OMIT_IF_NONE = _Omit("none")
OMIT_IF_EMPTY = _Omit("empty")


@functools.cache
def _omissions(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """The (field name, rule) pairs of ``cls`` that may be omitted, computed once per class."""
    rules: list[tuple[str, str]] = []
    for name, info in cls.model_fields.items():
        for meta in info.metadata:
            if isinstance(meta, _Omit):
                rules.append((name, meta.when))
    return tuple(rules)


class _Output(BaseModel):
    """Base of every output model: serde-compatible omission of skipped fields."""

    model_config = ConfigDict(defer_build=True)

    #: The reference's doc comment for the type; becomes the schema ``description`` (a ClassVar so
    #: the Python docstring can explain *why* without leaking into the wire schema).
    schema_description: ClassVar[str | None] = None

    @model_serializer(mode="wrap")
    def _serde_compatible(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name, when in _omissions(type(self)):
                value = data.get(name)
                if (when == "none" and value is None) or (
                    when == "empty" and value is not None and len(value) == 0
                ):
                    data.pop(name, None)
        return data

    def to_json(self) -> dict[str, Any]:
        """The JSON object sent as MCP ``structuredContent`` (serde-compatible omissions)."""
        result: dict[str, Any] = self.model_dump(mode="json")
        return result


class _Input(BaseModel):
    """Base of every input model: unknown fields are ignored, as serde ignores them."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    schema_description: ClassVar[str | None] = None


def _u64(description: str | None = None) -> Any:
    """A ``Field`` for an unsigned counter: advertises ``minimum: 0`` without rejecting on build.

    Output models are built from server data by our own code; a negative count there is a server
    oddity, not a reason to fail the whole tool call, so the bound is documented, not enforced.
    """
    return Field(description=description, json_schema_extra={"minimum": 0})


# ================================================================================================
# run
# ================================================================================================


class RunInput(_Input):
    """Arguments of ``run``. All optional; the run logic validates the combinations (§1.4)."""

    schema_description: ClassVar[str | None] = "Input for the `run` tool."

    session_id: StrictStr | None = Field(
        default=None, description="Existing session ID to resume. Omit to create a new session."
    )
    command: StrictStr | None = Field(
        default=None,
        description="`OpenCode` command name (e.g., `research`, `implement_plan`).\n"
        "If provided, the message becomes the `$ARGUMENTS` for template expansion.\n"
        "If omitted, sends a raw prompt without command template.",
    )
    message: StrictStr | None = Field(
        default=None,
        description="The message/prompt to send. Required for new sessions or when sending new work.\n"
        "For resume-only calls (checking status), can be omitted.",
    )
    wait_for_activity: StrictBool | None = Field(
        default=None,
        description="When true, do not early-exit simply because the session is currently idle.\n"
        "Used by permission replies to wait for post-permission activity.",
    )


class RunStatus(StrEnum):
    """Completion status for ``run`` (and the respond_* tools, which continue a run)."""

    COMPLETED = "completed"
    PERMISSION_REQUIRED = "permission_required"
    QUESTION_REQUIRED = "question_required"


class QuestionOptionView(_Output):
    """One selectable answer of a pending question."""

    label: str
    description: Annotated[str, OMIT_IF_EMPTY] = ""


class QuestionInfoView(_Output):
    """One question of a pending question request, as shown to the caller."""

    question: str
    header: Annotated[str, OMIT_IF_EMPTY] = ""
    options: Annotated[list[QuestionOptionView], OMIT_IF_EMPTY] = []
    multiple: bool = False
    custom: bool = False


_RUN_ICONS = {
    RunStatus.COMPLETED: "\u2713",  # check mark
    RunStatus.PERMISSION_REQUIRED: "\u23f8",  # pause
    RunStatus.QUESTION_REQUIRED: "?",
}


class RunOutput(_Output):
    """Result of ``run``, ``respond_permission`` and ``respond_question`` (they share one shape)."""

    schema_description: ClassVar[str | None] = "Output from the `run` tool."

    session_id: str = Field(description="Session ID for future resume calls")
    status: RunStatus = Field(description="Completion status")
    response: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None, description="Final assistant response text (when `status=completed`)"
    )
    partial_response: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None,
        description="Partial response accumulated before permission request "
        "(when `status=permission_required`)",
    )
    permission_request_id: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None,
        description="Permission request ID for responding (when `status=permission_required`)",
    )
    permission_type: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None, description='Permission type (e.g., "file.write", "bash.execute")'
    )
    permission_patterns: Annotated[list[str], OMIT_IF_EMPTY] = Field(
        default=[], description="Permission patterns being requested"
    )
    question_request_id: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None,
        description="Question request ID for responding (when `status=question_required`)",
    )
    questions: Annotated[list[QuestionInfoView], OMIT_IF_EMPTY] = Field(
        default=[], description="Pending question details (when `status=question_required`)"
    )
    warnings: Annotated[list[str], OMIT_IF_EMPTY] = Field(
        default=[], description="Any warnings (e.g., summarization triggered)"
    )

    def text(self) -> str:
        """The text content of the MCP result (§1.4 ``run``): the reference's layout, model text made visible."""
        status = RunStatus(self.status)
        out = [f"{_RUN_ICONS[status]} session {status.value} {_shown(self.session_id)}\n"]
        out.extend(f"  warning: {_shown(warning)}\n" for warning in self.warnings)

        if status is RunStatus.PERMISSION_REQUIRED:
            out.append("\n--- Permission Request ---\n")
            if self.permission_type is not None:
                out.append(f"Type: {_shown(self.permission_type)}\n")
            if self.permission_patterns:
                out.append(f"Patterns: {', '.join(map(_shown, self.permission_patterns))}\n")
            if self.permission_request_id is not None:
                out.append(f"Request ID: {_shown(self.permission_request_id)}\n")
            # The `orchestrator_` prefix is how OpenCode shows this server's tools to its agents.
            out.append("\nTo respond: orchestrator_respond_permission(session_id, reply)\n")
            out.append("  reply options: once | always | reject\n")
            out.append("  tip: include permission_request_id=<Request ID> when provided\n")

        if status is RunStatus.QUESTION_REQUIRED:
            out.append("\n--- Question Request ---\n")
            if self.question_request_id is not None:
                out.append(f"Request ID: {_shown(self.question_request_id)}\n")
            for index, question in enumerate(self.questions, start=1):
                if question.header:
                    out.append(f"Header: {_shown(question.header)}\n")
                out.append(f"Question {index}: {_shown(question.question)}\n")
                for option in question.options:
                    if option.description:
                        out.append(f"  - {_shown(option.label)}: {_shown(option.description)}\n")
                    else:
                        out.append(f"  - {_shown(option.label)}\n")
                out.append(f"  multiple: {_rust_bool(question.multiple)}\n")
                out.append(f"  custom: {_rust_bool(question.custom)}\n")
            out.append("\nTo respond: orchestrator_respond_question(session_id, action, answers)\n")
            out.append("  action options: reply | reject\n")
            out.append("  tip: include question_request_id=<Request ID> when provided\n")

        if self.response is not None:
            out.append("\n--- Response ---\n")
            out.append(visible(self.response, multiline=True))
        elif self.partial_response is not None and _rust_trim(self.partial_response):
            out.append("\n--- Partial Response ---\n")
            out.append(visible(self.partial_response, multiline=True))
        return "".join(out)


#: respond_permission / respond_question return the run output (they keep monitoring the session).
RespondPermissionOutput = RunOutput
RespondQuestionOutput = RunOutput


# ================================================================================================
# Session status / tool state (internally tagged enums)
# ================================================================================================


class SessionStatusIdle(_Output):
    """``{"state": "idle"}``: the session is not working (also used for a missing status entry)."""

    state: Literal["idle"] = "idle"


class SessionStatusBusy(_Output):
    """``{"state": "busy"}``: the session is working on a turn."""

    state: Literal["busy"] = "busy"


class SessionStatusRetry(_Output):
    """``{"state": "retry", ...}``: the provider failed and OpenCode will retry at ``next`` (ms)."""

    state: Literal["retry"] = "retry"
    attempt: int
    message: str
    next: int


#: Serde's ``#[serde(tag = "state")]`` enum: one of the three classes above, told apart by ``state``.
#: The schema is given by hand (see ``_EXTRA_DEFS``) so it matches the reference's ``oneOf`` shape.
SessionStatusSummary = Annotated[
    SessionStatusIdle | SessionStatusBusy | SessionStatusRetry,
    Field(discriminator="state"),
    WithJsonSchema({"x-def": "SessionStatusSummary"}),
]


class ToolStatePending(_Output):
    """``{"status": "pending"}`` (also used for a missing or unrecognized tool state)."""

    status: Literal["pending"] = "pending"


class ToolStateRunning(_Output):
    """``{"status": "running"}``."""

    status: Literal["running"] = "running"


class ToolStateCompleted(_Output):
    """``{"status": "completed"}``."""

    status: Literal["completed"] = "completed"


class ToolStateError(_Output):
    """``{"status": "error", "message": ...}`` with the tool's error text."""

    status: Literal["error"] = "error"
    message: str


#: Serde's ``#[serde(tag = "status")]`` enum of a tool call's state.
ToolStateSummary = Annotated[
    ToolStatePending | ToolStateRunning | ToolStateCompleted | ToolStateError,
    Field(discriminator="status"),
    WithJsonSchema({"x-def": "ToolStateSummary"}),
]


def _status_word(status: SessionStatusIdle | SessionStatusBusy | SessionStatusRetry | None) -> str:
    return "unknown" if status is None else status.state


# ================================================================================================
# list_sessions
# ================================================================================================


class ListSessionsInput(_Input):
    """Arguments of ``list_sessions``."""

    schema_description: ClassVar[str | None] = "Input for the `list_sessions` tool."

    # Capped at u64::MAX like the reference's usize, so a huge integer cannot slip through and later
    # break printing or logging of the request (Python refuses to str() ints over 4300 digits).
    limit: Annotated[StrictInt, Field(ge=0, le=_U64_MAX)] | None = Field(
        default=None, description="Maximum number of sessions to return (default: 20)"
    )

    def effective_limit(self) -> int:
        """``limit`` with the default applied (20; ``0`` means an empty list, as in the reference)."""
        return DEFAULT_LIST_LIMIT if self.limit is None else self.limit


def _empty_path_is_absent(value: object) -> object:
    # OpenCode 1.18.33 always sends `path: ""`; the reference printed a blank `Path:` line and put
    # `"path": ""` into JSON. We treat "" as "no path" everywhere (spec §8.2.4 porting note).
    return None if value == "" else value


class ChangeStats(_Output):
    """Lines added/removed and files touched, from the session's ``summary``."""

    schema_description: ClassVar[str | None] = "File change statistics from a session summary."

    additions: int = _u64()
    deletions: int = _u64()
    files: int = _u64()


class SessionSummary(_Output):
    """One row of ``list_sessions``.

    Timestamps are OpenCode's, i.e. milliseconds since the epoch (the reference's doc comment said
    "Unix timestamp"; the descriptions here say which unit so callers do not have to guess).
    ``path == ""`` is normalized to ``None`` (absent) at construction.
    """

    schema_description: ClassVar[str | None] = "Summary of a single session."

    id: str = Field(description="Session ID")
    title: str = Field(description="Session title")
    updated: Annotated[int | None, OMIT_IF_NONE] = Field(
        default=None, description="Unix timestamp of last update (milliseconds)"
    )
    created: Annotated[int | None, OMIT_IF_NONE] = Field(
        default=None, description="Unix timestamp of creation (milliseconds)"
    )
    directory: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None, description="Session working directory"
    )
    path: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None, description="Project-relative session path"
    )
    status: Annotated[SessionStatusSummary | None, OMIT_IF_NONE] = Field(
        default=None, description="Current session status"
    )
    change_stats: Annotated[ChangeStats | None, OMIT_IF_NONE] = Field(
        default=None, description="File change statistics"
    )
    launched_by_you: bool = Field(
        description="True when the current cached orchestrator server instance created this session.\n"
        "Resets after a full embedded-server rebuild."
    )

    _normalize_path = field_validator("path", mode="before")(_empty_path_is_absent)


class ListSessionsOutput(_Output):
    """Result of ``list_sessions``."""

    schema_description: ClassVar[str | None] = "Output from the `list_sessions` tool."

    sessions: list[SessionSummary] = Field(description="List of sessions")

    def text(self, now_ms: int | None = None) -> str:
        """The §1.4 ``list_sessions`` text.

        ``now_ms`` (default: the wall clock) is the reference point of the "time ago" column; ages
        are computed from *millisecond* timestamps (fix of §10.2) and an absent or empty ``path``
        prints no ``Path:`` line.
        """
        out = [f"Sessions ({len(self.sessions)}):\n"]
        for s in self.sessions:
            age = "unknown" if s.updated is None else format_time_ago(s.updated, now_ms)
            launched = " [launched by you]" if s.launched_by_you else ""
            out.append(f"  {_shown(s.id)} - {_shown(s.title)} ({age}, {_status_word(s.status)}){launched}\n")
            if s.path:
                out.append(f"    Path: {_shown(s.path)}\n")
        if not self.sessions:
            out.append("  (no sessions found)\n")
        return "".join(out)


# ================================================================================================
# get_session_state
# ================================================================================================


class GetSessionStateInput(_Input):
    """Arguments of ``get_session_state``."""

    schema_description: ClassVar[str | None] = "Input for the `get_session_state` tool."

    session_id: StrictStr = Field(description="The session ID to inspect.")


class ToolCallSummary(_Output):
    """One of the (up to 10) most recent tool calls of a session; times are OpenCode's ms."""

    schema_description: ClassVar[str | None] = "Summary of a recent tool call in a session."

    call_id: str
    tool_name: str
    state: ToolStateSummary
    started_at: Annotated[int | None, OMIT_IF_NONE] = None
    completed_at: Annotated[int | None, OMIT_IF_NONE] = None


class GetSessionStateOutput(_Output):
    """Result of ``get_session_state``. ``path == ""`` is normalized to ``None`` (absent)."""

    schema_description: ClassVar[str | None] = "Detailed session state output."

    session_id: str
    title: str
    directory: Annotated[str | None, OMIT_IF_NONE] = None
    path: Annotated[str | None, OMIT_IF_NONE] = None
    status: SessionStatusSummary
    launched_by_you: bool = Field(
        description="True when the current cached orchestrator server instance created this session.\n"
        "Resets after a full embedded-server rebuild."
    )
    pending_message_count: int = _u64("Number of pending messages awaiting an assistant reply.")
    last_activity: Annotated[int | None, OMIT_IF_NONE] = Field(
        default=None, description="Unix timestamp of the latest activity (milliseconds)."
    )
    recent_tool_calls: list[ToolCallSummary] = Field(description="Recent tool calls, most recent first.")

    _normalize_path = field_validator("path", mode="before")(_empty_path_is_absent)

    def text(self, now_ms: int | None = None) -> str:
        """The §1.4 ``get_session_state`` text (ms-based "Last activity", no empty ``Path:`` line)."""
        out = [f"Session: {_shown(self.session_id)} ({_shown(self.title)})\n"]
        if self.directory is not None:
            out.append(f"  Directory: {_shown(self.directory)}\n")
        if self.path:
            out.append(f"  Path: {_shown(self.path)}\n")
        status = self.status
        if isinstance(status, SessionStatusRetry):
            status_str = f"Retry (attempt {status.attempt}, next at {status.next}, reason: {_shown(status.message)})"
        else:
            status_str = "Busy" if isinstance(status, SessionStatusBusy) else "Idle"
        out.append(f"  Status: {status_str}\n")
        out.append(f"  Launched by you: {_rust_bool(self.launched_by_you)}\n")
        out.append(f"  Pending messages: {self.pending_message_count}\n")
        if self.last_activity is not None:
            out.append(f"  Last activity: {format_time_ago(self.last_activity, now_ms)}\n")
        if self.recent_tool_calls:
            out.append("  Recent tool calls:\n")
            for call in self.recent_tool_calls:
                state = call.state
                state_str = f"error: {_shown(state.message)}" if isinstance(state, ToolStateError) else state.status
                out.append(f"    {_shown(call.call_id)} ({_shown(call.tool_name)}) - {state_str}\n")
        return "".join(out)


# ================================================================================================
# list_commands
# ================================================================================================


class ListCommandsInput(_Input):
    """Arguments of ``list_commands`` (none; extra fields are ignored)."""

    schema_description: ClassVar[str | None] = "Input for the `list_commands` tool."


class CommandInfo(_Output):
    """One OpenCode command (allowed by the command policy) that ``run(command=...)`` can execute."""

    schema_description: ClassVar[str | None] = "Information about an available command."

    name: str = Field(description="Command name")
    description: Annotated[str | None, OMIT_IF_NONE] = Field(default=None, description="Command description")


class ListCommandsOutput(_Output):
    """Result of ``list_commands``."""

    schema_description: ClassVar[str | None] = "Output from the `list_commands` tool."

    commands: list[CommandInfo] = Field(description="List of available commands")

    def text(self) -> str:
        """The §1.4 ``list_commands`` text: one line per command with its description's first line."""
        out = ["Available commands:\n"]
        for cmd in self.commands:
            line = f"  {_shown(cmd.name)}"
            first = _first_line(cmd.description) if cmd.description is not None else None
            if first is not None:
                line += f" - {_shown(first)}"
            out.append(line + "\n")
        if not self.commands:
            out.append("  (no commands available)\n")
        out.append("\nUse orchestrator_run(command=<name>, message=<args>) to execute\n")
        return "".join(out)


# ================================================================================================
# respond_permission / respond_question
# ================================================================================================


class PermissionReply(StrEnum):
    """How to answer a permission request (OpenCode's reply values)."""

    ONCE = "once"
    ALWAYS = "always"
    REJECT = "reject"


class QuestionAction(StrEnum):
    """Answer a question request (``reply``) or dismiss it (``reject``)."""

    REPLY = "reply"
    REJECT = "reject"


class RespondPermissionInput(_Input):
    """Arguments of ``respond_permission``."""

    schema_description: ClassVar[str | None] = "Input for the `respond_permission` tool."

    session_id: StrictStr = Field(description="Session ID with pending permission")
    permission_request_id: StrictStr | None = Field(
        default=None,
        description="Permission request ID to respond to (returned by `run` when "
        "`status=permission_required`).\n"
        "Recommended when present to avoid replying to the wrong request.",
    )
    reply: PermissionReply = Field(description='How to respond: "once", "always", or "reject"')
    message: StrictStr | None = Field(default=None, description="Optional message to include with reply")


class RespondQuestionInput(_Input):
    """Arguments of ``respond_question``.

    The reference has no doc comments on these fields; the descriptions below are ours, because an
    undocumented ``answers`` shape is the most common way for an agent to get this call wrong.
    ``answers: null`` is accepted as ``[]`` (the reference rejected it); with ``action=reply`` the
    run logic then reports "answers is required when action=reply", which is the clearer message.
    """

    schema_description: ClassVar[str | None] = "Input for the `respond_question` tool."

    session_id: StrictStr = Field(description="Session ID with the pending question")
    question_request_id: StrictStr | None = Field(
        default=None,
        description="Question request ID to respond to (returned by `run` when "
        "`status=question_required`).\n"
        "Recommended when present to avoid replying to the wrong request.",
    )
    action: QuestionAction = Field(
        description='"reply" to answer the questions, or "reject" to dismiss the request'
    )
    answers: list[list[StrictStr]] = Field(
        default=[],
        description="Answers when action=reply: one list of selected option labels (or custom text) "
        "per question, in question order",
    )

    @field_validator("answers", mode="before")
    @classmethod
    def _null_answers_are_empty(cls, value: object) -> object:
        return [] if value is None else value


#: Input and output model of each tool, keyed by tool name (for the MCP adapter and the tests).
TOOL_MODELS: dict[str, tuple[type[_Input], type[_Output]]] = {
    "run": (RunInput, RunOutput),
    "list_sessions": (ListSessionsInput, ListSessionsOutput),
    "get_session_state": (GetSessionStateInput, GetSessionStateOutput),
    "list_commands": (ListCommandsInput, ListCommandsOutput),
    "respond_permission": (RespondPermissionInput, RunOutput),
    "respond_question": (RespondQuestionInput, RunOutput),
}


# ================================================================================================
# Text helpers
# ================================================================================================

# Rust's `str::trim` strips Unicode White_Space; Python's `str.strip()` also strips \x1c-\x1f.
_RUST_WHITESPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _shown(value: str) -> str:
    """A model-controlled string on one line of the text output: escapes for controls and newlines."""
    return visible(value)


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


def format_time_ago(timestamp_ms: int, now_ms: int | None = None) -> str:
    """Age of an OpenCode timestamp: ``just now`` / ``<n>m ago`` / ``<n>h ago`` / ``<n>d ago``.

    OpenCode timestamps are **milliseconds** since the epoch. The reference treated them as seconds,
    so every age read "just now" against a real server (§10.2); here the difference is computed in
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


def render_text(output: BaseModel, now_ms: int | None = None) -> str:
    """The text content of a tool result for any of the output models (see each ``.text()``)."""
    if isinstance(output, RunOutput | ListCommandsOutput):
        return output.text()
    if isinstance(output, ListSessionsOutput | GetSessionStateOutput):
        return output.text(now_ms)
    raise TypeError(f"no text rendering for {type(output).__name__}")


# ================================================================================================
# Input parsing
# ================================================================================================

M = TypeVar("M", bound=BaseModel)

#: What a field expects, in words, for error messages (defaults by pydantic error type otherwise).
_EXPECTED_BY_FIELD: dict[str, str] = {
    "limit": "a non-negative integer",
    "wait_for_activity": "a boolean (true or false)",
    "answers": 'an array of string arrays, one per question (e.g. [["yes"]])',
    "answers[]": "an array of strings (the selected option labels)",
}
_EXPECTED_BY_TYPE: dict[str, str] = {
    "string_type": "a string",
    "bool_type": "a boolean (true or false)",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "list_type": "an array",
    "dict_type": "an object",
    "model_type": "an object",
}


def parse_input(model: type[M], arguments: object) -> M:
    """Validate a tool's raw JSON arguments into ``model``; any problem becomes :class:`InvalidInput`.

    * ``None`` (a ``tools/call`` without ``arguments``) counts as ``{}``.
    * Anything but a JSON object is rejected with the type that was sent.
    * Field errors are reported in serde's spirit, one per problem, joined by ``"; "``:
      ``missing field `session_id```,
      ``invalid value for `reply`: unknown variant `maybe`, expected one of `once`, `always`, `reject```,
      ``invalid type for `limit`: expected a non-negative integer, got "abc"``.
    * Unknown extra fields are ignored.

    Never raises anything but ``InvalidInput``, whatever the value (deeply nested junk, huge
    integers, NaN, ...): the MCP adapter relies on that to answer with a tool error instead of a crash.
    """
    try:
        if arguments is None:
            arguments = {}
        if isinstance(arguments, Mapping) and not isinstance(arguments, dict):
            arguments = dict(arguments)
        if not isinstance(arguments, dict):
            raise InvalidInput(
                f"invalid type: expected the tool arguments as a JSON object, got {_describe(arguments)}"
            )
        try:
            return model.model_validate(arguments)
        except ValidationError as exc:
            problems = [_explain(model, err) for err in exc.errors(include_url=False)]
            raise InvalidInput("; ".join(dict.fromkeys(problems)) or "invalid arguments") from None
    except InvalidInput:
        raise
    except Exception as exc:  # the contract is "only InvalidInput", whatever goes wrong in between
        raise InvalidInput(f"invalid arguments ({type(exc).__name__})") from None


def _loc_text(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _enum_choices(model: type[BaseModel], field: str) -> list[str] | None:
    info = model.model_fields.get(field)
    annotation = info.annotation if info is not None else None
    if isinstance(annotation, type) and issubclass(annotation, StrEnum):
        return [member.value for member in annotation]
    return None


def _explain(model: type[BaseModel], err: Any) -> str:
    loc: tuple[int | str, ...] = tuple(err.get("loc", ()))
    field = loc[0] if loc and isinstance(loc[0], str) else ""
    where = _loc_text(loc) or "arguments"
    kind = err.get("type", "")
    value = err.get("input")
    choices = _enum_choices(model, field) if len(loc) == 1 else None
    one_of = ", ".join(f"`{c}`" for c in choices) if choices else ""

    if kind == "missing":
        hint = f" (one of {one_of})" if one_of else ""
        return f"missing field `{where}`{hint}"
    if kind == "enum" and choices is not None:
        if isinstance(value, str):
            return f"invalid value for `{where}`: unknown variant `{value}`, expected one of {one_of}"
        return f"invalid type for `{where}`: expected one of {one_of}, got {_describe(value)}"
    if kind in ("greater_than_equal", "greater_than"):
        expected = _EXPECTED_BY_FIELD.get(field, "a larger number")
        return f"invalid value for `{where}`: expected {expected}, got {_describe(value)}"
    if kind in ("less_than_equal", "less_than"):
        bound = (err.get("ctx") or {}).get("le", (err.get("ctx") or {}).get("lt"))
        return (
            f"invalid value for `{where}`: expected a number no larger than {bound}, got {_describe(value)}"
        )

    nested_key = f"{field}[]" if len(loc) == 2 else None
    expected = (
        (_EXPECTED_BY_FIELD.get(nested_key) if nested_key else None)
        or (_EXPECTED_BY_FIELD.get(field) if len(loc) == 1 else None)
        or _EXPECTED_BY_TYPE.get(kind)
    )
    if expected is not None:
        return f"invalid type for `{where}`: expected {expected}, got {_describe(value)}"
    return f"invalid value for `{where}`: {err.get('msg', 'invalid')}"


def _describe(value: object) -> str:
    """A short JSON-ish rendering of an offending value for error messages (never raises)."""
    try:
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            digits = abs(value).bit_length() * 0.30103
            return "an integer too large to show" if digits > 60 else str(value)
        if isinstance(value, float):
            if math.isnan(value):
                return "NaN"
            if math.isinf(value):
                return "Infinity" if value > 0 else "-Infinity"
            return repr(value)
        if isinstance(value, str):
            shown = value if len(value) <= 60 else value[:60] + "…"
            escaped = shown.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            return f'"{escaped}"'
        if isinstance(value, list | tuple):
            return "an array"
        if isinstance(value, Mapping):
            return "an object"
        return f"a value of type {type(value).__name__}"
    except Exception:
        return "an unreadable value"


# ================================================================================================
# JSON schemas
# ================================================================================================

#: Hand-written ``$defs`` for the internally tagged enums (pydantic's discriminated-union schema has
#: ``$ref`` indirections, defaults on the tag and an OpenAPI ``discriminator`` keyword).
_EXTRA_DEFS: dict[str, dict[str, Any]] = {
    "SessionStatusSummary": {
        "description": "Session status summary for list/detail views.",
        "oneOf": [
            {
                "type": "object",
                "properties": {"state": {"type": "string", "const": "idle"}},
                "required": ["state"],
            },
            {
                "type": "object",
                "properties": {"state": {"type": "string", "const": "busy"}},
                "required": ["state"],
            },
            {
                "type": "object",
                "properties": {
                    "state": {"type": "string", "const": "retry"},
                    "attempt": {"type": "integer", "minimum": 0},
                    "message": {"type": "string"},
                    "next": {
                        "description": "Unix timestamp (ms) of next retry attempt.",
                        "type": "integer",
                        "minimum": 0,
                    },
                },
                "required": ["state", "attempt", "message", "next"],
            },
        ],
    },
    "ToolStateSummary": {
        "description": "Simplified tool state for session diagnostics.",
        "oneOf": [
            *(
                {
                    "type": "object",
                    "properties": {"status": {"type": "string", "const": name}},
                    "required": ["status"],
                }
                for name in ("pending", "running", "completed")
            ),
            {
                "type": "object",
                "properties": {
                    "status": {"type": "string", "const": "error"},
                    "message": {"type": "string"},
                },
                "required": ["status", "message"],
            },
        ],
    },
}

_KEY_ORDER = (
    "$schema",
    "$ref",
    "description",
    "type",
    "const",
    "enum",
    "minimum",
    "items",
    "properties",
    "required",
    "oneOf",
    "anyOf",
    "default",
    "$defs",
)


def input_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The MCP ``inputSchema`` of a tool input model (a fresh copy; callers may mutate it).

    Draft 2020-12, object-rooted; optional fields are nullable with ``"null"`` first in ``type``
    and carry the "Optional; omit or use null." hint; ``answers`` stays non-nullable with its ``[]``
    default; enums are inline string enums; no ``title`` keywords.
    """
    return copy.deepcopy(_schema(model, output=False))


def output_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The MCP ``outputSchema`` of a tool output model (same conventions; ``default`` keys dropped,
    since defaults say nothing about what the server sends)."""
    return copy.deepcopy(_schema(model, output=True))


@functools.cache
def _schema(model: type[BaseModel], output: bool) -> dict[str, Any]:
    raw = model.model_json_schema(mode="validation", ref_template="#/$defs/{model}")
    defs: dict[str, Any] = raw.pop("$defs", {})
    enums = {name: d for name, d in defs.items() if "enum" in d}
    classes = {cls.__name__: cls for cls in _all_models()}
    used_extra: set[str] = set()

    def clean(node: Any) -> Any:
        if isinstance(node, list):
            return [clean(item) for item in node]
        if not isinstance(node, dict):
            return node
        node = dict(node)
        node.pop("title", None)
        node.pop("discriminator", None)
        if output:
            node.pop("default", None)
        if "x-def" in node:
            name = node.pop("x-def")
            used_extra.add(name)
            node = {"$ref": f"#/$defs/{name}", **node}
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.rsplit("/", 1)[-1] in enums:
            enum_def = enums[ref.rsplit("/", 1)[-1]]
            del node["$ref"]
            node = {"type": "string", "enum": list(enum_def["enum"]), **node}
        if "anyOf" in node:
            node = _collapse_nullable(node, [clean(b) for b in node["anyOf"]])
        if isinstance(node.get("properties"), dict):
            required = set(node.get("required", ()))
            props: dict[str, Any] = {}
            for key, value in node["properties"].items():
                value = clean(value)
                if key not in required and _allows_null(value):
                    description = value.get("description")
                    value["description"] = (
                        f"{description}\n\n{OPTIONAL_PROPERTY_GUIDANCE}"
                        if description
                        else OPTIONAL_PROPERTY_GUIDANCE
                    )
                    value = _ordered(value)
                props[key] = value
            node["properties"] = props
        for key in ("items", "additionalProperties", "oneOf", "allOf"):
            if key in node:
                node[key] = clean(node[key])
        return _ordered(node)

    root = clean(raw)
    root.pop("description", None)
    out_defs: dict[str, Any] = {}
    for name, definition in defs.items():
        if name in enums:
            continue
        cleaned = clean(definition)
        cleaned.pop("description", None)
        described = getattr(classes.get(name), "schema_description", None)
        if described:
            cleaned = {"description": described, **cleaned}
        out_defs[name] = _ordered(cleaned)
    for name in sorted(used_extra):
        out_defs[name] = copy.deepcopy(_EXTRA_DEFS[name])

    result: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT}
    described = getattr(model, "schema_description", None)
    if described:
        result["description"] = described
    result.update(root)
    result.setdefault("type", "object")
    result.setdefault("properties", {})
    if out_defs:
        result["$defs"] = dict(sorted(out_defs.items()))
    return _ordered(result)


def _collapse_nullable(node: dict[str, Any], branches: list[Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` → ``type: ["null", X.type]`` when X is a plain typed schema,
    else ``anyOf`` with the null branch first (the reference's "null first" normalization)."""
    null = {"type": "null"}
    others = [b for b in branches if b != null]
    has_null = len(others) != len(branches)
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    if has_null and len(others) == 1:
        only = others[0]
        simple = (
            isinstance(only, dict)
            and isinstance(only.get("type"), str)
            and not ({"$ref", "anyOf", "oneOf", "allOf"} & only.keys())
        )
        if simple:
            merged = dict(only)
            merged["type"] = ["null", only["type"]]
            if "enum" in merged:
                merged["enum"] = [None, *merged["enum"]]
            merged.update(rest)
            return merged
    return {**rest, "anyOf": ([null] if has_null else []) + others}


def _allows_null(schema: Any) -> bool:
    if not isinstance(schema, dict):
        return False
    types = schema.get("type")
    if isinstance(types, list) and "null" in types:
        return True
    if isinstance(schema.get("enum"), list) and None in schema["enum"]:
        return True
    return any(branch == {"type": "null"} for branch in schema.get("anyOf", ()))


def _ordered(node: dict[str, Any]) -> dict[str, Any]:
    rank = {key: index for index, key in enumerate(_KEY_ORDER)}
    return dict(sorted(node.items(), key=lambda item: rank.get(item[0], len(rank))))


def _all_models() -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for value in globals().values():
        if isinstance(value, type) and issubclass(value, _Input | _Output):
            found.append(value)
    return found


__all__ = [
    "DEFAULT_LIST_LIMIT",
    "JSON_SCHEMA_DIALECT",
    "OPTIONAL_PROPERTY_GUIDANCE",
    "TOOL_MODELS",
    "TOOL_NAMES",
    "ChangeStats",
    "CommandInfo",
    "GetSessionStateInput",
    "GetSessionStateOutput",
    "ListCommandsInput",
    "ListCommandsOutput",
    "ListSessionsInput",
    "ListSessionsOutput",
    "PermissionReply",
    "QuestionAction",
    "QuestionInfoView",
    "QuestionOptionView",
    "RespondPermissionInput",
    "RespondPermissionOutput",
    "RespondQuestionInput",
    "RespondQuestionOutput",
    "RunInput",
    "RunOutput",
    "RunStatus",
    "SessionStatusBusy",
    "SessionStatusIdle",
    "SessionStatusRetry",
    "SessionStatusSummary",
    "SessionSummary",
    "ToolCallSummary",
    "ToolStateCompleted",
    "ToolStateError",
    "ToolStatePending",
    "ToolStateRunning",
    "ToolStateSummary",
    "format_time_ago",
    "input_schema",
    "output_schema",
    "parse_input",
    "render_text",
]
