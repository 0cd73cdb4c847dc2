"""The pinned OpenCode binary: where it is, how to install it, and how to check its version.

Stdlib only and cheap to import: `orchestrator-tui opencode install|path` and the MCP worker's
start path use it before anything heavy is loaded.

Resolution order (the reference's, with our cache replacing its PATH fallback, and
the project's binary only on request):

1. `OPENCODE_BINARY_ARGS` non-empty → launcher mode (`OPENCODE_BINARY` or `opencode`, looked up on PATH).
2. `OPENCODE_BINARY` → that file (absolute, symlinks resolved); missing → error.
3. Only with `ORCHESTRATOR_TUI_PROJECT_BINARY=1`: `<cwd>/.opencode/bin/opencode-v1.18.33` (the
   reference's repo-local recipe). A project is untrusted input: whoever can get a file into the
   repository (a pull request, a dependency, an agent's edit) could put a binary there, and it would
   run with the user's rights and the server's password. Without the opt-in it is never run.
4. The pinned copy in the user cache, `<cache>/orchestrator-tui/opencode-1.18.33/node_modules/opencode-ai/
   bin/opencode.exe`, where cache = `ORCHESTRATOR_TUI_CACHE_DIR`, else `$XDG_CACHE_HOME`, else `~/.cache`.
   Installed on first use with `npm` (once, atomically, under a file lock), or — when installing is not
   allowed — `opencode` on PATH if it reports the pinned version.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from orchestrator_tui import PINNED_OPENCODE_VERSION

log = logging.getLogger(__name__)

PINNED_VERSION = PINNED_OPENCODE_VERSION
NPM_PACKAGE = "opencode-ai"
NPM_SPEC = f"{NPM_PACKAGE}@{PINNED_VERSION}"

#: The opt-in to run the project's own `.opencode/bin/opencode-v<PINNED>` (1, true, yes or on).
PROJECT_BINARY_ENV = "ORCHESTRATOR_TUI_PROJECT_BINARY"

#: The OpenCode release lines a front end attaches to (``--attach``, a pool's ``[[server]]``, or
#: the server a pool's record names). The pinned release is tested on every change; the newest
#: release of each other line with ``./dev test-opencode-lines`` (the results are in the README,
#: "Which OpenCode"). npm serves no 1.16; 1.14 and older are outside the range (the README says
#: how 1.14.41 fared). The tests of a line outside the range allow it explicitly, here, to find
#: out what works on it.
ATTACH_LINES: tuple[str, ...] = ("1.15", "1.17", "1.18")


def _lines_text(lines: tuple[str, ...]) -> str:
    names = [f"{line}.x" for line in lines]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


#: `ATTACH_LINES` as the user reads it (``1.15.x, 1.17.x or 1.18.x``); ``x`` is any patch number.
ATTACH_VERSIONS = _lines_text(ATTACH_LINES)

#: Recursion guard. The managed `opencode serve` always gets it set to 1.
MANAGED_ENV = "OPENCODE_ORCHESTRATOR_MANAGED"
RECURSION_GUARD_TEXT = (
    "ENV VAR OPENCODE_ORCHESTRATOR_MANAGED is set to 1. This most commonly happens when you're in a "
    "nested orchestration session. Consult a human for assistance or try to accomplish your task without "
    "the orchestration tools."
)

#: Outer error texts of the reference; the callers that wrap use these.
RESOLVE_FAILED = "Failed to resolve OpenCode launcher configuration"
HEALTH_FETCH_FAILED = "Failed to fetch /global/health for version validation"

BLANK_BINARY_TEXT = (
    "OPENCODE_BINARY_ARGS is set but OPENCODE_BINARY is empty.\n"
    "When using launcher args, set OPENCODE_BINARY to the launcher command (e.g., 'bunx')."
)
NPM_MISSING_TEXT = (
    f"npm was not found on PATH; it is needed once to install OpenCode {PINNED_VERSION}. "
    "Install Node.js and npm (e.g. apt-get install nodejs npm), "
    f"or set OPENCODE_BINARY to an opencode {PINNED_VERSION} binary."
)
#: The fix of a failed install (its error texts end with it too, as :data:`_ALTERNATIVES`).
INSTALL_FIX = (
    f"fix the problem and run `orchestrator-tui opencode install` again, "
    f"or set OPENCODE_BINARY to an opencode {PINNED_VERSION} binary"
)
_ALTERNATIVES = f"{INSTALL_FIX[0].upper()}{INSTALL_FIX[1:]}."

_NPM_TIMEOUT = 15 * 60.0
_VERSION_TIMEOUT = 60.0
_TICK_SECONDS = 3.0


class LauncherError(Exception):
    """Resolving or installing OpenCode failed; ``str(exc)`` is the text to show the user, ``fix``
    what to do about it (shown apart, where the text is cut short)."""

    def __init__(self, text: str, fix: str) -> None:
        super().__init__(text)
        self.fix = fix


class VersionMismatch(Exception):
    """The server (or binary) does not report the pinned version."""


@dataclass(frozen=True)
class Launcher:
    """What to execute to run OpenCode: ``binary`` followed by ``args``, then the sub-command."""

    binary: str
    args: tuple[str, ...] = ()

    def argv(self, *extra: str) -> list[str]:
        return [self.binary, *self.args, *extra]

    def __str__(self) -> str:
        return shlex.join(self.argv())


# --------------------------------------------------------------------------------------------------
# versions and the recursion guard


def normalize_version(v: str) -> str:
    """Trim, then strip one leading ``v`` (``"  v1.18.33 "`` → ``"1.18.33"``)."""
    v = v.strip()
    return v[1:] if v.startswith("v") else v


def validate_exact_version(actual: str | None) -> None:
    """Raise `VersionMismatch` unless ``actual`` normalizes to the pinned version (None = not reported)."""
    if actual is None or normalize_version(actual) != PINNED_VERSION:
        raise VersionMismatch(f"Version mismatch: expected {PINNED_VERSION}, got {actual}")


def attach_versions() -> str:
    """The attachable versions as the user reads them, from `ATTACH_LINES` as it is now."""
    return _lines_text(ATTACH_LINES)


def attach_version_supported(actual: str | None) -> bool:
    """Whether a server reporting ``actual`` is one we attach to (see `ATTACH_LINES`)."""
    if actual is None:
        return False
    version = normalize_version(actual)
    for line in ATTACH_LINES:
        series = f"{line}."
        if version.startswith(series) and version[len(series) :].isdigit():
            return True
    return False


def attach_version_text(actual: str | None, url: str) -> str:
    """Why we do not attach to the server at ``url`` (the caller adds how to fix it)."""
    return (
        f"OpenCode at {url} reports version {actual or '(none)'}; orchestrator-tui works only with "
        f"OpenCode {attach_versions()} (tested with {PINNED_VERSION})"
    )


def version_mismatch_text(binary: str) -> str:
    return f"Embedded OpenCode server did not match pinned stable v{PINNED_VERSION} (binary={binary})"


def managed_guard_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Enabled for any value but unset, empty, blank or ``0``."""
    value = (os.environ if env is None else env).get(MANAGED_ENV)
    if value is None:
        return False
    value = value.strip()
    return value not in ("", "0")


# --------------------------------------------------------------------------------------------------
# paths


def parse_launcher_args(value: str | None) -> tuple[str, ...]:
    """``OPENCODE_BINARY_ARGS``: trimmed, split on whitespace, no shell quoting."""
    return tuple((value or "").split())


def repo_local_binary_path(cwd: Path) -> Path:
    """The reference's repo-local recipe: ``<cwd>/.opencode/bin/opencode-v<PINNED>``."""
    return Path(cwd) / ".opencode" / "bin" / f"opencode-v{PINNED_VERSION}"


def cache_base(env: Mapping[str, str] | None = None) -> Path:
    """``ORCHESTRATOR_TUI_CACHE_DIR``, else ``$XDG_CACHE_HOME``, else ``~/.cache`` (blank counts as unset)."""
    env = os.environ if env is None else env
    for name in ("ORCHESTRATOR_TUI_CACHE_DIR", "XDG_CACHE_HOME"):
        value = (env.get(name) or "").strip()
        if value:
            return Path(value).expanduser()
    home = (env.get("HOME") or "").strip()
    return (Path(home) if home else Path.home()) / ".cache"


def install_dir(
    cache_dir: Path | None = None, env: Mapping[str, str] | None = None, *, version: str = PINNED_VERSION
) -> Path:
    """``<cache>/orchestrator-tui/opencode-<version>``: the npm prefix of an install (the pinned one
    unless the tests of other OpenCode lines ask for another)."""
    base = cache_dir if cache_dir is not None else cache_base(env)
    return Path(base) / "orchestrator-tui" / f"opencode-{version}"


def _binary_in(prefix: Path) -> Path:
    return prefix / "node_modules" / NPM_PACKAGE / "bin" / "opencode.exe"


def cached_binary_path(
    cache_dir: Path | None = None, env: Mapping[str, str] | None = None, *, version: str = PINNED_VERSION
) -> Path:
    """Where the pinned install (or that of ``version``) keeps the executable (whether or not it is there)."""
    return _binary_in(install_dir(cache_dir, env, version=version))


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def project_binary_allowed(env: Mapping[str, str] | None = None) -> bool:
    """``ORCHESTRATOR_TUI_PROJECT_BINARY`` is 1, true, yes or on (trimmed, any case)."""
    value = (os.environ if env is None else env).get(PROJECT_BINARY_ENV, "")
    return value.strip().lower() in ("1", "true", "yes", "on")


# --------------------------------------------------------------------------------------------------
# resolution


def resolve_launcher(
    cwd: Path,
    env: Mapping[str, str] | None = None,
    *,
    install: bool = True,
    progress: TextIO | None = sys.stderr,
) -> Launcher:
    """Decide what to run as ``opencode`` (see the module docstring); raises `LauncherError`."""
    env = os.environ if env is None else env
    cwd = Path(cwd)
    raw_binary = env.get("OPENCODE_BINARY")
    binary = raw_binary.strip() if raw_binary is not None else None

    launcher_args = parse_launcher_args(env.get("OPENCODE_BINARY_ARGS"))
    if launcher_args:
        if binary is None:
            return Launcher("opencode", launcher_args)
        if not binary:
            raise LauncherError(
                BLANK_BINARY_TEXT, "set OPENCODE_BINARY to the launcher command, or unset OPENCODE_BINARY_ARGS"
            )
        return Launcher(binary, launcher_args)

    if binary:
        path = Path(binary).expanduser()
        if not path.is_absolute():
            path = cwd / path
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise LauncherError(
                f"OPENCODE_BINARY points to missing path: {binary}",
                f"point OPENCODE_BINARY at an existing opencode {PINNED_VERSION} binary, or unset it to use the "
                "pinned copy",
            ) from None
        return Launcher(str(resolved))

    local = repo_local_binary_path(cwd)
    if project_binary_allowed(env):
        if local.exists():
            return Launcher(str(local.resolve()))
    elif local.exists() or local.is_symlink():
        log.info("not running %s: a binary from the project runs only with %s=1", local, PROJECT_BINARY_ENV)

    cached = cached_binary_path(env=env)
    if _is_executable_file(cached):
        return Launcher(str(cached))
    if install:
        return Launcher(str(install_pinned(cache_base(env), progress=progress, env=env)))

    on_path = shutil.which("opencode", path=env.get("PATH"))
    if on_path:
        version = binary_version(on_path, env=env)
        if version is not None and normalize_version(version) == PINNED_VERSION:
            return Launcher(on_path)
        found = f"`opencode` on PATH ({on_path}) reports {version or 'no version'}"
    else:
        found = "there is no `opencode` on PATH"
    raise LauncherError(
        f"OpenCode {PINNED_VERSION} is not installed: {cached} does not exist and {found}.\n"
        f"Run `orchestrator-tui opencode install` (needs npm once), "
        f"or set OPENCODE_BINARY to an opencode {PINNED_VERSION} binary.",
        f"run `orchestrator-tui opencode install` (needs npm once), or set OPENCODE_BINARY to an opencode "
        f"{PINNED_VERSION} binary",
    )


def binary_version(
    binary: str | os.PathLike[str], env: Mapping[str, str] | None = None, timeout: float = _VERSION_TIMEOUT
) -> str | None:
    """``<binary> --version`` (first line of stdout), or None if it fails.

    OpenCode creates its XDG directories even for ``--version``; they are pointed at a throw-away
    directory so that checking a binary leaves the user's (or a test's) storage untouched.
    """
    child_env = dict(os.environ if env is None else env)
    with tempfile.TemporaryDirectory(prefix="orchestrator-tui-version-") as scratch:
        for name in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
            child_env[name] = os.path.join(scratch, name.lower())
        try:
            done = subprocess.run(
                [os.fspath(binary), "--version"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                env=child_env,
                timeout=timeout,
                check=False,
                start_new_session=True,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    if done.returncode != 0:
        return None
    lines = done.stdout.strip().splitlines()
    return lines[0].strip() if lines else None


# --------------------------------------------------------------------------------------------------
# installation


@contextlib.contextmanager
def _install_lock(root: Path, progress: TextIO | None, version: str = PINNED_VERSION) -> Iterator[None]:
    lock_path = root / f".opencode-{version}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(progress, f"Another process is installing OpenCode {version}; waiting for it ...")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _say(progress: TextIO | None, text: str, end: str = "\n") -> None:
    if progress is None:
        return
    with contextlib.suppress(Exception):
        progress.write(text + end)
        progress.flush()


def install_pinned(
    cache_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
    *,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Install ``opencode-ai@<PINNED>`` into the cache (if not already there) and return the binary."""
    return install_version(PINNED_VERSION, cache_dir, progress, env=env)


def install_version(
    version: str,
    cache_dir: Path | None = None,
    progress: TextIO | None = sys.stderr,
    *,
    env: Mapping[str, str] | None = None,
) -> Path:
    """Install ``opencode-ai@<version>`` into the cache (if not already there) and return the binary.

    The program itself only ever installs the pinned version (`install_pinned`); another exact
    version is installed for the tests of the older OpenCode lines (``./dev test-opencode-lines``),
    next to it, as ``<cache>/orchestrator-tui/opencode-<version>``.

    ``cache_dir`` is the cache base (default `cache_base()`); the install lands in
    ``<cache_dir>/orchestrator-tui/opencode-<version>``. npm installs into a temporary directory next
    to the target, the binary's ``--version`` is checked, and only then is the directory renamed into
    place, so the target is either complete or absent. A file lock makes concurrent installers wait
    for one install instead of doing two.
    """
    env = os.environ if env is None else env
    wanted = normalize_version(version)
    spec = f"{NPM_PACKAGE}@{wanted}"
    target = install_dir(cache_dir, env, version=wanted)
    binary = _binary_in(target)
    if _is_executable_file(binary):
        return binary
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LauncherError(
            f"Cannot create the OpenCode cache directory {root}: {exc}",
            f"make {root.parent} a folder you can write (or set XDG_CACHE_HOME to one), or set OPENCODE_BINARY "
            f"to an opencode {PINNED_VERSION} binary",
        ) from None

    with _install_lock(root, progress, wanted):
        if _is_executable_file(binary):  # a concurrent installer finished while we waited
            _say(progress, f"OpenCode {wanted} was installed meanwhile by another process.")
            return binary
        _remove_leftovers(root, target)
        npm = shutil.which("npm", path=env.get("PATH"))
        if npm is None:
            raise LauncherError(
                NPM_MISSING_TEXT,
                f"install Node.js and npm (used once to install OpenCode {wanted}), or set OPENCODE_BINARY",
            )
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=root))
        try:
            staging.chmod(0o755)
            _run_npm(npm, staging, env, progress, target, spec)
            _say(progress, "checking the binary ... ", end="")
            staged_binary = _binary_in(staging)
            found = _verified_version(staging, staged_binary, env, wanted)
            if found is None or normalize_version(found) != wanted:
                raise LauncherError(
                    f"npm installed {spec}, but {staged_binary} --version reports "
                    f"{found or 'nothing (it does not run)'} instead of {wanted}.\n{_ALTERNATIVES}",
                    INSTALL_FIX,
                )
            os.rename(staging, target)
        except BaseException:
            _say(progress, "failed")
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _say(progress, f"ok\nOpenCode {wanted} installed in {time.monotonic() - started:.0f} s: {binary}")
    return binary


def _platform_package() -> str | None:
    """The npm package holding this machine's OpenCode binary (``opencode-linux-x64``), if known."""
    system = {"linux": "linux", "darwin": "darwin"}.get(sys.platform)
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(os.uname().machine.lower())
    return f"opencode-{system}-{arch}" if system and arch else None


def _npm_versions(npm: str, package: str, env: Mapping[str, str]) -> list[str]:
    done = subprocess.run(
        [npm, "view", package, "versions", "--json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=dict(env),
        timeout=120,
        check=False,
    )
    try:
        versions = json.loads(done.stdout)
    except ValueError:
        versions = None
    if done.returncode != 0 or not isinstance(versions, list):
        raise LauncherError(
            f"npm view {package} versions failed (exit {done.returncode}): {done.stderr.strip()[-500:]}",
            "check npm's access to the registry, or give an exact version (e.g. 1.17.19)",
        )
    return [v for v in versions if isinstance(v, str)]


def resolve_release(spec: str, env: Mapping[str, str] | None = None) -> str:
    """An exact version for ``spec``: itself when exact (``1.17.19``), else the newest release of a
    line (``1.17.x``) that npm serves both as ``opencode-ai`` and as this machine's binary package
    (``opencode-linux-x64``): a release whose binary package was never published does not install
    (``opencode-ai@1.17.20`` is one). For the tests of other lines (``./dev test-opencode-lines``)."""
    wanted = normalize_version(spec)
    if not wanted.endswith(".x"):
        return wanted
    env = os.environ if env is None else env
    npm = shutil.which("npm", path=env.get("PATH"))
    if npm is None:
        raise LauncherError(NPM_MISSING_TEXT, "install Node.js and npm, or give an exact version (e.g. 1.17.19)")
    prefix = wanted.removesuffix("x")

    def patches(package: str) -> set[int]:
        found = (v[len(prefix) :] for v in _npm_versions(npm, package, env) if v.startswith(prefix))
        return {int(p) for p in found if p.isdigit()}

    numbers = patches(NPM_PACKAGE)
    platform = _platform_package()
    if platform is not None:
        numbers &= patches(platform)
    if not numbers:
        raise LauncherError(
            f"npm has no release of {NPM_PACKAGE} {wanted}" + (f" with a {platform} package" if platform else ""),
            "name a line npm serves",
        )
    return f"{prefix}{max(numbers)}"


def _remove_leftovers(root: Path, target: Path) -> None:
    """Under the lock nobody else installs: staging dirs are from crashed runs; a target without a
    working binary is damaged. Both are removed."""
    for stale in root.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists() or target.is_symlink():
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _run_npm(
    npm: str, staging: Path, env: Mapping[str, str], progress: TextIO | None, target: Path, spec: str = NPM_SPEC
) -> None:
    argv = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error", spec]
    _say(progress, f"Installing OpenCode {spec.rpartition('@')[2]} (npm {spec}) into {target} ", end="")
    started = time.monotonic()
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=staging,
                env=dict(env),
                start_new_session=True,
            )
        except OSError as exc:
            raise LauncherError(f"Could not run npm ({npm}): {exc}\n{_ALTERNATIVES}", INSTALL_FIX) from None
        try:
            while True:
                try:
                    rc = proc.wait(timeout=_TICK_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    elapsed = time.monotonic() - started
                    if elapsed > _NPM_TIMEOUT:
                        _kill_group(proc)
                        raise LauncherError(
                            f"npm install {spec} did not finish within {int(_NPM_TIMEOUT)} s.\n{_ALTERNATIVES}",
                            INSTALL_FIX,
                        ) from None
                    _say(progress, f"{elapsed:.0f}s ", end="")
        except BaseException:
            _kill_group(proc)
            raise
        if rc != 0:
            err.seek(0)
            tail = deque(err.read().decode(errors="replace").splitlines(), maxlen=15)
            detail = "\n".join(line for line in tail if line.strip()) or "(npm printed nothing on stderr)"
            raise LauncherError(f"npm install {spec} failed (exit {rc}):\n{detail}\n{_ALTERNATIVES}", INSTALL_FIX)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _verified_version(
    staging: Path, staged_binary: Path, env: Mapping[str, str], wanted: str = PINNED_VERSION
) -> str | None:
    """``--version`` of the staged binary. If npm ran without lifecycle scripts (``ignore-scripts``),
    ``opencode.exe`` is the package's placeholder: do what its postinstall would do and link the
    platform package's binary in its place."""
    version = binary_version(staged_binary, env) if _is_executable_file(staged_binary) else None
    if version is not None and normalize_version(version) == wanted:
        return version
    for candidate in sorted((staging / "node_modules").glob("opencode-*/bin/opencode")):
        candidate_version = binary_version(candidate, env)
        if candidate_version is None or normalize_version(candidate_version) != wanted:
            continue
        staged_binary.unlink(missing_ok=True)
        try:
            os.link(candidate, staged_binary)
        except OSError:
            shutil.copy2(candidate, staged_binary)
        staged_binary.chmod(0o755)
        return candidate_version
    return version


# --------------------------------------------------------------------------------------------------
# command line: `orchestrator-tui opencode install|path`


def cli(action: str) -> int:
    try:
        if action == "install":
            return _cli_install()
        if action == "path":
            launcher = resolve_launcher(Path.cwd(), install=False, progress=None)
            print(launcher)
            return 0
        print(f"orchestrator-tui: unknown opencode action {action!r} (use install or path)", file=sys.stderr)
        return 2
    except LauncherError as exc:
        print(f"orchestrator-tui: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("orchestrator-tui: interrupted", file=sys.stderr)
        return 130


def _cli_install() -> int:
    binary = cached_binary_path()
    if _is_executable_file(binary):
        print(f"OpenCode {PINNED_VERSION} is already installed: {binary}")
    else:
        binary = install_pinned(progress=sys.stderr)
        print(f"OpenCode {PINNED_VERSION} is installed: {binary}")
    if (os.environ.get("OPENCODE_BINARY") or "").strip() or parse_launcher_args(
        os.environ.get("OPENCODE_BINARY_ARGS")
    ):
        print(
            "note: OPENCODE_BINARY/OPENCODE_BINARY_ARGS are set and take precedence over this copy "
            "(see `orchestrator-tui opencode path`).",
            file=sys.stderr,
        )
    return 0
