"""Per-call JSONL logging of tool calls, compatible with the agentic tools' log format.

Each tool call appends one JSON line to ``<dir>/tool_logs_<YYYY-MM-DD>_<sid8>.jsonl`` (UTC date of
completion, ``sid8`` = 8 characters of a per-process UUID so concurrent processes never share a
file) under an exclusive ``flock``; the text result of a successful ``run`` / ``respond_*`` is also
written atomically to ``<dir>/tool_logs_<date>_<sid8>/<call_id>.md``.

Logging is **best effort**: :meth:`CallLogger.record` never raises (a failure is reported once to
the Python logger, i.e. stderr), because a full disk or a bad directory must never fail a tool call.

Where this port differs from the reference:

* The log directory is ``OPENCODE_ORCHESTRATOR_LOG_DIR`` only; the reference's fallback (the
  "thoughts" tool's active logs directory) does not exist here, so without the variable nothing
  is written.
* ``AGENTIC_LOGGING_DISABLED`` is trimmed before the ``1/true/yes/on`` check.
* ``failure_kind`` matching is case-insensitive.
* The markdown directory is only created when a markdown file is written.
* Log files are owner-only (0600, folders we create 0700) and never written through a symbolic
  link planted at their path: requests and results may quote anything a session saw.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

LOG_DIR_ENV = "OPENCODE_ORCHESTRATOR_LOG_DIR"
DISABLED_ENV = "AGENTIC_LOGGING_DISABLED"
SERVER_NAME = "opencode-orchestrator-mcp"

#: Tools whose successful text result is also kept as a markdown file (the long, useful ones).
MARKDOWN_TOOLS = frozenset({"run", "respond_permission", "respond_question"})

#: Log token counts are u32 in the agentic log format; bigger values saturate to this.
U32_MAX = 2**32 - 1

_MILLISECOND = timedelta(milliseconds=1)
_logger = logging.getLogger(__name__)
_session_id: str | None = None


def process_session_id() -> str:
    """First 8 characters of a UUIDv4 drawn once per process (namespaces this process's files)."""
    global _session_id
    if _session_id is None:
        import uuid

        _session_id = str(uuid.uuid4())[:8]
    return _session_id


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Raw token counts of the last step OpenCode reported for a run (``tokens`` of a message/part).

    ``total`` is optional in OpenCode's data; the log falls back to ``input + output``.
    """

    input: int
    output: int
    total: int | None = None
    reasoning: int = 0

    def to_record(self) -> tuple[dict[str, int], bool]:
        """The log's ``token_usage`` object and whether any value had to saturate at 2^32−1.

        ``{"prompt", "completion", "total", "reasoning_tokens"?}``; ``reasoning_tokens`` only when > 0.
        """
        saturated = False

        def sat(value: int) -> int:
            nonlocal saturated
            if value > U32_MAX:
                saturated = True
                return U32_MAX
            return max(0, value)

        total_raw = self.total if self.total is not None else self.input + self.output
        record = {
            "prompt": sat(self.input),
            "completion": sat(self.output),
            "total": sat(total_raw),
        }
        reasoning = sat(self.reasoning)
        if self.reasoning > 0:
            record["reasoning_tokens"] = reasoning
        return record, saturated


def logging_disabled(env: Mapping[str, str]) -> bool:
    """``AGENTIC_LOGGING_DISABLED`` ∈ {1, true, yes, on} (trimmed, case-insensitive)."""
    return env.get(DISABLED_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def resolve_log_dir(env: Mapping[str, str]) -> Path | None:
    """``OPENCODE_ORCHESTRATOR_LOG_DIR`` (trimmed, non-empty) or ``None`` (no logging)."""
    value = env.get(LOG_DIR_ENV, "").strip()
    return Path(value) if value else None


def failure_kind(error: str) -> str:
    """``timeout`` / ``cancelled`` / ``error`` classification of an error display text."""
    lowered = error.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return "timeout"
    if "cancelled" in lowered or "canceled" in lowered:
        return "cancelled"
    return "error"


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 like chrono's default: ``Z`` suffix, fraction only when non-zero (3 or 6 digits).

    Naive datetimes are taken to be UTC already.
    """
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micros = moment.microsecond
    if micros == 0:
        return base + "Z"
    if micros % 1000 == 0:
        return f"{base}.{micros // 1000:03d}Z"
    return f"{base}.{micros:06d}Z"


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a request: NaN/inf, odd keys and foreign objects become strings."""
    if depth > 64:
        return "<nested too deeply>"
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if value.bit_length() <= 64 else "<integer too large>"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return _jsonable(dump(mode="json"), depth + 1)
    return str(value)


class CallLogger:
    """Writes the record of every tool call; one instance per server is enough.

    The environment is read on every call (as the reference does), from ``env`` if given — tests
    pass a dict — else from ``os.environ``.
    """

    def __init__(self, env: Mapping[str, str] | None = None, server: str = SERVER_NAME) -> None:
        self._env = env
        self._server = server

    def record(
        self,
        tool: str,
        request: dict[str, Any],
        started: datetime,
        completed: datetime,
        result_text: str | None,
        error: str | None,
        token_usage: TokenUsage | None,
    ) -> None:
        """Log one finished call. ``error`` is the error display text (``None`` = success);
        ``result_text`` is the text rendering of a successful result. Never raises: a call log
        that cannot be written is a warning, never a failed tool call."""
        try:
            env = self._env if self._env is not None else os.environ
            log_dir = resolve_log_dir(env)
            if log_dir is None or logging_disabled(env):
                return

            import json
            import uuid

            started_utc, completed_utc = _utc(started), _utc(completed)
            call_id = str(uuid.uuid4())
            bucket = f"tool_logs_{completed_utc:%Y-%m-%d}_{process_session_id()}"

            log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            response_file = None
            if error is None and result_text is not None and tool in MARKDOWN_TOOLS:
                response_file = self._write_markdown(log_dir / bucket, f"{call_id}.md", result_text)

            duration_ms = max(0, (completed_utc - started_utc) // _MILLISECOND)
            record: dict[str, Any] = {
                "call_id": call_id,
                "server": self._server,
                "tool": tool,
                "started_at": rfc3339(started_utc),
                "completed_at": rfc3339(completed_utc),
                "duration_ms": duration_ms,
                "request": _jsonable(request),
            }
            if response_file is not None:
                record["response_file"] = response_file
            record["success"] = error is None
            if error is not None:
                record["error"] = error
                record["failure_kind"] = failure_kind(error)
            if token_usage is not None:
                usage, saturated = token_usage.to_record()
                record["token_usage"] = usage
                if saturated:
                    record["summary"] = {"token_usage_saturated": True}

            line = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
            self._append_locked(log_dir / f"{bucket}.jsonl", line)
        except Exception as exc:
            _logger.warning("failed to write orchestrator call log: %s", exc)

    @staticmethod
    def _append_locked(path: Path, line: bytes) -> None:
        import fcntl
        import stat

        # Owner-only (requests and results may quote anything a session saw), and never through a
        # link planted at the log's path; O_NONBLOCK so that a planted FIFO cannot hang us.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = os.open(path, flags, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                raise OSError(f"{path} is not a regular file of ours; not writing the call log into it")
            if stat.S_IMODE(st.st_mode) & 0o077:
                os.fchmod(fd, 0o600)  # a log file of ours from before logs were owner-only
            # Exclusive lock so concurrent writers (other processes sharing the dir) never interleave.
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                view = memoryview(line)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @staticmethod
    def _write_markdown(directory: Path, filename: str, content: str) -> str | None:
        """Atomically write ``content`` (temp file + fsync + rename); the file name, or ``None``."""
        import tempfile

        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if directory.is_symlink():
                raise OSError(f"{directory} is a symbolic link")
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(content.encode("utf-8"))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, directory / filename)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            _logger.warning("failed to write orchestrator markdown log: %s", exc)
            return None
        return filename


__all__ = [
    "DISABLED_ENV",
    "LOG_DIR_ENV",
    "MARKDOWN_TOOLS",
    "SERVER_NAME",
    "U32_MAX",
    "CallLogger",
    "TokenUsage",
    "failure_kind",
    "logging_disabled",
    "process_session_id",
    "resolve_log_dir",
    "rfc3339",
]
