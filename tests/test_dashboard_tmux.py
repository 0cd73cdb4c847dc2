"""`orchestrator-tui demo` in a real terminal (tmux), driven the way a person drives it.

The real console script runs in a detached tmux session of a fixed size on a private tmux
server. The test reads the screen with ``capture-pane``, types with ``send-keys``, and checks
that quitting gives the terminal back: the alternate screen is left, the cursor is visible
again, mouse reporting is off, the shell continues, and the demo leaves no process and no
temporary files behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator_tui.opencode import binary
from orchestrator_tui.tui.widgets import SETTLE_SECONDS

pytestmark = pytest.mark.real_opencode

COLUMNS, ROWS = 140, 40
#: Server start + six demo sessions on a loaded machine.
SLOW = 90.0


def console_script() -> str:
    path = Path(sys.prefix) / "bin" / "orchestrator-tui"
    if path.exists():
        return str(path)
    found = shutil.which("orchestrator-tui")
    assert found, "the orchestrator-tui console script is not installed (pip install -e .)"
    return found


def processes_under(folder: Path) -> list[int]:
    """Pids whose working directory is inside ``folder`` (the demo's project, its OpenCode)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue
        if cwd == folder or folder in cwd.parents:
            pids.append(int(entry.name))
    return pids


class Terminal:
    """One detached tmux session on a private tmux server."""

    def __init__(self, tmp: Path) -> None:
        self.socket = f"orchestrator-tui-test-{uuid.uuid4().hex[:12]}"
        self.session = "demo"
        self.tmp = tmp
        self.config = tmp / "tmux.conf"
        # Keep the pane (and its last screen) after the program exits; nothing from ~/.tmux.conf.
        # The size is pinned twice (default-size and -x/-y): a detached session must not fall
        # back to tmux's 80x24, where the layout differs.
        self.config.write_text(f"set -g remain-on-exit on\nset -g status off\nset -g default-size {COLUMNS}x{ROWS}\n")

    def tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, "-f", str(self.config), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=20,
            check=False,
        )
        assert result.returncode == 0, f"tmux {' '.join(args)} failed: {result.stderr.strip()}"
        return result.stdout

    def start(self, command: str, env: dict[str, str]) -> None:
        # The first command starts the server, which hands its environment to the pane. Without
        # COLUMNS and LINES: Textual takes them over the terminal's size, and pytest-xdist's
        # workers have them set (80x24).
        env = {name: value for name, value in env.items() if name not in ("COLUMNS", "LINES")}
        self.tmux("new-session", "-d", "-s", self.session, "-x", str(COLUMNS), "-y", str(ROWS), command, env=env)

    def size(self) -> tuple[int, int]:
        width, height = self.tmux("display-message", "-p", "-t", self.session, "#{pane_width} #{pane_height}").split()
        return int(width), int(height)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.session)

    def flag(self, name: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.session, f"#{{{name}}}").strip()

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", self.session, *keys)

    def wait(self, predicate: Callable[[str], object], what: str, timeout: float = SLOW) -> str:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; the screen:\n{screen}")
            time.sleep(0.1)

    def kill(self) -> None:
        """Stop this tmux server (and with it the pane's shell) and remove its socket file."""
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20, check=False)
        socket_dir = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
        (socket_dir / self.socket).unlink(missing_ok=True)


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    if shutil.which("tmux") is None:
        pytest.fail("tmux is not installed: `./dev test` installs it (or: apt-get install tmux)")
    term = Terminal(tmp_path)
    try:
        yield term
    finally:
        term.kill()
        # Whatever the demo started and left running (only if the test failed midway): its
        # OpenCode runs in the demo's project, under this test's folder, in its own group.
        for pid in processes_under(tmp_path):
            with contextlib.suppress(OSError):
                if os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)


@pytest.fixture
def demo_env(tmp_path: Path, opencode_binary: str) -> dict[str, str]:
    """Isolated XDG dirs and temp dir; the real user cache, where the pinned OpenCode lives.

    The demo itself puts OpenCode's data/state/cache and its own registry in a fresh temporary
    folder (under ``TMPDIR``, here the test's own) and OpenCode's config dir in the cache.
    """
    cache = binary.cache_base()
    assert binary.install_dir(cache).exists(), f"the pinned OpenCode is expected under {cache}"
    env = dict(os.environ)
    for var in (
        "TMUX",
        "TMUX_PANE",
        "OPENCODE_BINARY",
        "OPENCODE_BINARY_ARGS",
        "OPENCODE_CONFIG_CONTENT",
        "OPENCODE_ORCHESTRATOR_MANAGED",
        "OPENCODE_SERVER_PASSWORD",
        "ORCHESTRATOR_TUI_ATTACH",
        "ORCHESTRATOR_TUI_STATE_DIR",
    ):
        env.pop(var, None)
    home = tmp_path / "home"
    for name in ("data", "config", "cache", "state", "tmp"):
        (home / name).mkdir(parents=True)
    env.update(
        HOME=str(home),
        XDG_DATA_HOME=str(home / "data"),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
        TMPDIR=str(home / "tmp"),
        ORCHESTRATOR_TUI_CACHE_DIR=str(cache),
        AGENTIC_LOGGING_DISABLED="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
        LANG="C.UTF-8",
    )
    return env


def assert_shows(screen: str, *texts: str) -> None:
    missing = [t for t in texts if t not in screen]
    assert not missing, f"{missing} not on the screen:\n{screen}"


def waiting_count(screen: str) -> int:
    match = re.search(r"◆ (\d+) waiting", screen)
    return int(match.group(1)) if match else 0


def detail_session(screen: str) -> str | None:
    """The title in the detail pane's "Session" line."""
    match = re.search(r"│ Session\s{2,}(\S.*?)\s*│", screen)
    return match.group(1) if match else None


def test_demo_in_a_real_terminal(terminal: Terminal, demo_env: dict[str, str], tmp_path: Path) -> None:
    app = shlex.quote(console_script())
    # The shell stays (sleeping) after the app, so the terminal's state can be read afterwards.
    terminal.start(f"sh -c '{app} demo; echo EXITED=$?; exec sleep 600'", demo_env)
    assert terminal.size() == (COLUMNS, ROWS)

    # The dashboard comes up in the alternate screen and the demo's sessions appear.
    terminal.wait(lambda s: "Check the free disk space" in s, "the demo's sessions")
    assert terminal.flag("alternate_on") == "1"
    # Three of the demo's sessions ask something: a command, an edit, a question.
    screen = terminal.wait(lambda s: waiting_count(s) == 3, "three requests waiting")
    assert_shows(
        screen, "Waiting for you (3)", "Run command: df -h .", "Edit file: README.md", "Question: Pick a colour"
    )

    # Go to the command's session with `i` (next session needing input), like a person would.
    for _ in range(4):
        if detail_session(terminal.screen()) == "Check the free disk space":
            break
        before = detail_session(terminal.screen())
        terminal.keys("i")
        terminal.wait(lambda s, before=before: detail_session(s) != before, "the jump to the next session")
    screen = terminal.wait(lambda s: detail_session(s) == "Check the free disk space", "the disk-space session")
    # The inbox shows the command being asked for, and the keys (once the toasts have gone).
    screen = terminal.wait(lambda s: "o allow once · a allow always · r reject" in s, "the inbox's key hint")
    assert_shows(screen, "$ df -h .", "Always allows df *")

    # Allow it once, after reading it (a key answers only a request shown for SETTLE_SECONDS): it
    # leaves the inbox, the count drops, the command's output arrives.
    time.sleep(SETTLE_SECONDS + 0.2)
    terminal.keys("o")
    screen = terminal.wait(lambda s: "Run command: df -h ." not in s, "the request to leave the inbox")
    screen = terminal.wait(lambda s: waiting_count(s) == 2, "the count to drop to two")
    assert_shows(screen, "Waiting for you (2)")
    terminal.wait(lambda s: "Command output:" in s and "Filesystem" in s, "the command's output in the detail pane")

    # Quit: the shell gets the terminal back, in its normal state.
    terminal.keys("q")
    screen = terminal.wait(lambda s: "EXITED=" in s, "the app to exit", timeout=30)
    assert "EXITED=0" in screen, screen
    assert "Traceback" not in screen, screen
    assert "Waiting for you" not in screen and "orchestrator-tui" not in screen, "the dashboard is still shown"
    assert terminal.flag("alternate_on") == "0", "the alternate screen was not left"
    assert terminal.flag("cursor_flag") == "1", "the cursor was not shown again"
    for mouse in ("mouse_any_flag", "mouse_all_flag", "mouse_sgr_flag"):
        assert terminal.flag(mouse) == "0", f"{mouse} is still on"

    # Nothing left behind: no OpenCode (it ran in the demo's project), no temporary folder.
    deadline = time.monotonic() + 10
    while processes_under(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_under(tmp_path) == [], "the demo's OpenCode server outlived the app"
    leftovers = list((tmp_path / "home" / "tmp").glob("orchestrator-tui-demo-*"))
    assert leftovers == [], f"the demo left its temporary folder behind: {leftovers}"
