"""Typed views of what OpenCode 1.18.33 returns over HTTP and SSE.

Every model keeps unknown fields (``extra="allow"``) and makes everything we do not strictly
need optional: OpenCode adds fields between releases, and a supervisor that crashes on a new
field is worse than one that ignores it. Events are a union discriminated on ``type`` with a
catch-all :class:`UnknownEvent`, so a new event family is carried along, never fatal.

Shapes are what 1.18.33 was seen to send (docs/opencode-behaviour.md lists what the code relies on);
timestamps are epoch milliseconds.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


# --------------------------------------------------------------------------- sessions


class TimeSpan(_Model):
    created: int | None = None
    updated: int | None = None
    completed: int | None = None


class ChangeSummary(_Model):
    additions: int = 0
    deletions: int = 0
    files: int = 0


class CacheTokens(_Model):
    read: int = 0
    write: int = 0


class Tokens(_Model):
    total: int | None = None
    input: int = 0
    output: int = 0
    reasoning: int = 0
    cache: CacheTokens = Field(default_factory=CacheTokens)


class Session(_Model):
    id: str
    title: str = ""
    directory: str | None = None
    path: str | None = None
    slug: str | None = None
    projectID: str | None = None
    parentID: str | None = None
    version: str | None = None
    time: TimeSpan = Field(default_factory=TimeSpan)
    summary: ChangeSummary | None = None
    cost: float | None = None
    tokens: Tokens | None = None
    agent: str | None = None


class SessionStatus(_Model):
    """One entry of ``GET /session/status`` (idle sessions are absent from that map).

    ``type`` stays a plain string: 0.7.x of the reference learned the hard way that a future
    status type must not break parsing.
    """

    type: str
    attempt: int | None = None
    message: str | None = None
    next: int | None = None


# --------------------------------------------------------------------------- messages


class ToolStateTime(_Model):
    start: int | None = None
    end: int | None = None


class ToolState(_Model):
    status: str = "pending"
    input: dict[str, Any] | None = None
    output: str | None = None
    title: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    time: ToolStateTime | None = None


class Part(_Model):
    """A message part. One flat model rather than a union: parts are read field by field,
    and new part types (``reasoning``, ``patch``, ...) must pass through untouched."""

    id: str | None = None
    type: str
    messageID: str | None = None
    sessionID: str | None = None
    text: str | None = None
    synthetic: bool | None = None
    tool: str | None = None
    callID: str | None = None
    state: ToolState | None = None
    reason: str | None = None
    tokens: Tokens | None = None
    cost: float | None = None


class MessageInfo(_Model):
    id: str
    sessionID: str | None = None
    role: str
    parentID: str | None = None
    time: TimeSpan = Field(default_factory=TimeSpan)
    modelID: str | None = None
    providerID: str | None = None
    tokens: Tokens | None = None
    cost: float | None = None
    finish: str | None = None
    error: dict[str, Any] | None = None


class Message(_Model):
    info: MessageInfo
    parts: list[Part] = Field(default_factory=list)


# --------------------------------------------------------------------------- requests


class ToolRef(_Model):
    messageID: str | None = None
    callID: str | None = None


class PermissionRequest(_Model):
    id: str
    sessionID: str
    permission: str
    patterns: list[str] = Field(default_factory=list)
    always: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None
    tool: ToolRef | None = None


class QuestionOption(_Model):
    label: str
    description: str = ""


class QuestionInfo(_Model):
    question: str
    header: str = ""
    options: list[QuestionOption] = Field(default_factory=list)
    multiple: bool = False
    custom: bool = True


class QuestionRequest(_Model):
    id: str
    sessionID: str
    questions: list[QuestionInfo] = Field(default_factory=list)
    tool: ToolRef | None = None


# --------------------------------------------------------------------------- misc


class Health(_Model):
    healthy: bool = False
    version: str | None = None


class Paths(_Model):
    """``GET /path`` of one instance (directory)."""

    home: str
    directory: str
    #: The git worktree root; ``/`` when the directory is not in a git repository.
    worktree: str


class Command(_Model):
    name: str
    description: str | None = None
    source: str | None = None
    agent: str | None = None
    template: str | None = None


# --------------------------------------------------------------------------- the /api routes
# OpenCode's `/api/` routes (opencode/client.py says which ones are used) answer other shapes,
# wrapped in `{"data": ...}`; these models read them and map them onto the ones above, so nothing
# past the client knows which routes answered. tests/test_opencode_contract.py checks them
# against the server's own OpenAPI document, like the models above.


class ApiLocation(_Model):
    directory: str
    workspaceID: str | None = None


class ApiSession(_Model):
    """``SessionV2Info``: a session as ``/api/session`` shows it."""

    id: str
    title: str = ""
    projectID: str | None = None
    parentID: str | None = None
    agent: str | None = None
    cost: float | None = None
    tokens: Tokens | None = None  # without `total` here, as on a legacy session
    time: TimeSpan = Field(default_factory=TimeSpan)
    location: ApiLocation
    #: The directory relative to the project's root (the legacy ``path``); absent at the root.
    subpath: str | None = None

    def to_session(self) -> Session:
        return Session(
            id=self.id,
            title=self.title,
            directory=self.location.directory,
            path=self.subpath or "",
            projectID=self.projectID,
            parentID=self.parentID,
            time=self.time,
            cost=self.cost,
            tokens=self.tokens,
            agent=self.agent,
        )


class ApiCursor(_Model):
    previous: str | None = None
    next: str | None = None


class ApiSessionPage(_Model):
    """``SessionsResponse`` of ``GET /api/session``."""

    data: list[ApiSession] = Field(default_factory=list)
    cursor: ApiCursor | None = None


class ApiSessionItem(_Model):
    """``{"data": SessionV2Info}`` of ``GET``/``POST /api/session[/{id}]``."""

    data: ApiSession


class Agent(_Model):
    """One entry of ``GET /agent``.

    1.18.33 sends every agent, its own internal ones too (``compaction``, ``title``, ``summary``:
    ``hidden: true``, no description); ``hidden`` and ``description`` are absent when unset.
    ``mode`` is ``primary``, ``subagent`` or ``all``; ``native`` marks OpenCode's built-ins.
    """

    name: str
    description: str | None = None
    mode: str | None = None
    hidden: bool | None = None
    native: bool | None = None


# --------------------------------------------------------------------------- events


class _Event(_Model):
    id: str | None = None


class _SessionInfoProps(_Model):
    sessionID: str | None = None
    info: Session


class SessionCreated(_Event):
    type: Literal["session.created"]
    properties: _SessionInfoProps


class SessionUpdated(_Event):
    type: Literal["session.updated"]
    properties: _SessionInfoProps


class SessionDeleted(_Event):
    type: Literal["session.deleted"]
    properties: _SessionInfoProps


class _StatusProps(_Model):
    sessionID: str
    status: SessionStatus


class SessionStatusEvent(_Event):
    type: Literal["session.status"]
    properties: _StatusProps


class _SessionProps(_Model):
    sessionID: str


class SessionIdle(_Event):
    type: Literal["session.idle"]
    properties: _SessionProps


class _ErrorProps(_Model):
    sessionID: str | None = None
    error: dict[str, Any] | None = None


class SessionError(_Event):
    type: Literal["session.error"]
    properties: _ErrorProps


class _MessageProps(_Model):
    sessionID: str | None = None
    info: MessageInfo


class MessageUpdated(_Event):
    type: Literal["message.updated"]
    properties: _MessageProps


class _MessageRemovedProps(_Model):
    sessionID: str
    messageID: str


class MessageRemoved(_Event):
    type: Literal["message.removed"]
    properties: _MessageRemovedProps


class _PartProps(_Model):
    sessionID: str | None = None
    part: Part
    time: int | None = None


class PartUpdated(_Event):
    type: Literal["message.part.updated"]
    properties: _PartProps


class _DeltaProps(_Model):
    sessionID: str
    messageID: str | None = None
    partID: str | None = None
    field: str | None = None
    delta: str | None = None


class PartDelta(_Event):
    type: Literal["message.part.delta"]
    properties: _DeltaProps


class PermissionAsked(_Event):
    type: Literal["permission.asked"]
    properties: PermissionRequest


class _RepliedProps(_Model):
    sessionID: str
    requestID: str
    reply: str | None = None
    answers: list[list[str]] | None = None


class PermissionReplied(_Event):
    type: Literal["permission.replied"]
    properties: _RepliedProps


class QuestionAsked(_Event):
    type: Literal["question.asked"]
    properties: QuestionRequest


class QuestionReplied(_Event):
    type: Literal["question.replied"]
    properties: _RepliedProps


class QuestionRejected(_Event):
    type: Literal["question.rejected"]
    properties: _RepliedProps


class UnknownEvent(_Event):
    """Any event type we do not model (heartbeats, plugin.added, sync, v2 families, ...)."""

    type: str
    properties: dict[str, Any] = Field(default_factory=dict)


_KNOWN_TYPES = frozenset(
    {
        "session.created",
        "session.updated",
        "session.deleted",
        "session.status",
        "session.idle",
        "session.error",
        "message.updated",
        "message.removed",
        "message.part.updated",
        "message.part.delta",
        "permission.asked",
        "permission.replied",
        "question.asked",
        "question.replied",
        "question.rejected",
    }
)


def _event_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in _KNOWN_TYPES else "unknown"


Event = Annotated[
    Annotated[SessionCreated, Tag("session.created")]
    | Annotated[SessionUpdated, Tag("session.updated")]
    | Annotated[SessionDeleted, Tag("session.deleted")]
    | Annotated[SessionStatusEvent, Tag("session.status")]
    | Annotated[SessionIdle, Tag("session.idle")]
    | Annotated[SessionError, Tag("session.error")]
    | Annotated[MessageUpdated, Tag("message.updated")]
    | Annotated[MessageRemoved, Tag("message.removed")]
    | Annotated[PartUpdated, Tag("message.part.updated")]
    | Annotated[PartDelta, Tag("message.part.delta")]
    | Annotated[PermissionAsked, Tag("permission.asked")]
    | Annotated[PermissionReplied, Tag("permission.replied")]
    | Annotated[QuestionAsked, Tag("question.asked")]
    | Annotated[QuestionReplied, Tag("question.replied")]
    | Annotated[QuestionRejected, Tag("question.rejected")]
    | Annotated[UnknownEvent, Tag("unknown")],
    Discriminator(_event_tag),
]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


class GlobalEnvelope(_Model):
    """``/global/event`` wraps each event with the directory (instance) it happened in."""

    directory: str | None = None
    project: str | None = None
    payload: Event


_ENVELOPE_ADAPTER: TypeAdapter[GlobalEnvelope] = TypeAdapter(GlobalEnvelope)


def _degrade(raw: object) -> Event:
    """A payload whose known ``type`` has an unexpected shape is kept as an UnknownEvent."""
    if not isinstance(raw, dict):
        raise ValueError("event payload is not a JSON object")
    props = raw.get("properties")
    ident = raw.get("id")
    return UnknownEvent(
        id=ident if isinstance(ident, str) else None,
        type=str(raw.get("type", "")),
        properties=props if isinstance(props, dict) else {},
    )


def parse_event(data: str | bytes) -> Event:
    """Parse one ``/event`` payload in a single pass (the hot path of the pool's ingest).

    Raises ``ValueError`` only when the payload is not a JSON object at all.
    """
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError:
        return _degrade(_loads(data))


def parse_global_event(data: str | bytes) -> tuple[str | None, Event]:
    """Parse one ``/global/event`` payload into (directory, event)."""
    try:
        env = _ENVELOPE_ADAPTER.validate_json(data)
        return env.directory, env.payload
    except ValidationError:
        raw = _loads(data)
        if isinstance(raw, dict) and isinstance(raw.get("payload"), dict):
            directory = raw.get("directory")
            try:
                event = EVENT_ADAPTER.validate_python(raw["payload"])
            except ValidationError:
                event = _degrade(raw["payload"])
            return (directory if isinstance(directory, str) else None), event
        return None, _degrade(raw)


def _loads(data: str | bytes) -> object:
    import json

    try:
        return json.loads(data)
    except ValueError as exc:
        raise ValueError(f"event payload is not JSON: {exc}") from exc


def event_session_id(event: Event) -> str | None:
    """The session an event belongs to, for every type that carries one."""
    if isinstance(event, UnknownEvent):
        sid = event.properties.get("sessionID")
        return sid if isinstance(sid, str) else None
    props = event.properties
    if isinstance(event, SessionCreated | SessionUpdated | SessionDeleted):
        return event.properties.info.id
    if isinstance(event, MessageUpdated):
        return event.properties.info.sessionID or event.properties.sessionID
    if isinstance(event, PartUpdated):
        return event.properties.sessionID or event.properties.part.sessionID
    return getattr(props, "sessionID", None)
