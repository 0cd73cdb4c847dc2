"""What an agent's command run would execute and read before the model sees it, and whether it may.

``run`` with a ``command`` makes OpenCode expand the command's template with the agent's
``message`` as its arguments, run every ``!`…` `` block of the result in the shell and attach every
file an ``@path`` names (:mod:`~orchestrator_tui.opencode.templates`), all without a permission
request. Left alone, ``run {command: "init", message: "!`id > FILE`"}`` runs ``id`` with nobody
asked, and ``@/home/me/.ssh/id_rsa`` puts a private key into the model's input.

We *refuse* such a run, with an error that says why and what to do instead, rather than
neutralising the text (rewriting the agent's words would change what the command means without
anyone noticing) or holding it for a human (OpenCode has no request to hold: the shell runs
before anything is asked). The rules:

* The agent's arguments never reach the shell: if the arguments change the shell blocks of the
  expansion (add one, or put text into one through ``$ARGUMENTS``/``$1``), the run is refused.
* The agent's arguments never bring in a file outside the project: a reference the arguments add
  that resolves outside the session's directory (symlinks followed, ``~/`` and ``..`` included)
  is refused.
* What the template itself runs and reads is the project's: it is judged by the approval policy
  as the permission OpenCode would have asked for (``bash`` with the command as its pattern;
  ``read``, or ``external_directory`` outside the project), so a policy that reserves bash for a
  human also reserves commands that run shell. Without a policy file the agent may answer
  everything, as with the reference, and the template's own blocks run.

References the arguments add inside the project are judged like a ``read`` the same way.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter

from orchestrator_tui.opencode.models import Command, Paths, PermissionRequest
from orchestrator_tui.opencode.templates import expand
from orchestrator_tui.orchestrator.errors import InvalidInput
from orchestrator_tui.pool.policy import ApprovalPolicy
from orchestrator_tui.pool.rules import PathScope

_ADVICE = (
    "Send the text as a plain message instead (omit command: a message is given to the model as written), "
    "or ask the user to run the command from orchestrator-tui (c)."
)


def check_command_run(
    command: Command | None, arguments: str, paths: Paths, policy: ApprovalPolicy | None
) -> None:
    """Raise :class:`InvalidInput` when running ``command`` with ``arguments`` is not the agent's to do.

    ``command`` is OpenCode's description of it (None: OpenCode does not know it, and will say so
    itself); ``paths`` the instance the command runs in.
    """
    if command is None:
        return
    name = command.name
    if not isinstance(command.template, str):
        if arguments.strip():
            raise InvalidInput(
                f"Command '{name}' cannot be run with arguments by the agent: OpenCode does not show its template, so "
                f"what the arguments would run or read cannot be checked. {_ADVICE}"
            )
        return
    full = expand(command.template, arguments)
    bare = expand(command.template, "")
    if full.shell != bare.shell:
        added = [cmd for cmd in full.shell if cmd not in bare.shell] or list(full.shell)
        raise InvalidInput(
            f"Command '{name}' would run `{added[0]}` in the shell, built from your message: OpenCode runs the "
            "!`…` blocks of a command template through the shell without asking anyone, so a command's arguments "
            f"may not reach them. {_ADVICE}"
        )
    scope = PathScope(directory=posixpath.normpath(paths.directory), worktree=paths.worktree)
    for cmd in full.shell:
        _judge(policy, name, PermissionRequest(id="", sessionID="", permission="bash", patterns=[cmd]), f"`{cmd}`")
    template_refs = Counter(bare.references)
    for ref in full.references:
        absolute = _resolve(ref, scope, paths.home)
        inside = _inside(absolute, scope)
        from_arguments = template_refs[ref] == 0
        if not from_arguments:
            template_refs[ref] -= 1
        if from_arguments and not inside:
            raise InvalidInput(
                f"Command '{name}' would put '{absolute}' into the model's input, named by @{ref} in your message: "
                "OpenCode attaches the files a command's @references name without asking anyone, and a command's "
                f"arguments may not bring in files outside the project ({scope.directory}). {_ADVICE}"
            )
        if inside:
            request = PermissionRequest(
                id="", sessionID="", permission="read", patterns=[posixpath.relpath(absolute, scope.worktree)]
            )
        else:
            folder = posixpath.dirname(absolute).rstrip("/") + "/*"
            request = PermissionRequest(
                id="", sessionID="", permission="external_directory", patterns=[folder], always=[folder]
            )
        _judge(policy, name, request, f"@{ref} ({absolute})")


def _judge(policy: ApprovalPolicy | None, name: str, request: PermissionRequest, what: str) -> None:
    if policy is None:
        return
    reason = policy.needs_human(request)
    if reason is not None:
        raise InvalidInput(
            f"Command '{name}' would {'run' if request.permission == 'bash' else 'read'} {what} before the model "
            f"sees it, without OpenCode asking for permission, and {reason}. {_ADVICE}"
        )


def _resolve(reference: str, scope: PathScope, home: str) -> str:
    """Where OpenCode looks for ``@reference``: ``~/`` under the home folder, else from the worktree."""
    if reference.startswith("~/"):
        return posixpath.normpath(posixpath.join(home, reference[2:]))
    return scope.absolute(reference)


def _inside(absolute: str, scope: PathScope) -> bool:
    """Inside the project, symlinks followed where the project is on this machine."""
    if not scope.inside(absolute):
        return False
    if os.path.isdir(scope.directory):
        real_root = os.path.realpath(scope.directory)
        real = os.path.realpath(absolute)
        return real == real_root or real.startswith(real_root.rstrip("/") + "/")
    return True
