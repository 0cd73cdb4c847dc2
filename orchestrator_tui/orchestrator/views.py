"""OpenCode's objects as the agent's contract shows them, each mapped in one place.

A pending permission or question becomes a run's output (``permission_required``,
``question_required``), a session status its summary, a session's tool calls the recent-calls
list of ``get_session_state``. From :mod:`~orchestrator_tui.opencode.models` in, to the output
models of :mod:`~orchestrator_tui.orchestrator.types` out; nothing here talks to OpenCode.
"""

from __future__ import annotations

from orchestrator_tui.opencode.models import Message, PermissionRequest, QuestionRequest, SessionStatus
from orchestrator_tui.orchestrator import types as t

#: How many tool calls ``get_session_state`` shows.
RECENT_TOOL_CALLS = 10


def permission_output(session_id: str, req: PermissionRequest, partial: str = "", warnings=()) -> t.RunOutput:
    """A run stopped at a pending permission: what it asks, and the reply streamed so far."""
    return t.RunOutput(
        session_id=session_id,
        status=t.RunStatus.PERMISSION_REQUIRED,
        permission_request_id=req.id,
        permission_type=req.permission,
        permission_patterns=list(req.patterns),
        partial_response=partial or None,
        warnings=list(warnings),
    )


def question_output(session_id: str, req: QuestionRequest, partial: str = "", warnings=()) -> t.RunOutput:
    """A run stopped at a pending question: its questions and options, and the reply so far."""
    return t.RunOutput(
        session_id=session_id,
        status=t.RunStatus.QUESTION_REQUIRED,
        question_request_id=req.id,
        questions=[
            t.QuestionInfoView(
                question=q.question,
                header=q.header or "",
                options=[t.QuestionOptionView(label=o.label, description=o.description or "") for o in q.options],
                multiple=bool(q.multiple),
                custom=True if q.custom is None else bool(q.custom),
            )
            for q in req.questions
        ],
        partial_response=partial or None,
        warnings=list(warnings),
    )


def status_summary(status: SessionStatus | None) -> t.SessionStatusIdle | t.SessionStatusBusy | t.SessionStatusRetry:
    """Map an OpenCode status; a missing entry is idle, an unknown type is busy-like (0.7.x)."""
    if status is None or status.type == "idle":
        return t.SessionStatusIdle()
    if status.type == "retry":
        return t.SessionStatusRetry(attempt=status.attempt or 0, message=status.message or "", next=status.next or 0)
    return t.SessionStatusBusy()


#: The error a tool call shows when its turn stopped before it ended (its server went away).
INTERRUPTED_TOOL = "interrupted: OpenCode stopped before this tool call ended (the server was restarted)"


def tool_calls_of(
    messages: list[Message], limit: int = RECENT_TOOL_CALLS, *, interrupted: str | None = None
) -> list[t.ToolCallSummary]:
    """Newest first: messages newest→oldest, parts last→first.

    ``interrupted``: the id of a message whose turn died unfinished (:func:`interrupted_reply`);
    its tool calls still "running" or "pending" will never end, and are shown as errors saying so.
    """
    calls: list[t.ToolCallSummary] = []
    for message in reversed(messages):
        for part in reversed(message.parts):
            if part.type != "tool":
                continue
            state = part.state
            status = state.status if state is not None else "pending"
            if message.info.id == interrupted and status in ("running", "pending"):
                start = state.time.start if state is not None and state.time is not None else None
                calls.append(
                    t.ToolCallSummary(
                        call_id=part.callID or part.id or "",
                        tool_name=part.tool or "",
                        state=t.ToolStateError(message=INTERRUPTED_TOOL),
                        started_at=start,
                        completed_at=None,
                    )
                )
                if len(calls) >= limit:
                    return calls
                continue
            start = state.time.start if state is not None and state.time is not None else None
            end = state.time.end if state is not None and state.time is not None else None
            if status == "running":
                summary: t.ToolStateSummary = t.ToolStateRunning()
                started, completed = start, None
            elif status == "completed":
                summary = t.ToolStateCompleted()
                started, completed = start, end
            elif status == "error":
                summary = t.ToolStateError(message=(state.error if state else None) or "")
                started, completed = start, end
            else:
                summary = t.ToolStatePending()
                started = completed = None
            calls.append(
                t.ToolCallSummary(
                    call_id=part.callID or part.id or "",
                    tool_name=part.tool or "",
                    state=summary,
                    started_at=started,
                    completed_at=completed,
                )
            )
            if len(calls) >= limit:
                return calls
    return calls
