"""The OpenCode servers a pool follows besides its own: ``[[server]]`` in ``pool.toml``, ``--server URL``.

A pool always has its own server (the managed one, or the one ``--attach`` names), called
:data:`~orchestrator_tui.pool.state.PRIMARY`. A person may add others: an OpenCode on another
machine or in a container. Their sessions and requests join the same list and inbox; they are
never started or stopped by us (they are not ours).

``pool.toml`` is shared by every front end of the pool, so the agent's worker and the human's
dashboard follow the same servers. A password never goes in it (it is read by anything that
reads the pool's folder, and ends up in backups): each server names an environment variable
or a private file that holds its password. ``--server URL`` adds a server for one front end,
without a password (a password on a command line is visible to every user's ``ps``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from orchestrator_tui.opencode.secret import Secret
from orchestrator_tui.pool.registry import PoolStateError, check_private_file
from orchestrator_tui.pool.state import PRIMARY

#: The pool's own config file, in its folder (beside ``policy.toml``).
POOL_CONFIG_FILE = "pool.toml"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
_SERVER_KEYS = ("name", "url", "username", "password_env", "password_file")


class ServerConfigError(ValueError):
    """``pool.toml`` or ``--server`` cannot be used; ``str()`` says what and how to fix it.

    Fatal at start: a front end that cannot follow a server the person asked for refuses to run
    rather than leave that server's sessions and requests out, unseen."""

    def __init__(self, problem: str, fix: str) -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}. Fix: {fix}" + ("" if fix.endswith(".") else "."))


@dataclass(frozen=True)
class AttachedServer:
    """An OpenCode server the pool follows but does not own."""

    name: str
    url: str
    username: str = "opencode"
    password: Secret | None = field(default=None, repr=False)


def pool_config_path(pool_folder: Path) -> Path:
    return pool_folder / POOL_CONFIG_FILE


def load_servers(
    pool_folder: Path | None, given: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> list[AttachedServer]:
    """The servers of ``pool.toml`` (none without the file), then those given with ``--server``.

    Raises :class:`ServerConfigError` naming the problem and the fix: a front end that cannot
    follow a server the person asked for says so rather than leave its sessions out unseen.
    """
    env = os.environ if env is None else env
    servers = _from_file(pool_config_path(pool_folder), env) if pool_folder is not None else []
    for value in given:
        servers.append(_from_flag(value, {s.name for s in servers}))
    names = [s.name for s in servers]
    for name in names:
        if names.count(name) > 1:
            raise ServerConfigError(f"two servers are named {name!r}", "give each [[server]] a name of its own")
    return servers


def _from_flag(value: str, taken: set[str]) -> AttachedServer:
    """``--server URL`` or ``--server NAME=URL``."""
    name, sep, url = value.partition("=")
    if not sep or "://" in name:
        name, url = "", value
    url = _check_url(url, f"--server {value!r}")
    if not name:
        parts = urlsplit(url)
        name = (parts.hostname or "server") + (f"-{parts.port}" if parts.port else "")
        base, n = name, 2
        while name in taken or name == PRIMARY:
            name, n = f"{base}-{n}", n + 1
    return AttachedServer(_check_name(name, f"--server {value!r}"), url)


def _from_file(path: Path, env: Mapping[str, str]) -> list[AttachedServer]:
    import tomllib

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise ServerConfigError(f"cannot read {path}: {exc.strerror or exc}", f"make {path} readable by you") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ServerConfigError(f"{path} is not valid TOML: {exc}", "fix its syntax") from None
    unknown = sorted(set(data) - {"server"})
    if unknown:
        raise ServerConfigError(f"{path}: unknown key {unknown[0]!r}", "it holds [[server]] tables only")
    tables = data.get("server", [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise ServerConfigError(f"{path}: `server` must be a list of tables", "write each one as a [[server]] table")
    return [_server(table, f"{path}: [[server]] number {n}", path.parent, env) for n, table in enumerate(tables, 1)]


def _server(table: dict[str, Any], where: str, folder: Path, env: Mapping[str, str]) -> AttachedServer:
    if "password" in table:
        raise ServerConfigError(
            f"{where} has a password in the file",
            "never write a password in pool.toml: put it in an environment variable and write "
            'password_env = "VARIABLE", or in a file only you can read (chmod 600) and write password_file = "PATH"',
        )
    extra = sorted(set(table) - set(_SERVER_KEYS))
    if extra:
        raise ServerConfigError(f"{where}: unknown key {extra[0]!r}", f"a [[server]] has {', '.join(_SERVER_KEYS)}")
    name = _check_name(table.get("name"), where)
    url = _check_url(table.get("url"), f"{where} ({name})")
    username = table.get("username", "opencode")
    if not isinstance(username, str) or not username:
        raise ServerConfigError(
            f"{where} ({name}): `username` must be a non-empty string", 'leave it out for "opencode"'
        )
    password_env, password_file = table.get("password_env"), table.get("password_file")
    if password_env is not None and password_file is not None:
        raise ServerConfigError(f"{where} ({name}) has both password_env and password_file", "keep one of them")
    password: Secret | None = None
    if password_env is not None:
        if not isinstance(password_env, str) or not password_env:
            raise ServerConfigError(f"{where} ({name}): `password_env` must name a variable", 'password_env = "NAME"')
        value = env.get(password_env)
        if not value:
            raise ServerConfigError(
                f"server {name!r}: the environment variable {password_env} (its password_env) is not set",
                f"export {password_env}=<the password> before starting orchestrator-tui",
            )
        password = Secret(value)
    elif password_file is not None:
        if not isinstance(password_file, str) or not password_file:
            raise ServerConfigError(f"{where} ({name}): `password_file` must be a path", 'password_file = "PATH"')
        password = Secret(_read_password(folder / Path(password_file).expanduser(), name))
    return AttachedServer(name, url, username, password)


def _read_password(path: Path, name: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise ServerConfigError(
            f"server {name!r}: cannot read its password_file {path}: {exc.strerror or exc}",
            "point password_file at a file holding the password",
        ) from None
    try:
        try:
            check_private_file(path, os.fstat(fd))
        except PoolStateError as exc:
            raise ServerConfigError(f"server {name!r}: {exc.problem}", exc.fix) from None
        data = os.read(fd, 65536)
    finally:
        os.close(fd)
    password = data.decode("utf-8", "replace").strip("\r\n")
    if not password:
        raise ServerConfigError(f"server {name!r}: its password_file {path} is empty", "write the password into it")
    return password


def _check_name(name: object, where: str) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ServerConfigError(
            f"{where}: the name {name!r} is not usable",
            "name it with 1-32 letters, digits, '.', '_' or '-' (for example name = \"lab\")",
        )
    if name == PRIMARY:
        raise ServerConfigError(f"{where}: {PRIMARY!r} is the pool's own server", "choose another name")
    return name


def _check_url(url: object, where: str) -> str:
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServerConfigError(
            f"{where}: {url!r} is not an OpenCode server URL", 'give its address, for example "http://10.0.0.5:4096"'
        )
    if parts.username or parts.password:
        raise ServerConfigError(
            f"{where}: the URL carries credentials", "leave them out of the URL; use password_env or password_file"
        )
    return url.rstrip("/")
