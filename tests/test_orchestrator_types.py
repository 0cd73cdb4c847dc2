"""The tools' wire contract: models, serde-compatible JSON, schemas, input errors, text renderings.

Ports the reference's ``src/types.rs`` and ``tools_are_short`` tests and pins the
exact texts of the results — full strings, not substrings, because agents parse these texts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from orchestrator_tui.orchestrator.errors import Cancelled, Internal, InvalidInput, ToolError
from orchestrator_tui.orchestrator.parsing import parse_input
from orchestrator_tui.orchestrator.render import format_time_ago, render_text
from orchestrator_tui.orchestrator.schema import input_schema, output_schema
from orchestrator_tui.orchestrator.specs import TOOL_SPECS
from orchestrator_tui.orchestrator.types import (
    DEFAULT_LIST_LIMIT,
    ChangeStats,
    CommandInfo,
    GetSessionStateInput,
    GetSessionStateOutput,
    ListCommandsInput,
    ListCommandsOutput,
    ListSessionsInput,
    ListSessionsOutput,
    PermissionReply,
    QuestionAction,
    QuestionInfoView,
    QuestionOptionView,
    RespondPermissionInput,
    RespondQuestionInput,
    RunInput,
    RunOutput,
    RunStatus,
    SessionStatusBusy,
    SessionStatusIdle,
    SessionStatusRetry,
    SessionSummary,
    ToolCallSummary,
    ToolStateCompleted,
    ToolStateError,
    ToolStatePending,
    ToolStateRunning,
)

SNAPSHOT = Path(__file__).parent / "snapshots" / "orchestrator_tool_schemas.json"

NOW_MS = 1_700_000_000_000
MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
TOOL_NAMES = tuple(TOOL_SPECS)
#: Input and output model of each tool, by name.
TOOL_MODELS = {name: (spec.input_model, spec.output_model) for name, spec in TOOL_SPECS.items()}


# ================================================================================================
# tool names, error display
# ================================================================================================


def test_tool_names_are_short() -> None:
    assert TOOL_NAMES == (
        "run",
        "list_sessions",
        "get_session_state",
        "list_agents",
        "list_commands",
        "respond_permission",
        "respond_question",
    )
    assert set(TOOL_MODELS) == set(TOOL_NAMES)


def test_tool_error_display_texts() -> None:
    assert str(InvalidInput("bad field")) == "invalid input: bad field"
    assert str(Internal("boom")) == "internal error: boom"
    assert str(Cancelled()) == "cancelled"
    assert str(Cancelled("client went away")) == "cancelled"
    assert InvalidInput("bad field").message == "bad field"
    assert Internal("boom").message == "boom"
    assert isinstance(InvalidInput("x"), ToolError)
    assert isinstance(Cancelled(), ToolError)
    assert [InvalidInput.kind, Internal.kind, Cancelled.kind] == ["invalid_input", "internal", "cancelled"]


# ================================================================================================
# ported reference tests (substring checks, as upstream)
# ================================================================================================


def test_run_output_text_format_completed() -> None:
    out = RunOutput(
        session_id="sess-123", status=RunStatus.COMPLETED, response="Task completed successfully."
    )
    text = out.text()
    assert "completed" in text
    assert "sess-123" in text
    assert "Task completed successfully" in text


def test_run_output_text_format_permission_required() -> None:
    out = RunOutput(
        session_id="sess-456",
        status=RunStatus.PERMISSION_REQUIRED,
        partial_response="Starting task...",
        permission_request_id="perm-789",
        permission_type="file.write",
        permission_patterns=["src/**/*.rs"],
    )
    text = out.text()
    for needle in (
        "permission_required",
        "sess-456",
        "file.write",
        "src/**/*.rs",
        "perm-789",
        "orchestrator_respond_permission",
        "permission_request_id",
    ):
        assert needle in text


def test_run_output_text_format_question_required() -> None:
    out = _question_output()
    text = out.text()
    for needle in (
        "question_required",
        "question-123",
        "Continue with deploy?",
        "orchestrator_respond_question",
    ):
        assert needle in text


def test_list_sessions_text_format() -> None:
    text = _list_sessions_output().text()
    for needle in (
        "Sessions (1)",
        "sess-1",
        "Research caching",
        "idle",
        "launched by you",
        "Path: src/cache.rs",
    ):
        assert needle in text


def test_get_session_state_text_format_includes_path() -> None:
    out = GetSessionStateOutput(
        session_id="sess-1",
        title="Research caching",
        directory="/tmp/project",
        path="src/cache.rs",
        status=SessionStatusIdle(),
        launched_by_you=False,
        pending_message_count=0,
        recent_tool_calls=[],
    )
    text = out.text()
    assert "Directory: /tmp/project" in text
    assert "Path: src/cache.rs" in text


def test_list_commands_text_format() -> None:
    out = ListCommandsOutput(commands=[CommandInfo(name="research", description="Run research workflow")])
    text = out.text()
    assert "research" in text
    assert "Run research workflow" in text
    assert "orchestrator_run" in text


# ================================================================================================
# Exact renderings of run / respond_*
# ================================================================================================


def _question_output() -> RunOutput:
    return RunOutput(
        session_id="sess-789",
        status=RunStatus.QUESTION_REQUIRED,
        partial_response="Need confirmation",
        question_request_id="question-123",
        questions=[
            QuestionInfoView(
                question="Continue with deploy?",
                header="Deployment",
                options=[QuestionOptionView(label="yes", description="Proceed")],
                multiple=False,
                custom=False,
            )
        ],
    )


def test_run_completed_exact_text() -> None:
    out = RunOutput(session_id="ses_1", status=RunStatus.COMPLETED, response="All done.\nBye")
    assert out.text() == "\u2713 session completed ses_1\n\n--- Response ---\nAll done.\nBye"
    assert render_text(out) == out.text()


def test_run_completed_without_response_is_just_the_status_line() -> None:
    out = RunOutput(session_id="ses_1", status=RunStatus.COMPLETED)
    assert out.text() == "✓ session completed ses_1\n"


def test_run_completed_empty_response_still_prints_the_section() -> None:
    # Rust prints the section for Some(""), only `partial_response` is checked for blankness.
    out = RunOutput(session_id="ses_1", status=RunStatus.COMPLETED, response="")
    assert out.text() == "✓ session completed ses_1\n\n--- Response ---\n"


def test_run_completed_with_warnings_exact_text() -> None:
    out = RunOutput(
        session_id="ses_1",
        status=RunStatus.COMPLETED,
        response="ok",
        warnings=["Context limit reached; summarization triggered", "second"],
    )
    assert out.text() == (
        "✓ session completed ses_1\n"
        "  warning: Context limit reached; summarization triggered\n"
        "  warning: second\n"
        "\n--- Response ---\n"
        "ok"
    )


def test_run_permission_required_exact_text() -> None:
    out = RunOutput(
        session_id="sess-456",
        status=RunStatus.PERMISSION_REQUIRED,
        partial_response="Starting task...",
        permission_request_id="perm-789",
        permission_type="file.write",
        permission_patterns=["src/**/*.rs", "docs/*"],
        warnings=["w1"],
    )
    assert out.text() == (
        "\u23f8 session permission_required sess-456\n"
        "  warning: w1\n"
        "\n--- Permission Request ---\n"
        "Type: file.write\n"
        "Patterns: src/**/*.rs, docs/*\n"
        "Request ID: perm-789\n"
        "\nTo respond: orchestrator_respond_permission(session_id, reply)\n"
        "  reply options: once | always | reject\n"
        "  tip: include permission_request_id=<Request ID> when provided\n"
        "\n--- Partial Response ---\n"
        "Starting task..."
    )


def test_run_permission_required_minimal_exact_text() -> None:
    out = RunOutput(session_id="s", status=RunStatus.PERMISSION_REQUIRED)
    assert out.text() == (
        "⏸ session permission_required s\n"
        "\n--- Permission Request ---\n"
        "\nTo respond: orchestrator_respond_permission(session_id, reply)\n"
        "  reply options: once | always | reject\n"
        "  tip: include permission_request_id=<Request ID> when provided\n"
    )


def test_run_question_required_exact_text() -> None:
    out = _question_output()
    out.questions.append(
        QuestionInfoView(
            question="Which targets?",
            options=[QuestionOptionView(label="eu"), QuestionOptionView(label="us", description="US")],
            multiple=True,
            custom=True,
        )
    )
    assert out.text() == (
        "? session question_required sess-789\n"
        "\n--- Question Request ---\n"
        "Request ID: question-123\n"
        "Header: Deployment\n"
        "Question 1: Continue with deploy?\n"
        "  - yes: Proceed\n"
        "  multiple: false\n"
        "  custom: false\n"
        "Question 2: Which targets?\n"
        "  - eu\n"
        "  - us: US\n"
        "  multiple: true\n"
        "  custom: true\n"
        "\nTo respond: orchestrator_respond_question(session_id, action, answers)\n"
        "  action options: reply | reject\n"
        "  tip: include question_request_id=<Request ID> when provided\n"
        "\n--- Partial Response ---\n"
        "Need confirmation"
    )


def test_run_blank_partial_response_is_not_shown() -> None:
    out = RunOutput(session_id="s", status=RunStatus.QUESTION_REQUIRED, partial_response=" \n\t ")
    assert "Partial Response" not in out.text()
    assert out.text().endswith("when provided\n")


def test_run_response_wins_over_partial_response() -> None:
    out = RunOutput(session_id="s", status=RunStatus.COMPLETED, response="final", partial_response="partial")
    assert out.text() == "✓ session completed s\n\n--- Response ---\nfinal"


# ================================================================================================
# Exact renderings of list_sessions / get_session_state / list_commands
# ================================================================================================


def _list_sessions_output() -> ListSessionsOutput:
    return ListSessionsOutput(
        sessions=[
            SessionSummary(
                id="sess-1",
                title="Research caching",
                updated=0,
                created=0,
                directory="/tmp/project",
                path="src/cache.rs",
                status=SessionStatusIdle(),
                change_stats=ChangeStats(additions=1, deletions=0, files=1),
                launched_by_you=True,
            )
        ]
    )


def test_list_sessions_exact_text() -> None:
    out = ListSessionsOutput(
        sessions=[
            SessionSummary(
                id="ses_a",
                title="Research caching",
                updated=NOW_MS - 5 * MINUTE_MS,
                path="src/cache.rs",
                status=SessionStatusIdle(),
                launched_by_you=True,
            ),
            SessionSummary(
                id="ses_b",
                title="Busy one",
                updated=NOW_MS - 3 * HOUR_MS,
                status=SessionStatusBusy(),
                launched_by_you=False,
            ),
            SessionSummary(
                id="ses_c",
                title="Retrying",
                updated=NOW_MS - 2 * DAY_MS,
                path="",
                status=SessionStatusRetry(attempt=2, message="rate limited", next=1234),
                launched_by_you=False,
            ),
            SessionSummary(id="ses_d", title="No status", launched_by_you=True),
        ]
    )
    assert out.text(now_ms=NOW_MS) == (
        "Sessions (4):\n"
        "  ses_a - Research caching (5m ago, idle) [launched by you]\n"
        "    Path: src/cache.rs\n"
        "  ses_b - Busy one (3h ago, busy)\n"
        "  ses_c - Retrying (2d ago, retry)\n"
        "  ses_d - No status (unknown, unknown) [launched by you]\n"
    )
    assert render_text(out, now_ms=NOW_MS) == out.text(now_ms=NOW_MS)


def test_list_sessions_empty_exact_text() -> None:
    assert ListSessionsOutput(sessions=[]).text() == "Sessions (0):\n  (no sessions found)\n"


def test_list_sessions_uses_millisecond_timestamps() -> None:
    # The reference read OpenCode's ms as seconds, so every real session was "just now".
    out = ListSessionsOutput(
        sessions=[SessionSummary(id="s", title="t", updated=NOW_MS - 2 * HOUR_MS, launched_by_you=False)]
    )
    assert "(2h ago, unknown)" in out.text(now_ms=NOW_MS)


def test_get_session_state_exact_text() -> None:
    out = GetSessionStateOutput(
        session_id="ses_1",
        title="Research caching",
        directory="/tmp/project",
        path="src/cache.rs",
        status=SessionStatusRetry(attempt=3, message="provider overloaded", next=9876),
        launched_by_you=True,
        pending_message_count=2,
        last_activity=NOW_MS - 90_000,
        recent_tool_calls=[
            ToolCallSummary(
                call_id="call-4", tool_name="bash", state=ToolStateError(message="boom"), started_at=40
            ),
            ToolCallSummary(call_id="call-3", tool_name="write", state=ToolStateCompleted()),
            ToolCallSummary(call_id="call-2", tool_name="read", state=ToolStateRunning()),
            ToolCallSummary(call_id="call-1", tool_name="glob", state=ToolStatePending()),
        ],
    )
    assert out.text(now_ms=NOW_MS) == (
        "Session: ses_1 (Research caching)\n"
        "  Directory: /tmp/project\n"
        "  Path: src/cache.rs\n"
        "  Status: Retry (attempt 3, next at 9876, reason: provider overloaded)\n"
        "  Launched by you: true\n"
        "  Pending messages: 2\n"
        "  Last activity: 1m ago\n"
        "  Recent tool calls:\n"
        "    call-4 (bash) - error: boom\n"
        "    call-3 (write) - completed\n"
        "    call-2 (read) - running\n"
        "    call-1 (glob) - pending\n"
    )
    assert render_text(out, now_ms=NOW_MS) == out.text(now_ms=NOW_MS)


def test_get_session_state_minimal_exact_text() -> None:
    out = GetSessionStateOutput(
        session_id="ses_1",
        title="",
        path="",
        status=SessionStatusBusy(),
        launched_by_you=False,
        pending_message_count=0,
        recent_tool_calls=[],
    )
    # An empty `path` (what OpenCode 1.18.33 always sends) is treated as absent: no blank line.
    assert out.text() == (
        "Session: ses_1 ()\n  Status: Busy\n  Launched by you: false\n  Pending messages: 0\n"
    )
    idle = out.model_copy(update={"status": SessionStatusIdle()})
    assert "  Status: Idle\n" in idle.text()


def test_list_commands_exact_text() -> None:
    out = ListCommandsOutput(
        commands=[
            CommandInfo(name="test", description="test description"),
            CommandInfo(name="multi", description="first line\r\nsecond line\n"),
            CommandInfo(name="bare"),
            CommandInfo(name="empty", description=""),
            CommandInfo(name="leading-newline", description="\nsecond"),
        ]
    )
    assert out.text() == (
        "Available commands:\n"
        "  test - test description\n"
        "  multi - first line\n"
        "  bare\n"
        "  empty\n"
        "  leading-newline - \n"
        "\nUse orchestrator_run(command=<name>, message=<args>) to execute\n"
    )
    assert render_text(out) == out.text()


def test_list_commands_empty_exact_text() -> None:
    assert ListCommandsOutput(commands=[]).text() == (
        "Available commands:\n  (no commands available)\n"
        "\nUse orchestrator_run(command=<name>, message=<args>) to execute\n"
    )


@pytest.mark.parametrize(
    ("age_ms", "expected"),
    [
        (0, "just now"),
        (59_999, "just now"),
        (60_000, "1m ago"),
        (3_599_999, "59m ago"),
        (3_600_000, "1h ago"),
        (86_399_999, "23h ago"),
        (86_400_000, "1d ago"),
        (400 * DAY_MS + 5, "400d ago"),
        (-5 * MINUTE_MS, "just now"),
    ],
)
def test_format_time_ago_buckets(age_ms: int, expected: str) -> None:
    assert format_time_ago(NOW_MS - age_ms, now_ms=NOW_MS) == expected


def test_render_text_rejects_unknown_models() -> None:
    with pytest.raises(TypeError):
        render_text(ChangeStats(additions=1, deletions=2, files=3))


# ================================================================================================
# Serialization: exactly the reference's omissions
# ================================================================================================


def test_run_output_minimal_json_omits_skipped_fields() -> None:
    out = RunOutput(session_id="s", status=RunStatus.COMPLETED)
    assert out.to_json() == {"session_id": "s", "status": "completed"}
    assert out.model_dump(mode="json") == out.to_json()


def test_run_output_full_json_keeps_field_order() -> None:
    out = RunOutput(
        session_id="s",
        status=RunStatus.PERMISSION_REQUIRED,
        response="r",
        partial_response="p",
        permission_request_id="per_1",
        permission_type="bash",
        permission_patterns=["ls"],
        question_request_id="que_1",
        questions=[QuestionInfoView(question="q")],
        warnings=["w"],
    )
    data = out.to_json()
    assert list(data) == [
        "session_id",
        "status",
        "response",
        "partial_response",
        "permission_request_id",
        "permission_type",
        "permission_patterns",
        "question_request_id",
        "questions",
        "warnings",
    ]
    assert data["status"] == "permission_required"
    assert data["questions"] == [{"question": "q", "multiple": False, "custom": False}]


def test_question_views_omit_empty_strings_but_keep_flags() -> None:
    view = QuestionInfoView(
        question="q",
        header="",
        options=[QuestionOptionView(label="a"), QuestionOptionView(label="b", description="B")],
    )
    assert view.to_json() == {
        "question": "q",
        "options": [{"label": "a"}, {"label": "b", "description": "B"}],
        "multiple": False,
        "custom": False,
    }
    assert QuestionInfoView(question="q", header="H", multiple=True, custom=True).to_json() == {
        "question": "q",
        "header": "H",
        "multiple": True,
        "custom": True,
    }


def test_session_summary_json() -> None:
    assert SessionSummary(id="s", title="t", launched_by_you=False).to_json() == {
        "id": "s",
        "title": "t",
        "launched_by_you": False,
    }
    full = SessionSummary(
        id="s",
        title="t",
        updated=20,
        created=10,
        directory="/tmp",
        path="src/b.rs",
        status=SessionStatusRetry(attempt=2, message="rate limited", next=1234),
        change_stats=ChangeStats(additions=5, deletions=2, files=1),
        launched_by_you=True,
    )
    assert full.to_json() == {
        "id": "s",
        "title": "t",
        "updated": 20,
        "created": 10,
        "directory": "/tmp",
        "path": "src/b.rs",
        "status": {"state": "retry", "attempt": 2, "message": "rate limited", "next": 1234},
        "change_stats": {"additions": 5, "deletions": 2, "files": 1},
        "launched_by_you": True,
    }
    assert ListSessionsOutput(sessions=[full]).to_json() == {"sessions": [full.to_json()]}
    assert ListSessionsOutput(sessions=[]).to_json() == {"sessions": []}


def test_empty_path_is_absent_in_json() -> None:
    assert "path" not in SessionSummary(id="s", title="t", path="", launched_by_you=False).to_json()


def test_session_status_tags() -> None:
    assert SessionStatusIdle().to_json() == {"state": "idle"}
    assert SessionStatusBusy().to_json() == {"state": "busy"}


def test_get_session_state_json_keeps_always_present_fields() -> None:
    out = GetSessionStateOutput(
        session_id="s",
        title="t",
        status=SessionStatusIdle(),
        launched_by_you=False,
        pending_message_count=0,
        recent_tool_calls=[
            ToolCallSummary(
                call_id="c1",
                tool_name="bash",
                state=ToolStateError(message="boom"),
                started_at=40,
                completed_at=41,
            ),
            ToolCallSummary(call_id="c2", tool_name="read", state=ToolStatePending()),
        ],
    )
    assert out.to_json() == {
        "session_id": "s",
        "title": "t",
        "status": {"state": "idle"},
        "launched_by_you": False,
        "pending_message_count": 0,
        "recent_tool_calls": [
            {
                "call_id": "c1",
                "tool_name": "bash",
                "state": {"status": "error", "message": "boom"},
                "started_at": 40,
                "completed_at": 41,
            },
            {"call_id": "c2", "tool_name": "read", "state": {"status": "pending"}},
        ],
    }
    empty = out.model_copy(update={"recent_tool_calls": []})
    assert empty.to_json()["recent_tool_calls"] == []


def test_list_commands_json() -> None:
    out = ListCommandsOutput(commands=[CommandInfo(name="a"), CommandInfo(name="b", description="")])
    # Only None is skipped for `description` (Option::is_none), an empty string is kept.
    assert out.to_json() == {"commands": [{"name": "a"}, {"name": "b", "description": ""}]}


# ================================================================================================
# Schemas
# ================================================================================================


def _all_schemas() -> dict[str, dict[str, Any]]:
    return {
        name: {"inputSchema": input_schema(inp), "outputSchema": output_schema(out)}
        for name, (inp, out) in TOOL_MODELS.items()
    }


def test_schemas_match_snapshot() -> None:
    """Any schema change must be deliberate: regenerate with UPDATE_SNAPSHOTS=1 and review the diff."""
    current = _all_schemas()
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    stored = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert current == stored, "tool schemas changed; rerun with UPDATE_SNAPSHOTS=1 if deliberate"


def _walk(node: Any, path: str = "$") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            if key == "properties" and isinstance(value, dict):
                for prop, sub in value.items():
                    found.extend(_walk(sub, f"{path}.properties.{prop}"))
            else:
                found.extend(_walk(value, f"{path}.{key}"))
    elif isinstance(node, list):
        for index, item in enumerate(node):
            found.extend(_walk(item, f"{path}[{index}]"))
    return found


@pytest.mark.parametrize("tool", TOOL_NAMES)
def test_schemas_are_object_rooted_2020_12_without_clutter(tool: str) -> None:
    for kind, schema in _all_schemas()[tool].items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema", kind
        assert schema["type"] == "object", kind
        assert isinstance(schema["properties"], dict), kind
        Draft202012Validator.check_schema(schema)
        for path, node in _walk(schema):
            assert "title" not in node, path
            assert "discriminator" not in node, path
            if "anyOf" in node:  # only for optional references, and then with null first
                assert node["anyOf"][0] == {"type": "null"}, path
                assert all("$ref" in branch for branch in node["anyOf"][1:]), path
            if isinstance(node.get("type"), list):
                assert node["type"][0] == "null", path
            if "$ref" in node:
                name = node["$ref"].removeprefix("#/$defs/")
                assert name in schema.get("$defs", {}), path


def test_optional_inputs_are_nullable_with_guidance() -> None:
    run = input_schema(RunInput)
    assert run["properties"]["session_id"] == {
        "description": "Existing session ID to resume. Omit to create a new session."
        "\n\nOptional; omit or use null.",
        "type": ["null", "string"],
        "default": None,
    }
    assert run["properties"]["wait_for_activity"]["type"] == ["null", "boolean"]
    assert "required" not in run
    limit = input_schema(ListSessionsInput)["properties"]["limit"]
    assert limit["type"] == ["null", "integer"]
    assert limit["minimum"] == 0
    assert limit["description"].endswith("(default: 20)\n\nOptional; omit or use null.")


def test_required_enum_inputs_are_inline_string_enums() -> None:
    schema = input_schema(RespondPermissionInput)
    assert schema["required"] == ["session_id", "reply"]
    assert schema["properties"]["reply"] == {
        "description": 'How to respond: "once", "always", or "reject"',
        "type": "string",
        "enum": ["once", "always", "reject"],
    }
    question = input_schema(RespondQuestionInput)
    assert question["required"] == ["session_id", "action"]
    assert question["properties"]["action"]["enum"] == ["reply", "reject"]


def test_answers_is_optional_but_not_nullable() -> None:
    answers = input_schema(RespondQuestionInput)["properties"]["answers"]
    assert answers["type"] == "array"
    assert answers["items"] == {"type": "array", "items": {"type": "string"}}
    assert answers["default"] == []
    assert "Optional; omit or use null." not in answers["description"]


def test_optional_property_without_description_gets_guidance_only() -> None:
    started_at = output_schema(GetSessionStateOutput)["$defs"]["ToolCallSummary"]["properties"]["started_at"]
    assert started_at == {"description": "Optional; omit or use null.", "type": ["null", "integer"]}


def test_list_commands_input_schema_is_empty_object() -> None:
    assert input_schema(ListCommandsInput) == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "description": "Input for the `list_commands` tool.",
        "type": "object",
        "properties": {},
    }


def test_schema_copies_are_independent() -> None:
    first = input_schema(RunInput)
    first["properties"].clear()
    assert input_schema(RunInput)["properties"]


def _sample_outputs() -> list[Any]:
    return [
        RunOutput(session_id="s", status=RunStatus.COMPLETED, response="r", warnings=["w"]),
        _question_output(),
        RunOutput(
            session_id="s",
            status=RunStatus.PERMISSION_REQUIRED,
            permission_request_id="per_1",
            permission_type="bash",
            permission_patterns=["ls"],
        ),
        _list_sessions_output(),
        ListSessionsOutput(sessions=[SessionSummary(id="s", title="t", launched_by_you=False)]),
        GetSessionStateOutput(
            session_id="s",
            title="t",
            status=SessionStatusRetry(attempt=1, message="m", next=2),
            launched_by_you=True,
            pending_message_count=1,
            last_activity=5,
            recent_tool_calls=[
                ToolCallSummary(call_id="c", tool_name="x", state=ToolStateError(message="e"))
            ],
        ),
        ListCommandsOutput(commands=[CommandInfo(name="a", description="d"), CommandInfo(name="b")]),
    ]


@pytest.mark.parametrize("output", _sample_outputs(), ids=lambda o: type(o).__name__)
def test_outputs_validate_against_their_output_schema(output: Any) -> None:
    Draft202012Validator(output_schema(type(output))).validate(output.to_json())


# ================================================================================================
# parse_input
# ================================================================================================


def _error(model: type[Any], arguments: object) -> str:
    with pytest.raises(InvalidInput) as info:
        parse_input(model, arguments)
    return info.value.message


def test_parse_input_accepts_valid_arguments_and_ignores_extras() -> None:
    inp = parse_input(RunInput, {"session_id": "ses_1", "message": "hi", "unknown": [1, {"x": None}]})
    assert (inp.session_id, inp.message, inp.command, inp.wait_for_activity) == ("ses_1", "hi", None, None)
    reply = parse_input(RespondPermissionInput, {"session_id": "s", "reply": "always"})
    assert reply.reply is PermissionReply.ALWAYS
    assert reply.reply == "always"
    question = parse_input(
        RespondQuestionInput, {"session_id": "s", "action": "reply", "answers": [["yes"], []]}
    )
    assert question.action is QuestionAction.REPLY
    assert question.answers == [["yes"], []]
    assert parse_input(GetSessionStateInput, {"session_id": "ses_9"}).session_id == "ses_9"
    assert parse_input(ListCommandsInput, {"anything": 1}) == ListCommandsInput()


def test_parse_input_none_means_no_arguments() -> None:
    assert parse_input(ListSessionsInput, None).limit is None
    assert parse_input(ListSessionsInput, None).effective_limit() == DEFAULT_LIST_LIMIT
    assert parse_input(ListSessionsInput, {"limit": 0}).effective_limit() == 0
    assert parse_input(RunInput, None) == RunInput()


def test_parse_input_answers_default_and_null() -> None:
    assert parse_input(RespondQuestionInput, {"session_id": "s", "action": "reject"}).answers == []
    assert (
        parse_input(RespondQuestionInput, {"session_id": "s", "action": "reject", "answers": None}).answers
        == []
    )


@pytest.mark.parametrize(
    ("model", "arguments", "message"),
    [
        (GetSessionStateInput, {}, "missing field `session_id`"),
        (
            RespondPermissionInput,
            {"session_id": "s", "reply": "maybe"},
            "invalid value for `reply`: unknown variant `maybe`, expected one of `once`, `always`, `reject`",
        ),
        (
            RespondPermissionInput,
            {"session_id": "s"},
            "missing field `reply` (one of `once`, `always`, `reject`)",
        ),
        (
            RespondPermissionInput,
            {},
            "missing field `session_id`; missing field `reply` (one of `once`, `always`, `reject`)",
        ),
        (
            RespondQuestionInput,
            {"session_id": "s", "action": "accept"},
            "invalid value for `action`: unknown variant `accept`, expected one of `reply`, `reject`",
        ),
        (
            RespondPermissionInput,
            {"session_id": 5, "reply": 3},
            "invalid type for `session_id`: expected a string, got 5; "
            "invalid type for `reply`: expected one of `once`, `always`, `reject`, got 3",
        ),
        (
            ListSessionsInput,
            {"limit": "abc"},
            'invalid type for `limit`: expected a non-negative integer, got "abc"',
        ),
        (
            ListSessionsInput,
            {"limit": -1},
            "invalid value for `limit`: expected a non-negative integer, got -1",
        ),
        (
            ListSessionsInput,
            {"limit": True},
            "invalid type for `limit`: expected a non-negative integer, got true",
        ),
        (
            ListSessionsInput,
            {"limit": 2.5},
            "invalid type for `limit`: expected a non-negative integer, got 2.5",
        ),
        (
            ListSessionsInput,
            {"limit": 20.0},
            "invalid type for `limit`: expected a non-negative integer, got 20.0",
        ),
        (
            ListSessionsInput,
            {"limit": math.nan},
            "invalid type for `limit`: expected a non-negative integer, got NaN",
        ),
        (
            ListSessionsInput,
            {"limit": 10**5000},
            "invalid value for `limit`: expected a number no larger than 18446744073709551615, "
            "got an integer too large to show",
        ),
        (
            RunInput,
            {"wait_for_activity": "true"},
            'invalid type for `wait_for_activity`: expected a boolean (true or false), got "true"',
        ),
        (
            RunInput,
            {"message": ["x"], "command": {"a": 1}},
            "invalid type for `command`: expected a string, got an object; "
            "invalid type for `message`: expected a string, got an array",
        ),
        (
            GetSessionStateInput,
            {"session_id": None},
            "invalid type for `session_id`: expected a string, got null",
        ),
        (
            RespondQuestionInput,
            {"session_id": "s", "action": "reply", "answers": "yes"},
            "invalid type for `answers`: expected an array of string arrays, "
            'one per question (e.g. [["yes"]]), got "yes"',
        ),
        (
            RespondQuestionInput,
            {"session_id": "s", "action": "reply", "answers": [["a", 1], "b"]},
            "invalid type for `answers[0][1]`: expected a string, got 1; "
            "invalid type for `answers[1]`: expected an array of strings "
            '(the selected option labels), got "b"',
        ),
        (RunInput, [1, 2], "invalid type: expected the tool arguments as a JSON object, got an array"),
        (RunInput, "hello", 'invalid type: expected the tool arguments as a JSON object, got "hello"'),
        (RunInput, 3.5, "invalid type: expected the tool arguments as a JSON object, got 3.5"),
        (RunInput, True, "invalid type: expected the tool arguments as a JSON object, got true"),
    ],
)
def test_parse_input_error_texts(model: type[Any], arguments: object, message: str) -> None:
    assert _error(model, arguments) == message


def test_parse_input_error_display_has_invalid_input_prefix() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_input(GetSessionStateInput, {})
    assert str(info.value) == "invalid input: missing field `session_id`"


def test_parse_input_truncates_long_values() -> None:
    message = _error(ListSessionsInput, {"limit": "x" * 500})
    assert message == f'invalid type for `limit`: expected a non-negative integer, got "{"x" * 60}…"'


_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["once", "always", "reject", "reply", "ses_1", ""])
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["session_id", "reply", "action", "answers", "limit", "message", "command", "x"])
            | st.text(max_size=5),
            children,
            max_size=5,
        )
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(value=_json_values, tool=st.sampled_from(TOOL_NAMES))
def test_parse_input_only_ever_raises_invalid_input(value: object, tool: str) -> None:
    model = TOOL_MODELS[tool][0]
    try:
        parsed = parse_input(model, value)
    except InvalidInput as exc:
        assert exc.message
        assert str(exc).startswith("invalid input: ")
    else:
        assert isinstance(parsed, model)
        repr(parsed)  # a parsed input must be printable (e.g. in logs)


def test_parse_input_survives_pathological_values() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        child: list[Any] = []
        node.append(child)
        node = child
    for value in (
        deep,
        {"answers": deep, "session_id": "s", "action": "reply"},
        {"limit": 10**10000},
        object(),
    ):
        for model, _ in TOOL_MODELS.values():
            with contextlib.suppress(InvalidInput):
                parse_input(model, value)
