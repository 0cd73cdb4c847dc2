"""Projects as a person sees them: which project a session belongs to, and what is inside one.

A pool follows every directory an OpenCode server serves; the dashboard shows, filters and
groups sessions by project, and the approval policy asks whether a dashboard's view (limited
to some projects) would show a request. Both need the same answer, so it is made here once.
"""

from __future__ import annotations


def project_root(directory: str | None, path: str | None) -> str | None:
    """The project a session in ``directory`` belongs to, ``path`` being where it sits in it.

    OpenCode's ``path`` is the session's directory relative to its project's worktree ("sub"
    for a repo's subdirectory, "" at the root). Directories outside any git repo all share one
    project whose worktree is "/": each such directory is a project of its own here, since
    "/" says nothing to a person.
    """
    if not directory:
        return None
    directory = directory.rstrip("/") or "/"
    root = directory
    if path:
        suffix = "/" + path.strip("/")
        if directory.endswith(suffix):
            root = directory[: -len(suffix)] or "/"
    return directory if root == "/" else root


def in_project(directory: str | None, project: str) -> bool:
    """Whether ``directory`` is ``project`` or inside it (path components, not string prefixes)."""
    if directory is None:
        return False
    project = project.rstrip("/") or "/"
    return directory == project or directory.startswith(project if project == "/" else project + "/")
