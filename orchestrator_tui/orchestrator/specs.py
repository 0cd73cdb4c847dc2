"""The tool catalogue: names, descriptions and I/O models of the six tools, in one place.

Adapters (MCP today) build their tool listings from this table, so a tool's name,
description and schemas cannot drift between the listing and the dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from orchestrator_tui.orchestrator import types as t

RUN_DESCRIPTION = """Start or resume an OpenCode session, optionally running a named command or sending a raw prompt.

Returns when the session reaches one of these states:
- status=completed: the session finished; `response` holds the final assistant output.
- status=permission_required: the session is waiting for approval; call respond_permission.
- status=question_required: the session asked a question; call respond_question.

Parameters:
- session_id: an existing session to resume; omit to create a new session.
- command: an OpenCode command name (e.g. "research", "implement_plan"); `message` becomes its $ARGUMENTS.
- message: the prompt text (or the command's $ARGUMENTS); required for new work, omit for resume-only/status checks.

Examples:
- run(message="explain this code")
- run(command="research", message="caching strategies")
- run(session_id="...", message="continue")
- run(session_id="...")  (check status)"""

RESPOND_PERMISSION_DESCRIPTION = """Respond to a permission request of an OpenCode session.

After replying, keeps monitoring the session and returns when it completes or when another
permission or question is required (same output as run).

Parameters:
- session_id: the session with the pending permission.
- permission_request_id: the request to answer (returned by run); recommended.
- reply: "once" allows this request, "always" allows matching patterns from now on, "reject" denies it.
- message: optional text sent with the reply (with reject, it tells the agent why)."""

RESPOND_QUESTION_DESCRIPTION = """Respond to a question request of an OpenCode session.

After replying, keeps monitoring the session and returns when it completes or when another
interruption is required (same output as run).

Parameters:
- session_id: the session with the pending question.
- question_request_id: the request to answer (returned by run); recommended.
- action: "reply" answers the questions, "reject" dismisses them.
- answers: required when action=reply; one list of selected labels (or free text) per question."""


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_model: type[BaseModel]
    output_model: type[BaseModel]


TOOL_SPECS: dict[str, ToolSpec] = {
    spec.name: spec
    for spec in (
        ToolSpec("run", RUN_DESCRIPTION, t.RunInput, t.RunOutput),
        ToolSpec(
            "list_sessions",
            "List available OpenCode sessions in the current directory context.",
            t.ListSessionsInput,
            t.ListSessionsOutput,
        ),
        ToolSpec(
            "get_session_state",
            "Get detailed state of a specific session including status, pending messages, and recent tool calls.",
            t.GetSessionStateInput,
            t.GetSessionStateOutput,
        ),
        ToolSpec(
            "list_commands",
            "List available OpenCode commands that can be used with run.",
            t.ListCommandsInput,
            t.ListCommandsOutput,
        ),
        ToolSpec("respond_permission", RESPOND_PERMISSION_DESCRIPTION, t.RespondPermissionInput, t.RunOutput),
        ToolSpec("respond_question", RESPOND_QUESTION_DESCRIPTION, t.RespondQuestionInput, t.RunOutput),
    )
}
