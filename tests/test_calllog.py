"""Per-call JSONL logging; ports ``src/logging.rs`` tests and pins the record."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.orchestrator.calllog import (
    U32_MAX,
    CallLogger,
    TokenUsage,
    failure_kind,
    logging_disabled,
    process_session_id,
    rfc3339,
)

STARTED = datetime(2025, 3, 15, 10, 30, 0, 123000, tzinfo=UTC)
COMPLETED = STARTED + timedelta(milliseconds=1500)


def _record(logger: CallLogger, **overrides: Any) -> None:
    args: dict[str, Any] = {
        "tool": "run",
        "request": {"session_id": None, "message": "hello", "command": None, "wait_for_activity": None},
        "started": STARTED,
        "completed": COMPLETED,
        "result_text": "✓ session completed ses_1\n\n--- Response ---\nhi",
        "error": None,
        "token_usage": None,
    }
    args.update(overrides)
    logger.record(**args)


def _lines(log_dir: Path) -> list[dict[str, Any]]:
    files = sorted(log_dir.glob("tool_logs_*.jsonl"))
    return [json.loads(line) for path in files for line in path.read_text(encoding="utf-8").splitlines()]


# ================================================================================================
# the reference's cases
# ================================================================================================


def test_env_log_dir_writes_jsonl(tmp_path: Path) -> None:
    logger = CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)})
    now = datetime.now(UTC)
    _record(logger, started=now, completed=now, tool="list_sessions", result_text="Sessions (0):\n")
    files = list(tmp_path.glob(f"tool_logs_{now:%Y-%m-%d}*.jsonl"))
    assert len(files) == 1
    assert "opencode-orchestrator-mcp" in files[0].read_text(encoding="utf-8")


def test_invalid_log_dir_is_swallowed(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "not-a-directory"
    not_a_dir.write_text("file")
    logger = CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(not_a_dir)})
    _record(logger)  # must not raise
    assert not_a_dir.is_file()
    assert not_a_dir.read_text() == "file"


# ================================================================================================
# Record contents
# ================================================================================================


def test_successful_run_record_and_markdown(tmp_path: Path) -> None:
    logger = CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": f"  {tmp_path}  "})
    _record(logger)
    bucket = f"tool_logs_2025-03-15_{process_session_id()}"
    (record,) = _lines(tmp_path)
    assert (tmp_path / f"{bucket}.jsonl").is_file()
    assert list(record) == [
        "call_id",
        "server",
        "tool",
        "started_at",
        "completed_at",
        "duration_ms",
        "request",
        "response_file",
        "success",
    ]
    uuid.UUID(record["call_id"], version=4)
    assert record["server"] == "opencode-orchestrator-mcp"
    assert record["tool"] == "run"
    assert record["started_at"] == "2025-03-15T10:30:00.123Z"
    assert record["completed_at"] == "2025-03-15T10:30:01.623Z"
    assert record["duration_ms"] == 1500
    assert record["request"] == {
        "session_id": None,
        "message": "hello",
        "command": None,
        "wait_for_activity": None,
    }
    assert record["response_file"] == f"{record['call_id']}.md"
    assert record["success"] is True
    markdown = tmp_path / bucket / record["response_file"]
    assert markdown.read_text(encoding="utf-8") == "✓ session completed ses_1\n\n--- Response ---\nhi"
    assert not list((tmp_path / bucket).glob(".*"))  # no temp files left behind


@pytest.mark.parametrize("tool", ["respond_permission", "respond_question"])
def test_respond_tools_also_get_markdown(tmp_path: Path, tool: str) -> None:
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}), tool=tool)
    (record,) = _lines(tmp_path)
    assert "response_file" in record


@pytest.mark.parametrize("tool", ["list_sessions", "get_session_state", "list_commands"])
def test_other_tools_get_no_markdown(tmp_path: Path, tool: str) -> None:
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}), tool=tool, result_text="text")
    (record,) = _lines(tmp_path)
    assert "response_file" not in record
    assert not [p for p in tmp_path.iterdir() if p.is_dir()]


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (
            "internal error: Session execution timed out after 1 hour. The session may still be running",
            "timeout",
        ),
        ("internal error: Session idle timeout: no activity for 5 minutes (session_id=s).", "timeout"),
        ("cancelled", "cancelled"),
        ("internal error: request was Canceled", "cancelled"),
        ("invalid input: missing field `session_id`", "error"),
    ],
)
def test_error_record(tmp_path: Path, error: str, kind: str) -> None:
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}), error=error, result_text=None)
    (record,) = _lines(tmp_path)
    assert record["success"] is False
    assert record["error"] == error
    assert record["failure_kind"] == kind
    assert "response_file" not in record
    assert list(record)[-3:] == ["success", "error", "failure_kind"]


def test_failure_kind_prefers_timeout() -> None:
    assert failure_kind("cancelled after timeout") == "timeout"
    assert failure_kind("boom") == "error"


def test_token_usage_record(tmp_path: Path) -> None:
    logger = CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)})
    _record(logger, token_usage=TokenUsage(input=10, output=20, total=30, reasoning=5))
    _record(logger, token_usage=TokenUsage(input=10, output=20))
    _record(logger, token_usage=TokenUsage(input=2**64 - 1, output=1, total=None, reasoning=0))
    full, defaulted, saturated = _lines(tmp_path)
    assert full["token_usage"] == {"prompt": 10, "completion": 20, "total": 30, "reasoning_tokens": 5}
    assert "summary" not in full
    assert defaulted["token_usage"] == {"prompt": 10, "completion": 20, "total": 30}
    assert saturated["token_usage"] == {"prompt": U32_MAX, "completion": 1, "total": U32_MAX}
    assert saturated["summary"] == {"token_usage_saturated": True}
    assert "model" not in full


def test_token_usage_to_record() -> None:
    assert TokenUsage(input=1, output=2, total=None, reasoning=0).to_record() == (
        {"prompt": 1, "completion": 2, "total": 3},
        False,
    )
    assert TokenUsage(input=1, output=2, reasoning=2**40).to_record() == (
        {"prompt": 1, "completion": 2, "total": 3, "reasoning_tokens": U32_MAX},
        True,
    )
    assert U32_MAX == 4294967295


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", "on", " on "])
def test_logging_disabled_values(tmp_path: Path, value: str) -> None:
    env = {"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path / "logs"), "AGENTIC_LOGGING_DISABLED": value}
    assert logging_disabled(env)
    _record(CallLogger(env))
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize("value", ["0", "false", "", "off", "no"])
def test_logging_enabled_values(tmp_path: Path, value: str) -> None:
    env = {"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path), "AGENTIC_LOGGING_DISABLED": value}
    assert not logging_disabled(env)
    _record(CallLogger(env))
    assert len(_lines(tmp_path)) == 1


def test_without_log_dir_nothing_is_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": "   "}))
    _record(CallLogger({}))
    assert list(tmp_path.iterdir()) == []


def test_reads_process_environment_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCODE_ORCHESTRATOR_LOG_DIR", str(tmp_path))
    monkeypatch.delenv("AGENTIC_LOGGING_DISABLED", raising=False)
    _record(CallLogger())
    assert len(_lines(tmp_path)) == 1


def test_bucket_uses_utc_date_of_completion(tmp_path: Path) -> None:
    eastern = timezone(timedelta(hours=-5))
    completed = datetime(2025, 3, 15, 23, 30, tzinfo=eastern)  # 2025-03-16T04:30Z
    _record(
        CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}),
        started=completed - timedelta(seconds=2),
        completed=completed,
    )
    (path,) = tmp_path.glob("*.jsonl")
    assert path.name == f"tool_logs_2025-03-16_{process_session_id()}.jsonl"
    (record,) = _lines(tmp_path)
    assert record["completed_at"] == "2025-03-16T04:30:00Z"
    assert record["duration_ms"] == 2000


def test_process_session_id_is_stable() -> None:
    assert process_session_id() == process_session_id()
    assert len(process_session_id()) == 8


def test_odd_requests_are_still_logged(tmp_path: Path) -> None:
    request = {"limit": float("nan"), "big": 10**30, "obj": object(), 3: "int key"}
    _record(
        CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}), tool="list_sessions", request=request
    )
    (record,) = _lines(tmp_path)
    assert record["request"]["limit"] == "nan"
    assert record["request"]["big"] == "<integer too large>"
    assert record["request"]["obj"].startswith("<object object")
    assert record["request"]["3"] == "int key"


def test_markdown_failure_still_logs_the_record(tmp_path: Path) -> None:
    bucket = f"tool_logs_2025-03-15_{process_session_id()}"
    (tmp_path / bucket).write_text("a file where the markdown directory should be")
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}))
    (record,) = _lines(tmp_path)
    assert "response_file" not in record
    assert record["success"] is True


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    logger = CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)})
    big = "x" * 20_000  # larger than a pipe buffer, so a torn write would show

    def work(n: int) -> None:
        for i in range(25):
            _record(logger, tool="list_sessions", request={"n": n, "i": i, "pad": big}, result_text=None)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    records = _lines(tmp_path)
    assert len(records) == 200
    assert {(r["request"]["n"], r["request"]["i"]) for r in records} == {
        (n, i) for n in range(8) for i in range(25)
    }


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC), "2025-01-02T03:04:05Z"),
        (datetime(2025, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "2025-01-02T03:04:05.120Z"),
        (datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC), "2025-01-02T03:04:05.123456Z"),
        (datetime(2025, 1, 2, 3, 4, 5), "2025-01-02T03:04:05Z"),  # naive = UTC
        (datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2))), "2025-01-02T01:04:05Z"),
    ],
)
def test_rfc3339(moment: datetime, text: str) -> None:
    assert rfc3339(moment) == text


# ================================================================================================
# Owner-only files, never written through a planted link
# ================================================================================================


def test_log_files_are_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    import os
    import stat

    log_dir = tmp_path / "logs"
    old = os.umask(0)
    try:
        _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(log_dir)}))
    finally:
        os.umask(old)
    (jsonl,) = log_dir.glob("tool_logs_*.jsonl")
    (markdown,) = log_dir.glob("tool_logs_*/*.md")
    assert stat.S_IMODE(jsonl.stat().st_mode) == 0o600
    assert stat.S_IMODE(markdown.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(markdown.parent.stat().st_mode) == 0o700


def test_an_existing_readable_log_of_ours_becomes_owner_only(tmp_path: Path) -> None:
    import os
    import stat

    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}))
    (jsonl,) = tmp_path.glob("tool_logs_*.jsonl")
    os.chmod(jsonl, 0o644)  # as logs were created before
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(tmp_path)}))
    assert stat.S_IMODE(jsonl.stat().st_mode) == 0o600
    assert len(_lines(tmp_path)) == 2


def test_a_link_planted_at_the_log_path_is_not_followed(tmp_path: Path) -> None:
    import os

    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("untouched\n")
    os.chmod(victim, 0o644)
    completed = COMPLETED.astimezone(UTC)
    planted = log_dir / f"tool_logs_{completed:%Y-%m-%d}_{process_session_id()}.jsonl"
    planted.symlink_to(victim)
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(log_dir)}))  # best effort: no raise
    assert victim.read_text() == "untouched\n"
    assert oct(victim.stat().st_mode & 0o777) == oct(0o644)  # not chmodded through the link either
    assert planted.is_symlink()
    # A FIFO planted there cannot hang the tool call either.
    planted.unlink()
    os.mkfifo(planted)
    _record(CallLogger({"OPENCODE_ORCHESTRATOR_LOG_DIR": str(log_dir)}))
    assert planted.exists()
