"""The wheel is complete: installed outside the checkout, the dashboard starts with its stylesheet.

The stylesheets live at the top of the checkout (``styles/``), outside the package, so only the
wheel's build configuration puts them in; a checkout (or an editable install) would hide their
absence. So the wheel is built here, installed with ``--no-deps --no-index`` into a fresh venv
under the test's temporary directory, and a script run by that venv's python, from a directory
outside the checkout, starts the dashboard headless and reads a rule of ``styles/app.tcss`` off a
widget. The dependencies (Textual, pydantic, mcp...) are borrowed from the test's own environment
through a ``.pth`` file, which keeps the test offline and quick; that environment's editable
install of this project is not visible there (``.pth`` files of an added directory are not read),
and the script checks that every file it used came from the venv.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path

    import orchestrator_tui
    from orchestrator_tui.pool.actions import PoolActions
    from orchestrator_tui.pool.service import PoolService, ServerSpec
    from orchestrator_tui.tui.app import DashboardApp, styles_dir

    prefix = Path(sys.prefix).resolve()
    package = Path(orchestrator_tui.__file__).resolve()
    assert package.is_relative_to(prefix), f"orchestrator_tui imported from {package}, not from {prefix}"
    assert styles_dir().is_relative_to(prefix), f"stylesheets found at {styles_dir()}, not in {prefix}"

    async def main() -> None:
        service = PoolService(ServerSpec(cwd=Path.cwd(), attach_url=sys.argv[1]))
        app = DashboardApp(service, PoolActions(service, None), None, bell=False, owns_service=True)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            pane = app.query_one("#sessions-pane")
            status = app.query_one("#status-line")
            print("border", pane.styles.border_top[0])
            print("status-height", status.styles.height)
            print("css", app.css_path[0])

    asyncio.run(main())
    """
)


def _free_port() -> int:
    """A port nobody listens on: the dashboard is attached to no server, which it shows itself."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        timeout=120,
    )
    (built,) = out.glob("orchestrator_tui-*.whl")
    return built


def test_wheel_carries_the_stylesheets(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {path.relative_to(ROOT).as_posix() for path in (ROOT / "styles").iterdir() if path.is_file()}
    assert shipped, "styles/ is empty"
    missing = {f"orchestrator_tui/{name}" for name in shipped} - names
    assert not missing, f"the wheel lacks {sorted(missing)}; see [tool.hatch.build.targets.wheel.force-include]"
    assert "orchestrator_tui/mcp/handshake.json" in names


def test_installed_wheel_starts_the_dashboard_with_its_styles(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
    )
    purelib = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    (purelib / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(
        ORCHESTRATOR_TUI_STATE_DIR=str(tmp_path / "state"),
        XDG_STATE_HOME=str(tmp_path / "xdg-state"),
        XDG_DATA_HOME=str(tmp_path / "xdg-data"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg-config"),
    )
    done = subprocess.run(
        [str(python), "-c", SCRIPT, f"http://127.0.0.1:{_free_port()}"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines() if " " in line)
    # `#sessions-pane { border: round ... }` and `#status-line { height: 1 }` come from styles/app.tcss.
    assert lines.get("border") == "round", done.stdout
    assert lines.get("status-height") == "1", done.stdout
    assert Path(lines["css"]).resolve().is_relative_to(env_dir.resolve()), done.stdout
