"""The tool catalogue: names, descriptions and I/O models of the seven tools, in one place.

Adapters (MCP today) build their tool listings from this table, so a tool's name,
description and schemas cannot drift between the listing and the dispatcher. Names, order and
descriptions are the Rust reference's (0.7.10) word for word: agents written against it read
the same listing.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from orchestrator_tui.orchestrator import types as t

RUN_DESCRIPTION = """Start or resume an OpenCode session. Optionally run a named command or send a raw prompt.

Returns when:
- status=completed: Session finished executing. Response contains final assistant output.
- status=permission_required: Session needs permission approval. Call respond_permission to continue.
- status=question_required: Session needs question answers. Call respond_question to continue.

Parameters:
- session_id: Existing session to resume (omit to create new)
- command: OpenCode command name (e.g., "research", "implement_plan")
- agent: Explicit agent for raw-prompt execution only. Invalid with command.
- message: Prompt text or $ARGUMENTS for command template

Examples:
- New session with prompt: run(message="explain this code")
- New session with prompt and agent: run(message="explain this code", agent="Plan")
- New session with command: run(command="research", message="caching strategies")
- Resume session: run(session_id="...", message="continue")
- Check status: run(session_id="...")"""

RESPOND_PERMISSION_DESCRIPTION = """Respond to a permission request from an OpenCode session.

After responding, continues monitoring the session and returns when complete or when another permission is required.

Parameters:
- session_id: Session with pending permission
- reply: "once" (allow this request), "always" (allow for matching patterns), or "reject" (deny)
- message: Optional message to include with reply"""

RESPOND_QUESTION_DESCRIPTION = """Respond to a question request from an OpenCode session.

After replying, continues monitoring the session and returns when complete or when another interruption is required.

Parameters:
- session_id: Session with pending question
- action: "reply" or "reject"
- answers: Required when action=reply; one list per question"""

LIST_AGENTS_DESCRIPTION = "List available visible OpenCode agents that can be used with run(message=..., agent=...)."


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
        ToolSpec("list_agents", LIST_AGENTS_DESCRIPTION, t.ListAgentsInput, t.ListAgentsOutput),
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
