"""What the benchmarks share: figures and their budget verdicts, statistics, isolated storage,
and starting/stopping helper processes (own process group, SIGTERM then SIGKILL, 127.0.0.1 only).

Stdlib only at import time, so `benchmarks.cold_start` measures the worker, not our own imports.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DATA_DIR = BENCH_DIR / "data"
EVENTS_FILE = DATA_DIR / "events.jsonl"

#: Variables of the caller's environment that must not leak into a benchmark's processes.
_SCRUBBED = (
    "OPENCODE_ORCHESTRATOR_MANAGED",
    "OPENCODE_BINARY_ARGS",
    "OPENCODE_CONFIG_CONTENT",
    "OPENCODE_SERVER_PASSWORD",
    "OPENCODE_SERVER_USERNAME",
    "ORCHESTRATOR_TUI_ATTACH",
    "ORCHESTRATOR_TUI_POOL",
    "OPENCODE_ORCHESTRATOR_LOG_DIR",
)


# ------------------------------------------------------------------------------------------------
# figures


@dataclass(frozen=True)
class Figure:
    """One measured figure against one budget of docs/budgets.md.

    ``direction`` is ``"max"`` for budgets that are ceilings (latency) and ``"min"`` for floors
    (throughput). ``ratio`` is measured / budget either way, so < 1 is good for ``max`` and
    > 1 is good for ``min``.
    """

    name: str
    value: float
    unit: str
    budget: float
    direction: str  # "max" | "min"
    detail: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.budget if self.budget else math.inf

    @property
    def ok(self) -> bool:
        return self.value <= self.budget if self.direction == "max" else self.value >= self.budget

    @property
    def verdict(self) -> str:
        return "OK" if self.ok else "MISSED"

    def budget_text(self) -> str:
        sign = "≤" if self.direction == "max" else "≥"
        return f"{sign} {fmt(self.budget)} {self.unit}"

    def line(self) -> str:
        detail = f"{self.detail} " if self.detail else f"{fmt(self.value)} {self.unit} "
        return f"{self.name}: {detail}(budget {self.budget_text()}: {self.ratio:.2f}x) {self.verdict}"


def fmt(value: float) -> str:
    """Readable numbers: 0.42, 12.3, 84, 52,310."""
    if value != value or math.isinf(value):  # NaN / inf
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def print_figures(figures: Sequence[Figure]) -> None:
    for figure in figures:
        print(figure.line(), flush=True)


def print_table(figures: Sequence[Figure]) -> None:
    """The final table of `python -m benchmarks`."""
    rows = [("budget", "measured", "limit", "ratio", "")]
    rows += [(f.name, f"{fmt(f.value)} {f.unit}", f.budget_text(), f"{f.ratio:.2f}x", f.verdict) for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    rule = "-+-".join("-" * w for w in widths) + "-+--------"
    for index, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2]), row[3].rjust(widths[3])]
        print(" | ".join(cells) + " | " + row[4])
        if index == 0:
            print(rule)
    missed = [f.name for f in figures if not f.ok]
    print()
    if missed:
        print(f"MISSED: {len(missed)} of {len(figures)} budgets: " + "; ".join(missed))
    else:
        print(f"all {len(figures)} budgets met")


# ------------------------------------------------------------------------------------------------
# statistics


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p90(values: Sequence[float]) -> float:
    return percentile(values, 90)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def load_note() -> str:
    """The 1-minute load average and the core count, for judging how noisy a run was."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        return ""
    return f"load average {load1:.2f} on {os.cpu_count()} cores"


# ------------------------------------------------------------------------------------------------
# isolated storage


@contextlib.contextmanager
def temp_root(prefix: str) -> Iterator[Path]:
    """A temporary directory, resolved (OpenCode compares directories by their real path)."""
    with tempfile.TemporaryDirectory(prefix=f"orchestrator-tui-bench-{prefix}-") as raw:
        yield Path(raw).resolve()


def isolated_env(root: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The caller's environment with OpenCode's and our storage moved under ``root``."""
    env = dict(os.environ if base is None else base)
    for name in _SCRUBBED:
        env.pop(name, None)
    xdg = root / "xdg"
    for name in ("data", "config", "cache", "state"):
        (xdg / name).mkdir(parents=True, exist_ok=True)
        env[f"XDG_{name.upper()}_HOME"] = str(xdg / name)
    env["ORCHESTRATOR_TUI_STATE_DIR"] = str(root / "orchestrator-state")
    env["AGENTIC_LOGGING_DISABLED"] = "1"
    env["OPENCODE_DISABLE_MODELS_FETCH"] = "1"
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def make_project(root: Path, name: str = "project") -> Path:
    """A fresh git project (OpenCode scopes sessions and config to the working directory)."""
    project = root / name
    project.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


def resolve_opencode() -> str:
    """The pinned OpenCode binary (installing it into the user cache if needed).

    Resolved with the caller's real environment, before the XDG dirs are redirected, so the
    350 MB install in the user cache is found rather than repeated in a temp dir.
    """
    from orchestrator_tui.opencode import binary

    launcher = binary.resolve_launcher(Path.cwd(), os.environ)
    if launcher.args:
        raise SystemExit("benchmarks need a direct OpenCode binary (unset OPENCODE_BINARY_ARGS)")
    return launcher.binary


def worker_command() -> list[str]:
    """How an MCP client launches the worker: the installed console script, next to our python."""
    script = Path(sys.executable).with_name("orchestrator-tui")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "orchestrator_tui"]


# ------------------------------------------------------------------------------------------------
# interruption


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) during an async benchmark; raised where it is safe to unwind."""


_interrupt_requested = False


def check_interrupted() -> None:
    if _interrupt_requested:
        raise Interrupted("interrupted")


@contextlib.asynccontextmanager
async def interruptible() -> Any:
    """Make SIGINT/SIGTERM stop an async benchmark for sure.

    asyncio's own Ctrl-C handling only cancels the main task, and a cancellation can be absorbed
    on the way (the MCP SDK's client finishes an in-flight call first). So the signal also sets a
    flag that the benchmark's loops check, and everything unwinds through the normal cleanup.
    """
    import asyncio

    global _interrupt_requested
    _interrupt_requested = False
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        global _interrupt_requested
        _interrupt_requested = True
        if main is not None:
            main.cancel()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        yield
    except asyncio.CancelledError:
        if _interrupt_requested:
            raise Interrupted("interrupted") from None
        raise
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


# ------------------------------------------------------------------------------------------------
# processes


def stop_group(proc: subprocess.Popen[bytes], grace: float = 3.0) -> None:
    """SIGTERM the child's process group, wait ``grace`` seconds, then SIGKILL the group."""
    pgid = proc.pid  # started with start_new_session=True: it leads its own group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    # Always: the child may be gone while something it started is not.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


class LineReader:
    """Newline-delimited reads from a child's stdout with a deadline (no threads, no asyncio)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self._fd = proc.stdout.fileno()
        self._buffer = b""

    def readline(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line within {timeout:.0f} s")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(self._fd, 65536)
            if not chunk:
                raise EOFError("the child closed its stdout")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line


_LISTENING = re.compile(rb"listening on (http://127\.0\.0\.1:\d+)")


@contextlib.contextmanager
def scripted_model_process(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The scripted model in its own process (not a thread of the measuring process, whose
    event loop must not share a GIL with it). Yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator_tui", "scripted-model", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(os.environ if env is None else env),
        start_new_session=True,
    )
    try:
        line = LineReader(proc).readline(30.0)
        match = _LISTENING.search(line)
        if match is None:
            raise RuntimeError(f"scripted model did not report its address: {line!r}")
        yield match.group(1).decode()
    finally:
        stop_group(proc)


def opencode_config_json(model_url: str, **overrides: object) -> str:
    from orchestrator_tui.scripted_model.server import opencode_config

    return json.dumps(opencode_config(model_url, **overrides))
