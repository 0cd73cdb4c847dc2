"""Starting the dashboard (``orchestrator-tui``) and the demo (``orchestrator-tui demo``)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator_tui import __version__
from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.discovery import Membership, PoolFolder, join_pool
from orchestrator_tui.pool.registry import PoolStateError, Registry, state_root
from orchestrator_tui.pool.servers import ServerConfigError, load_servers
from orchestrator_tui.pool.service import PoolService, ServerSpec

#: What the demo's sessions do: (first prompt line = title, scripted-model directive).
DEMO_SESSIONS: list[tuple[str, str]] = [
    (
        "Write a haiku about supervising agents",
        "STREAM Many small agents / humming through the night shift — / one human says yes.\n\n"
        "Each session streams its text here as it arrives; the pane on the right follows the "
        "selected one.",
    ),
    ("Count slowly to forty", "SLOW 40 150"),
    ("Check the free disk space", "BASH df -h ."),
    ("Fix the typo in the README", "EDIT {project}/README.md teh => the"),
    ("Ask me which colour to use", "ASK"),
    ("Summarise the project notes", "READ {project}/NOTES.md"),
]


@dataclass
class DemoEnvironment:
    """A throwaway project, isolated OpenCode storage and the scripted model."""

    project: Path
    env: dict[str, str]
    config: str
    model: Any

    @classmethod
    def create(cls) -> DemoEnvironment:
        from orchestrator_tui.opencode.binary import cache_base
        from orchestrator_tui.scripted_model.server import ScriptedModelServer, opencode_config

        root = Path(tempfile.mkdtemp(prefix="orchestrator-tui-demo-"))
        project = root / "project"
        project.mkdir()
        (project / "README.md").write_text("# Demo project\n\nThis is teh demo project of orchestrator-tui.\n")
        (project / "NOTES.md").write_text("Notes: the demo runs on a scripted model; no provider needed.\n")
        subprocess.run(["git", "init", "-q", str(project)], check=False)
        # OpenCode installs a plugin into its config dir on first start; keep that dir between demos.
        config_home = cache_base() / "orchestrator-tui" / "demo-config"
        config_home.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            XDG_DATA_HOME=str(root / "data"),
            XDG_STATE_HOME=str(root / "state"),
            XDG_CACHE_HOME=str(root / "cache"),
            XDG_CONFIG_HOME=str(config_home),
            ORCHESTRATOR_TUI_CACHE_DIR=str(cache_base()),
            ORCHESTRATOR_TUI_STATE_DIR=str(root / "orchestrator-state"),
        )
        env.pop("OPENCODE_CONFIG_CONTENT", None)
        model = ScriptedModelServer().start()
        config = opencode_config(
            model.base_url,
            permission={"bash": "ask", "edit": "ask", "external_directory": "ask", "read": "allow"},
        )
        return cls(project=project, env=env, config=json.dumps(config), model=model)

    def close(self) -> None:
        self.model.stop()


async def start_demo_sessions(actions: PoolActions, project: Path) -> None:
    for title, directive in DEMO_SESSIONS:
        await actions.new_session(f"{title}\n{directive.format(project=project)}")
        await asyncio.sleep(0.4)


def _member_directories(registry: Registry | None) -> Callable[[], list[str]] | None:
    """Where the pool's front ends work (each worker's directory), read at every resync."""
    if registry is None:
        return None

    def directories() -> list[str]:
        return [m.directory for m in registry.members() if m.directory]

    return directories


def install_before_the_screen(spec: ServerSpec, folder: PoolFolder | None = None) -> None:
    """Install the pinned OpenCode now if the pool would start it and it is missing, while the
    terminal is still a terminal: npm takes 10-60 s, and its progress written once the dashboard
    owns the screen would be drawn over it.

    Nothing to do for a server we attach to, a pool whose server runs already (``folder``: the
    keeper's lock, which is what decides whether `start_shared` starts one), or inside an
    OpenCode session (none may be started there). A failure is left to the dashboard, which
    shows it with the fix and keeps retrying.
    """
    from orchestrator_tui.opencode import binary
    from orchestrator_tui.pool.service import recursion_guard

    if spec.attach_url or recursion_guard(spec.env) is not None:
        return
    if folder is not None:
        with contextlib.suppress(OSError):  # the pool's own start says what is wrong with the folder
            if folder.server_kept():
                return
    with contextlib.suppress(binary.LauncherError):
        # sys.stderr as it is now (the terminal), not as it was when binary was imported.
        binary.resolve_launcher(spec.cwd, spec.env if spec.env is not None else os.environ, progress=sys.stderr)


def run_dashboard(
    *,
    attach: str | None = None,
    demo: bool = False,
    bell: bool = True,
    pool: str | None = None,
    project: Path | None = None,
    servers: Sequence[str] = (),
    notify_command: str | None = None,
) -> int:
    from orchestrator_tui.tui.app import DashboardApp

    demo_env = DemoEnvironment.create() if demo else None
    if demo_env is not None:
        spec = ServerSpec(
            cwd=demo_env.project, config_content=demo_env.config, env=demo_env.env, every_directory=True
        )
        registry_env: dict[str, str] | None = demo_env.env
    else:
        # The dashboard follows every directory of the pool's server: an agent's worker started
        # in another project shares the server, and its sessions and requests must show here.
        spec = dataclasses.replace(ServerSpec.from_env(attach_url=attach), every_directory=True)
        registry_env = None
    registry: Registry | None = None
    membership: Membership | None = None
    pool_problem: str | None = None
    try:
        registry = Registry.for_pool(pool, registry_env)
        # Join the pool: attach to its OpenCode server if another front end runs one, else start it.
        membership = join_pool(registry, "human", "orchestrator-tui dashboard", __version__, str(spec.cwd))
    except PoolStateError as exc:
        # Fail closed and say so on screen: no rules run, every request waits for the human here,
        # on a private OpenCode server, until the pool's state is fixed.
        registry, pool_problem = None, str(exc)
    # The terminal belongs to the UI: diagnostics go to a log file beside the registry (or in the
    # state root when the pool folder is what is broken; nowhere if that fails too).
    handler: logging.Handler = logging.NullHandler()
    with contextlib.suppress(OSError):
        log_dir = registry.path.parent if registry is not None else state_root(registry_env)
        log_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        handler = logging.FileHandler(log_dir / "dashboard.log")
    logging.basicConfig(
        handlers=[handler],
        level=os.environ.get("ORCHESTRATOR_TUI_LOG", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if pool_problem is not None:
        logging.getLogger(__name__).error("pool state unavailable: %s", pool_problem)
    try:
        attached = load_servers(registry.path.parent if registry is not None else None, servers)
    except ServerConfigError:
        if membership is not None:
            membership.leave()
        if registry is not None:
            registry.close()
        if demo_env is not None:
            demo_env.close()
        raise
    install_before_the_screen(spec, membership.folder if membership is not None else None)
    service = PoolService(
        spec, membership=membership, directories=_member_directories(registry), servers=attached
    )
    actions = PoolActions(service, registry)
    on_ready: Callable[[DashboardApp], Any] | None = None
    if demo_env is not None:
        demo_project = demo_env.project

        def on_ready(app: DashboardApp) -> None:
            app.run_worker(start_demo_sessions(actions, demo_project), group="demo")
            app.notify("Demo: six sessions start; two will ask you something (see the inbox).", timeout=8)

    app = DashboardApp(
        service,
        actions,
        registry,
        bell=bell,
        on_ready=on_ready,
        owns_service=True,
        pool_problem=pool_problem,
        project=str(project) if project is not None else None,
        notify_command=notify_command,
    )
    # However the app ends (q, a signal, a closed terminal, kill -9), the OpenCode server's keeper
    # stops it once no front end of its pool is alive: nothing to kill here.
    try:
        app.run()
    finally:
        if registry is not None:
            registry.close()
        if demo_env is not None:
            demo_env.close()
            # The throwaway project and OpenCode storage (a few MB per run) go with the demo.
            shutil.rmtree(demo_env.project.parent, ignore_errors=True)
    return 0
