"""Where a pool lives: its name and the state folder its folder is in. Standard library only.

Split from :mod:`~orchestrator_tui.pool.registry` (which re-exports every name here) so that
``orchestrator-tui status``, which a status bar runs every few seconds, finds the pool's folder
without loading SQLite and the rest of the registry.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

STATE_DIR_ENV = "ORCHESTRATOR_TUI_STATE_DIR"
POOL_ENV = "ORCHESTRATOR_TUI_POOL"
DEFAULT_POOL = "default"


class PoolStateError(ValueError):
    """The pool's state (its folder or registry) cannot be used; ``str()`` says what and how to fix it.

    Every front end fails *closed* on it: everything needs a human until it is fixed.
    """

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" + ("" if fix.endswith(".") else "."))


def state_root(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get(STATE_DIR_ENV):
        return Path(env[STATE_DIR_ENV])
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "orchestrator-tui"


def pool_name(given: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The pool to use: ``--pool``, else ``$ORCHESTRATOR_TUI_POOL``, else ``default``.

    A name is one folder name (letters, digits, ``.``, ``_``, ``-``), so it cannot escape the root.
    """
    env = os.environ if env is None else env
    name = given or env.get(POOL_ENV) or DEFAULT_POOL
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}", name):
        where = "" if given else f" (from ${POOL_ENV})" if env.get(POOL_ENV) else ""
        raise PoolStateError(
            f"invalid pool name {name!r}{where}", "use letters, digits, '.', '_' or '-' (at most 64), e.g. --pool work"
        )
    return name
