"""The pinned OpenCode binary: resolution, installation, version pin, guard.

Everything here is offline and fast: installs run against a fake ``npm`` on a private PATH.
"""

from __future__ import annotations

import fcntl
import io
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from orchestrator_tui.opencode import binary
from orchestrator_tui.opencode.binary import (
    BLANK_BINARY_TEXT,
    MANAGED_ENV,
    NPM_MISSING_TEXT,
    PINNED_VERSION,
    RECURSION_GUARD_TEXT,
    Launcher,
    LauncherError,
    VersionMismatch,
    install_pinned,
    managed_guard_enabled,
    normalize_version,
    resolve_launcher,
    validate_exact_version,
    version_mismatch_text,
)

REPO = Path(__file__).resolve().parents[1]


def _script(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def _fake_opencode(path: Path, version: str = PINNED_VERSION) -> Path:
    return _script(path, f'[ "$1" = --version ] && echo "{version}"\n')


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    """A PATH of its own, so each test decides whether ``npm`` and ``opencode`` exist; the few
    tools the fakes use come from a second directory of symlinks."""
    d = tmp_path / "bin"
    d.mkdir()
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("mkdir", "chmod", "sleep"):
        found = shutil.which(tool)
        assert found, tool
        (tools / tool).symlink_to(found)
    return d


def _env(bin_dir: Path, cache: Path) -> dict[str, str]:
    return {
        "PATH": f"{bin_dir}{os.pathsep}{bin_dir.parent / 'tools'}",
        "HOME": str(bin_dir.parent / "home"),
        "ORCHESTRATOR_TUI_CACHE_DIR": str(cache),
    }


def _fake_npm(
    bin_dir: Path, *, version: str = PINNED_VERSION, log: Path | None = None, extra: str = ""
) -> Path:
    """An ``npm`` that lays out what the real ``npm install --prefix P opencode-ai@X`` does (the
    postinstall hard-links the platform binary to ``node_modules/opencode-ai/bin/opencode.exe``)."""
    log_line = f'echo "$*" >> "{log}"\n' if log else ""
    return _script(
        bin_dir / "npm",
        log_line
        + 'while [ $# -gt 0 ]; do [ "$1" = --prefix ] && prefix="$2"; shift; done\n'
        + extra
        + 'exe="$prefix/node_modules/opencode-ai/bin/opencode.exe"\n'
        + 'mkdir -p "${exe%/*}"\n'
        + f'printf \'#!/bin/sh\\necho "{version}"\\n\' > "$exe"\n'
        + 'chmod +x "$exe"\n',
    )


# ------------------------------------------------------------------------------------------------
# launcher mode


def test_launcher_mode_uses_binary_and_split_args(tmp_path: Path) -> None:
    env = {"OPENCODE_BINARY": " bunx ", "OPENCODE_BINARY_ARGS": "  --yes   opencode-ai@1.14.33 "}
    launcher = resolve_launcher(tmp_path, env, install=False)
    assert launcher == Launcher("bunx", ("--yes", "opencode-ai@1.14.33"))
    assert launcher.argv("serve", "--port", "1") == [
        "bunx",
        "--yes",
        "opencode-ai@1.14.33",
        "serve",
        "--port",
        "1",
    ]


def test_launcher_mode_defaults_binary_to_opencode(tmp_path: Path) -> None:
    launcher = resolve_launcher(tmp_path, {"OPENCODE_BINARY_ARGS": "opencode-ai@1.14.33"}, install=False)
    assert launcher == Launcher("opencode", ("opencode-ai@1.14.33",))


@pytest.mark.parametrize("blank", ["", "   "])
def test_launcher_mode_blank_binary_error_text(tmp_path: Path, blank: str) -> None:
    with pytest.raises(LauncherError) as err:
        resolve_launcher(tmp_path, {"OPENCODE_BINARY": blank, "OPENCODE_BINARY_ARGS": "x"}, install=False)
    assert str(err.value) == (
        "OPENCODE_BINARY_ARGS is set but OPENCODE_BINARY is empty.\n"
        "When using launcher args, set OPENCODE_BINARY to the launcher command (e.g., 'bunx')."
    )
    assert str(err.value) == BLANK_BINARY_TEXT


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, ()), ("", ()), ("   ", ()), ("opencode-ai@1.14.33", ("opencode-ai@1.14.33",)),
     ("--yes opencode-ai@1.14.33", ("--yes", "opencode-ai@1.14.33")), ("a\t b\nc", ("a", "b", "c"))],
)  # fmt: skip
def test_parse_launcher_args(value: str | None, expected: tuple[str, ...]) -> None:
    assert binary.parse_launcher_args(value) == expected


# ------------------------------------------------------------------------------------------------
# direct mode


def test_opencode_binary_missing_path_text(tmp_path: Path) -> None:
    with pytest.raises(LauncherError) as err:
        resolve_launcher(tmp_path, {"OPENCODE_BINARY": " /nope/opencode "}, install=False)
    assert str(err.value) == "OPENCODE_BINARY points to missing path: /nope/opencode"


def test_opencode_binary_is_made_absolute_and_canonical(tmp_path: Path) -> None:
    real = _fake_opencode(tmp_path / "real" / "opencode")
    (tmp_path / "link").symlink_to(real)
    launcher = resolve_launcher(tmp_path, {"OPENCODE_BINARY": "link"}, install=False)  # relative to cwd
    assert launcher == Launcher(str(real.resolve()))


def test_repo_local_recipe_path() -> None:
    assert (
        str(binary.repo_local_binary_path(Path("/tmp/project")))
        == "/tmp/project/.opencode/bin/opencode-v1.18.33"
    )


def test_repo_local_binary_only_with_the_opt_in(tmp_path: Path, bin_dir: Path) -> None:
    cache = tmp_path / "cache"
    cached = _fake_opencode(binary.cached_binary_path(cache))
    local = _fake_opencode(tmp_path / "proj" / ".opencode" / "bin" / f"opencode-v{PINNED_VERSION}")
    env = _env(bin_dir, cache)
    assert resolve_launcher(tmp_path / "proj", env, install=False) == Launcher(str(cached))
    opted_in = {**env, binary.PROJECT_BINARY_ENV: "1"}
    assert resolve_launcher(tmp_path / "proj", opted_in, install=False) == Launcher(str(local.resolve()))
    # Without the cache and without the opt-in, the project's binary is still not a fallback.
    cached.unlink()
    with pytest.raises(LauncherError):
        resolve_launcher(tmp_path / "proj", env, install=False)


def test_opencode_binary_preferred_over_repo_local(tmp_path: Path) -> None:
    _fake_opencode(tmp_path / "proj" / ".opencode" / "bin" / f"opencode-v{PINNED_VERSION}")
    mine = _fake_opencode(tmp_path / "mine")
    env = {"OPENCODE_BINARY": str(mine), binary.PROJECT_BINARY_ENV: "1"}
    launcher = resolve_launcher(tmp_path / "proj", env, install=False)
    assert launcher.binary == str(mine.resolve())


def test_cache_location_precedence(tmp_path: Path) -> None:
    suffix = Path(
        "orchestrator-tui", "opencode-1.18.33", "node_modules", "opencode-ai", "bin", "opencode.exe"
    )
    env = {"HOME": "/h", "XDG_CACHE_HOME": "/x", "ORCHESTRATOR_TUI_CACHE_DIR": "/o"}
    assert binary.cached_binary_path(env=env) == Path("/o") / suffix
    assert binary.cached_binary_path(env={**env, "ORCHESTRATOR_TUI_CACHE_DIR": " "}) == Path("/x") / suffix
    assert binary.cached_binary_path(env={"HOME": "/h", "XDG_CACHE_HOME": ""}) == Path("/h/.cache") / suffix
    assert binary.cached_binary_path(tmp_path) == tmp_path / suffix


def test_cached_binary_used_when_present(tmp_path: Path, bin_dir: Path) -> None:
    cache = tmp_path / "cache"
    cached = _fake_opencode(binary.cached_binary_path(cache))
    launcher = resolve_launcher(tmp_path, _env(bin_dir, cache), install=False)
    assert launcher == Launcher(str(cached))


def test_not_installed_without_install_names_the_fix(tmp_path: Path, bin_dir: Path) -> None:
    with pytest.raises(LauncherError) as err:
        resolve_launcher(tmp_path, _env(bin_dir, tmp_path / "cache"), install=False)
    text = str(err.value)
    assert "orchestrator-tui opencode install" in text
    assert "no `opencode` on PATH" in text
    assert "OPENCODE_BINARY" in text


def test_path_fallback_only_for_the_pinned_version(tmp_path: Path, bin_dir: Path) -> None:
    env = _env(bin_dir, tmp_path / "cache")
    on_path = _fake_opencode(bin_dir / "opencode", "v1.18.33")
    assert resolve_launcher(tmp_path, env, install=False) == Launcher(str(on_path))

    _fake_opencode(bin_dir / "opencode", "1.14.33")
    with pytest.raises(LauncherError) as err:
        resolve_launcher(tmp_path, env, install=False)
    assert "reports 1.14.33" in str(err.value)
    assert "orchestrator-tui opencode install" in str(err.value)


# ------------------------------------------------------------------------------------------------
# installation (fake npm)


def test_npm_missing_text(tmp_path: Path, bin_dir: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(LauncherError) as err:
        resolve_launcher(tmp_path, _env(bin_dir, cache), install=True, progress=None)
    assert str(err.value) == (
        "npm was not found on PATH; it is needed once to install OpenCode 1.18.33. Install Node.js and npm "
        "(e.g. apt-get install nodejs npm), or set OPENCODE_BINARY to an opencode 1.18.33 binary."
    )
    assert str(err.value) == NPM_MISSING_TEXT
    assert not binary.install_dir(cache).exists()


def test_install_with_npm_lays_out_and_renames_into_place(
    tmp_path: Path, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(binary, "_TICK_SECONDS", 0.1)
    npm_log = tmp_path / "npm.log"
    _fake_npm(bin_dir, log=npm_log, extra="sleep 0.35\n")
    cache = tmp_path / "cache"
    progress = io.StringIO()
    launcher = resolve_launcher(tmp_path, _env(bin_dir, cache), install=True, progress=progress)

    assert launcher == Launcher(str(binary.cached_binary_path(cache)))
    args = npm_log.read_text().split()
    assert args[0] == "install" and args[-1] == "opencode-ai@1.18.33"
    assert {"--no-audit", "--no-fund", "--loglevel=error", "--prefix"} <= set(args)
    staging = Path(args[args.index("--prefix") + 1])
    assert staging.parent == cache / "orchestrator-tui" and staging.name.startswith(".opencode-1.18.33.tmp-")
    assert not staging.exists()  # renamed into place
    assert [p.name for p in (cache / "orchestrator-tui").iterdir() if not p.name.endswith(".lock")] == [
        "opencode-1.18.33"
    ]
    out = progress.getvalue()
    assert "Installing OpenCode 1.18.33" in out and str(binary.install_dir(cache)) in out
    assert "0s " in out  # the elapsed-seconds tick while npm runs
    assert "installed in" in out

    # second time: nothing to do, npm not called again
    assert install_pinned(cache, progress=None, env=_env(bin_dir, cache)) == binary.cached_binary_path(cache)
    assert len(npm_log.read_text().splitlines()) == 1


def test_npm_failure_reports_its_stderr_and_leaves_nothing(tmp_path: Path, bin_dir: Path) -> None:
    _script(bin_dir / "npm", 'echo "npm error code E404" >&2\necho "npm error 404 Not Found" >&2\nexit 1\n')
    cache = tmp_path / "cache"
    with pytest.raises(LauncherError) as err:
        install_pinned(cache, progress=None, env=_env(bin_dir, cache))
    text = str(err.value)
    assert "npm install opencode-ai@1.18.33 failed (exit 1)" in text
    assert "npm error code E404\nnpm error 404 Not Found" in text
    assert "OPENCODE_BINARY" in text
    assert [p.name for p in (cache / "orchestrator-tui").iterdir()] == [".opencode-1.18.33.lock"]


def test_wrong_version_is_not_renamed_into_place(tmp_path: Path, bin_dir: Path) -> None:
    _fake_npm(bin_dir, version="1.0.0")
    cache = tmp_path / "cache"
    with pytest.raises(LauncherError) as err:
        install_pinned(cache, progress=None, env=_env(bin_dir, cache))
    assert "reports 1.0.0 instead of 1.18.33" in str(err.value)
    assert not binary.install_dir(cache).exists()


def test_placeholder_binary_replaced_by_platform_package(tmp_path: Path, bin_dir: Path) -> None:
    """npm with ``ignore-scripts``: no postinstall, ``opencode.exe`` is the package's placeholder."""
    platform_bin = (
        'real="$prefix/node_modules/opencode-linux-x64/bin/opencode"\n'
        'mkdir -p "${real%/*}"\n'
        f"printf '#!/bin/sh\\necho {PINNED_VERSION}\\n' > \"$real\"\n"
        'chmod +x "$real"\n'
    )
    _fake_npm(bin_dir, version="placeholder; exit 1", extra=platform_bin)
    cache = tmp_path / "cache"
    installed = install_pinned(cache, progress=None, env=_env(bin_dir, cache))
    assert (
        subprocess.run([installed, "--version"], capture_output=True, text=True).stdout.strip()
        == PINNED_VERSION
    )


def test_leftover_staging_dirs_are_cleaned(tmp_path: Path, bin_dir: Path) -> None:
    _fake_npm(bin_dir)
    cache = tmp_path / "cache"
    crashed = cache / "orchestrator-tui" / ".opencode-1.18.33.tmp-crashed"
    (crashed / "node_modules").mkdir(parents=True)
    install_pinned(cache, progress=None, env=_env(bin_dir, cache))
    assert not crashed.exists()


def test_concurrent_installers_install_once(tmp_path: Path, bin_dir: Path) -> None:
    npm_log = tmp_path / "npm.log"
    _fake_npm(bin_dir, log=npm_log, extra="sleep 0.5\n")
    cache = tmp_path / "cache"
    env = _env(bin_dir, cache)
    results: list[Path | BaseException] = []

    def install() -> None:
        try:
            results.append(install_pinned(cache, progress=io.StringIO(), env=env))
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=install) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [binary.cached_binary_path(cache)] * 3
    assert len(npm_log.read_text().splitlines()) == 1


# ------------------------------------------------------------------------------------------------
# version pin


@pytest.mark.parametrize("raw", ["v1.14.33", "1.14.33", "  v1.14.33 "])
def test_normalize_strips_v_prefix(raw: str) -> None:
    assert normalize_version(raw) == "1.14.33"


def test_normalize_strips_only_one_v() -> None:
    assert normalize_version("vv1.0") == "v1.0"


def test_validate_exact_version() -> None:
    validate_exact_version(PINNED_VERSION)
    validate_exact_version("v" + PINNED_VERSION)
    validate_exact_version(f" {PINNED_VERSION}\n")
    with pytest.raises(VersionMismatch) as err:
        validate_exact_version("1.14.18")
    assert str(err.value) == "Version mismatch: expected 1.18.33, got 1.14.18"
    with pytest.raises(VersionMismatch) as err:
        validate_exact_version(None)
    assert str(err.value) == "Version mismatch: expected 1.18.33, got None"
    with pytest.raises(VersionMismatch) as err:
        validate_exact_version("v1.18.34")
    assert str(err.value) == "Version mismatch: expected 1.18.33, got v1.18.34"  # as reported


def test_version_texts() -> None:
    assert version_mismatch_text("/x/opencode") == (
        "Embedded OpenCode server did not match pinned stable v1.18.33 (binary=/x/opencode)"
    )
    assert binary.HEALTH_FETCH_FAILED == "Failed to fetch /global/health for version validation"
    assert binary.PINNED_VERSION == "1.18.33"


# ------------------------------------------------------------------------------------------------
# recursion guard


@pytest.mark.parametrize(
    ("env", "enabled"),
    [({}, False), ({MANAGED_ENV: "1"}, True), ({MANAGED_ENV: "0"}, False), ({MANAGED_ENV: ""}, False),
     ({MANAGED_ENV: "   "}, False), ({MANAGED_ENV: "true"}, True)],
    ids=["unset", "1", "0", "empty", "whitespace", "true"],
)  # fmt: skip
def test_managed_guard_truth_table(env: dict[str, str], enabled: bool) -> None:
    assert managed_guard_enabled(env) is enabled


def test_guard_defaults_to_process_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MANAGED_ENV, "1")
    assert managed_guard_enabled() is True
    monkeypatch.delenv(MANAGED_ENV)
    assert managed_guard_enabled() is False


def test_recursion_guard_text() -> None:
    assert RECURSION_GUARD_TEXT == (
        "ENV VAR OPENCODE_ORCHESTRATOR_MANAGED is set to 1. This most commonly happens when you're in a "
        "nested orchestration session. Consult a human for assistance or try to accomplish your task "
        "without the orchestration tools."
    )


# ------------------------------------------------------------------------------------------------
# `orchestrator-tui opencode install|path`


def _run_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    full_env = {**env, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator_tui", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
    )


def test_cli_path_prints_launcher(tmp_path: Path, bin_dir: Path) -> None:
    env = {
        **_env(bin_dir, tmp_path / "cache"),
        "OPENCODE_BINARY": "bunx",
        "OPENCODE_BINARY_ARGS": "--yes x@1",
    }
    done = _run_cli(["opencode", "path"], env, tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "bunx --yes x@1\n", "")


def test_cli_path_error_is_one_clear_message(tmp_path: Path, bin_dir: Path) -> None:
    done = _run_cli(["opencode", "path"], _env(bin_dir, tmp_path / "cache"), tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("orchestrator-tui: OpenCode 1.18.33 is not installed")
    assert "Traceback" not in done.stderr


def test_cli_install_installs_then_says_already_there(tmp_path: Path, bin_dir: Path) -> None:
    _fake_npm(bin_dir)
    cache = tmp_path / "cache"
    first = _run_cli(["opencode", "install"], _env(bin_dir, cache), tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout == f"OpenCode 1.18.33 is installed: {binary.cached_binary_path(cache)}\n"
    assert "Installing OpenCode 1.18.33" in first.stderr
    second = _run_cli(["opencode", "install"], _env(bin_dir, cache), tmp_path)
    assert second.returncode == 0
    assert second.stdout == f"OpenCode 1.18.33 is already installed: {binary.cached_binary_path(cache)}\n"
    path = _run_cli(["opencode", "path"], _env(bin_dir, cache), tmp_path)
    assert path.stdout == f"{binary.cached_binary_path(cache)}\n"


def test_cli_install_without_npm(tmp_path: Path, bin_dir: Path) -> None:
    done = _run_cli(["opencode", "install"], _env(bin_dir, tmp_path / "cache"), tmp_path)
    assert done.returncode == 1
    assert done.stderr == f"orchestrator-tui: {NPM_MISSING_TEXT}\n"


def test_import_is_stdlib_only() -> None:
    code = (
        "import sys; import orchestrator_tui.opencode.binary; "
        "bad = [m for m in ('httpx', 'pydantic', 'textual', 'asyncio') if m in sys.modules]; print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})  # fmt: skip
    assert done.stdout.strip() == "[]", done.stderr


def test_the_dashboard_installs_opencode_before_it_takes_the_screen(
    tmp_path: Path, bin_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The install's progress goes to the terminal before the dashboard draws on it, never over it;
    nothing is installed for a server we attach to, and a failure is left to the dashboard."""
    from orchestrator_tui.opencode import keeper
    from orchestrator_tui.pool.discovery import PoolFolder
    from orchestrator_tui.pool.service import ServerSpec
    from orchestrator_tui.tui.main import install_before_the_screen

    cache = tmp_path / "cache"
    env = _env(bin_dir, cache)
    install_before_the_screen(ServerSpec(cwd=tmp_path, env=env))  # no npm: no exception, nothing there
    assert not binary.cached_binary_path(cache).exists()
    assert "npm was not found" not in capsys.readouterr().err  # the dashboard says it, with the fix

    npm_log = tmp_path / "npm.log"
    _fake_npm(bin_dir, log=npm_log)
    install_before_the_screen(ServerSpec(cwd=tmp_path, env=env, attach_url="http://127.0.0.1:9"))
    assert not npm_log.exists()  # attached: not ours to start
    # The pool's server runs already (its keeper holds the lock): joining it needs no binary.
    folder = PoolFolder(tmp_path / "pool")
    held = os.open(folder.path / keeper.SERVER_ALIVE_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        install_before_the_screen(ServerSpec(cwd=tmp_path, env=env), folder)
        assert not npm_log.exists()
    finally:
        os.close(held)
    install_before_the_screen(ServerSpec(cwd=tmp_path, env=env))
    assert binary.cached_binary_path(cache).exists()
    err = capsys.readouterr().err
    assert "Installing OpenCode 1.18.33" in err and "installed in" in err
