"""The agent's contract: the input and output models of the seven tools, as the wire carries them.

Field names, which fields are omitted from JSON and which are always present follow the Rust
reference crate ``opencode-orchestrator-mcp`` 0.7.10, so an agent written against it reads the
same structured results. The contract's other parts each have their own module, all built on
these models: the text the agent reads (:mod:`~orchestrator_tui.orchestrator.render`, reached
through each output's ``.text()``), the parsing of its arguments with errors that name the fix
(:mod:`~orchestrator_tui.orchestrator.parsing`) and the JSON schemas of ``tools/list``
(:mod:`~orchestrator_tui.orchestrator.schema`). Transport-free: no HTTP, no MCP.

* **Inputs** are strict (a string field never accepts ``5``, a boolean never ``"true"``) because
  the reference deserializes with serde, which rejects such values; unknown extra fields are
  ignored, as serde does.
* **Outputs** are plain models built by the run logic. ``model_dump(mode="json")`` (and
  ``to_json()``) omits exactly the fields the reference skips (``None`` options, empty
  lists/strings marked ``skip_serializing_if``) and keeps the always-present ones, so structured
  results match the reference byte for byte. ``schema_description`` carries the reference's doc
  comment of each type into its schema.

Import cost matters (the MCP worker must start fast): models use ``defer_build`` so their
validators are only built on first use, and this module deliberately does *not* use
``from __future__ import annotations`` (pydantic would then have to compile every annotation
string at class creation, about half the import time).
"""

import functools
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_serializer,
)

from orchestrator_tui.orchestrator import render

#: ``list_sessions`` returns at most this many sessions when ``limit`` is omitted (the reference's default).
DEFAULT_LIST_LIMIT = 20

_U64_MAX = 2**64 - 1

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
    """Arguments of ``run``. All optional; the run logic validates the combinations."""

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
    agent: StrictStr | None = Field(
        default=None,
        description="Explicit agent name for raw-prompt execution.\nUnsupported when `command` is provided.",
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

    def text(self, now_ms: int | None = None) -> str:
        """What the agent reads (``now_ms`` is unused: this text has no ages)."""
        return render.run_text(self)


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
    # `"path": ""` into JSON. We treat "" as "no path" everywhere.
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
    server: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None,
        description="The OpenCode server the session lives on (named only when the pool follows several)",
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
        """What the agent reads; ``now_ms`` (default: the wall clock) dates the ages."""
        return render.list_sessions_text(self, now_ms)


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
    server: Annotated[str | None, OMIT_IF_NONE] = Field(
        default=None,
        description="The OpenCode server the session lives on (named only when the pool follows several)",
    )
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
        """What the agent reads; ``now_ms`` (default: the wall clock) dates the last activity."""
        return render.session_state_text(self, now_ms)


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

    def text(self, now_ms: int | None = None) -> str:
        """What the agent reads (``now_ms`` is unused: this text has no ages)."""
        return render.list_commands_text(self)


# ================================================================================================
# list_agents
# ================================================================================================


class ListAgentsInput(_Input):
    """Arguments of ``list_agents`` (none; extra fields are ignored)."""

    schema_description: ClassVar[str | None] = "Input for the `list_agents` tool."


class AgentInfo(_Output):
    """One visible OpenCode agent (allowed by the agent policy) that ``run(agent=...)`` can use."""

    schema_description: ClassVar[str | None] = "Information about an available agent."

    name: str = Field(description="Agent name.")
    description: Annotated[str | None, OMIT_IF_NONE] = Field(default=None, description="Agent description.")


class ListAgentsOutput(_Output):
    """Result of ``list_agents``."""

    schema_description: ClassVar[str | None] = "Output from the `list_agents` tool."

    agents: list[AgentInfo] = Field(description="List of available visible agents.")

    def text(self, now_ms: int | None = None) -> str:
        """What the agent reads (``now_ms`` is unused: this text has no ages)."""
        return render.list_agents_text(self)


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
