"""Shared fixtures: the real pinned OpenCode, isolated storage, the scripted model.

Every ``opencode serve`` a test starts runs in its own process group, with OpenCode's
storage in temporary XDG dirs (it honours all four), and is stopped at teardown even when
the test fails. The binary itself comes from the user cache, where the program installs it
on first use, so the 350 MB install happens once per machine, not once per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator_tui.opencode import binary
from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

#: Run the tests on another OpenCode release: exact (``1.17.19``) or a line (``1.17.x``: its newest
#: release npm serves for this machine), installed into the user cache beside the pinned one.
#: Only tests/test_opencode_lines.py is meant for it (``./dev test-opencode-lines``): it attaches
#: to the server as a user would; a managed server refuses any release but the pinned one.
OPENCODE_VERSION_ENV = "ORCHESTRATOR_TUI_OPENCODE_VERSION"
#: The older OpenCode lines' smoke tests run through `./dev test-opencode-lines`, which sets
#: OPENCODE_VERSION_ENV; the default suite does not collect them at all (time), rather than
#: listing them as skipped.
collect_ignore = [] if os.environ.get(OPENCODE_VERSION_ENV, "").strip() else ["test_opencode_lines.py"]


def requested_opencode_version() -> str | None:
    """The exact release `OPENCODE_VERSION_ENV` asks for (None: the pinned one, as usual)."""
    spec = os.environ.get(OPENCODE_VERSION_ENV, "").strip()
    return binary.resolve_release(spec) if spec else None


def pytest_report_header() -> str | None:
    """Say which OpenCode release a run of another line is on (``./dev test-opencode-lines``)."""
    spec = os.environ.get(OPENCODE_VERSION_ENV, "").strip()
    return f"OpenCode: {spec} = {requested_opencode_version()} ({OPENCODE_VERSION_ENV})" if spec else None


@pytest.fixture(scope="session")
def opencode_version() -> str:
    """The release the tests run: the pinned one, or the one `OPENCODE_VERSION_ENV` names."""
    return requested_opencode_version() or binary.PINNED_VERSION


@pytest.fixture(scope="session")
def opencode_binary(opencode_version: str) -> str:
    """Path (or launcher) of the OpenCode the tests run (the pinned one unless
    `OPENCODE_VERSION_ENV` names another), installing it into the user cache if needed."""
    if opencode_version != binary.PINNED_VERSION:
        return str(binary.install_version(opencode_version))
    launcher = binary.resolve_launcher(Path.cwd(), os.environ)
    assert not launcher.args, "tests expect a direct OpenCode binary"
    return launcher.binary


@pytest.fixture(scope="session")
def xdg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One isolated XDG tree per test session.

    Kept for the whole session on purpose: OpenCode runs a background ``npm install`` into a
    fresh config dir on start; re-using the dir means it runs once, not on every server start.
    """
    root = tmp_path_factory.mktemp("xdg")
    for name in ("data", "config", "cache", "state"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="session")
def scripted_model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture(scope="session")
def opencode_base_env(xdg_root: Path, opencode_binary: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Isolated OpenCode storage and the pinned binary: what every server a test starts gets."""
    env = dict(os.environ)
    for var in ("OPENCODE_ORCHESTRATOR_MANAGED", "OPENCODE_BINARY_ARGS", "OPENCODE_CONFIG_CONTENT"):
        env.pop(var, None)
    env.update(
        XDG_DATA_HOME=str(xdg_root / "data"),
        XDG_CONFIG_HOME=str(xdg_root / "config"),
        XDG_CACHE_HOME=str(xdg_root / "cache"),
        XDG_STATE_HOME=str(xdg_root / "state"),
        OPENCODE_BINARY=opencode_binary,
        AGENTIC_LOGGING_DISABLED="1",
        OPENCODE_DISABLE_MODELS_FETCH="1",
    )
    asyncio.run(_settle_config_dir(env, tmp_path_factory.mktemp("warm-up")))
    return env


async def _settle_config_dir(env: dict[str, str], project: Path) -> None:
    """Let OpenCode finish its first-start work in the shared config dir before any test runs.

    On a fresh config dir OpenCode installs ``@opencode-ai/plugin`` into it, under a lock in
    ``$XDG_STATE_HOME/opencode/locks`` that only counts as stale after 60 s; a directory's first
    request waits for that install. A test that stops its server a second after starting it
    (many do) could kill the install with the lock held, and the next server of the session
    would then hang for a minute on its first request. Here one server does it once, to the end:
    its first request for a directory returns only after the install.
    """
    from orchestrator_tui.opencode.client import OpenCodeClient
    from orchestrator_tui.opencode.process import ManagedServer

    server = await ManagedServer.start(launcher=binary.Launcher(env["OPENCODE_BINARY"]), cwd=project, env=env)
    try:
        client = OpenCodeClient(
            server.base_url, auth=(server.username, server.password), directory=str(project), timeout=180
        )
        try:
            await client.list_sessions()
        finally:
            await client.aclose()
    finally:
        await server.stop()


@pytest.fixture(params=["api", "legacy"])
def both_backends(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test once per OpenCode route family (opencode/client.py), forced for every client it makes.

    Only the tests of the OpenCode layer use it (``pytest.mark.usefixtures("both_backends")``);
    the rest of the suite runs with the default, ``auto``, which is ``api`` on the pinned server.
    """
    from orchestrator_tui.opencode.client import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, request.param)
    return str(request.param)


@pytest.fixture
def opencode_env(opencode_base_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """The environment a managed server is started with, plus this test's own pool state folder."""
    return dict(opencode_base_env, ORCHESTRATOR_TUI_STATE_DIR=str(tmp_path / "state"))


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    """A fresh git project (OpenCode scopes sessions and config to the working directory)."""
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    return project


@pytest.fixture
def model_config(scripted_model: ScriptedModelServer) -> Callable[..., str]:
    """OPENCODE_CONFIG_CONTENT for the scripted model, with optional overrides."""

    def make(**overrides: Any) -> str:
        return json.dumps(opencode_config(scripted_model.base_url, **overrides))

    return make


@pytest.fixture
async def make_orchestrator(
    project_dir: Path, opencode_env: dict[str, str], model_config: Callable[..., str]
) -> AsyncIterator[Callable[..., Any]]:
    """Build Orchestrators on managed real servers; all of them are closed at teardown."""
    from orchestrator_tui.orchestrator.tools import Orchestrator
    from orchestrator_tui.pool.registry import Registry
    from orchestrator_tui.pool.service import PoolService, ServerSpec

    made: list[Orchestrator] = []
    registries: list[Registry] = []

    def make(
        *, cwd: Path | None = None, env: dict[str, str] | None = None, config: str | None = None, **overrides: Any
    ) -> Orchestrator:
        environment = dict(opencode_env if env is None else env)
        spec = ServerSpec(
            cwd=cwd or project_dir,
            config_content=config if config is not None else model_config(**overrides),
            env=environment,
        )
        registry = Registry(Path(environment["ORCHESTRATOR_TUI_STATE_DIR"]) / "default" / "registry.sqlite3")
        registries.append(registry)
        orch = Orchestrator(PoolService(spec), registry=registry, env=environment)
        made.append(orch)
        return orch

    yield make
    for orch in made:
        await orch.close()
    for registry in registries:
        registry.close()


@pytest.fixture
async def orchestrator(make_orchestrator: Callable[..., Any]) -> Any:
    return make_orchestrator()
