"""How a pending request looks: each permission type shows what it is really asking for.

Modelled on OpenCode's own prompts: an edit shows its diff, bash its command, an external
directory the path and the patterns "always" would allow. Unknown types fall back to their
patterns and metadata, so a new OpenCode permission is still answerable with open eyes.

Every string of a request is the model's (or a plugin's): it goes through :func:`shown` /
:func:`visible`, so control and bidi characters appear as escapes and never act on the terminal.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.style import Style
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from orchestrator_tui.opencode.models import PermissionRequest, QuestionRequest
from orchestrator_tui.pool.policy import ApprovalPolicy
from orchestrator_tui.safetext import visible_parts
from orchestrator_tui.tui.safe import ESCAPE_STYLE, shown, visible

TITLES = {
    "edit": "Edit file",
    "write": "Write file",
    "bash": "Run command",
    "external_directory": "Access outside the project",
    "read": "Read file",
    "webfetch": "Fetch URL",
    "websearch": "Search the web",
    "glob": "List files",
    "grep": "Search files",
    "list": "List directory",
    "task": "Start a sub-agent",
    "todowrite": "Update todo list",
    "doom_loop": "Repeated tool call",
}


def permission_title(request: PermissionRequest) -> str:
    """The type in words; an unknown type (a plugin's tool may name it) is shown escaped."""
    return TITLES.get(request.permission) or visible(request.permission.replace("_", " ").capitalize())


def permission_summary(request: PermissionRequest) -> str:
    """One line for the inbox list."""
    meta = request.metadata or {}
    filepath = meta.get("filepath")
    if isinstance(filepath, str) and request.permission in ("edit", "write", "read"):
        filepath = filepath.rsplit("/", 1)[-1]  # the inbox line names the file; the view shows the path
    target = meta.get("command") or filepath or meta.get("url") or ", ".join(request.patterns)
    line = f"{permission_title(request)}: {visible(str(target))}" if target else permission_title(request)
    return line if len(line) <= 60 else line[:59] + "…"


def question_summary(request: QuestionRequest) -> str:
    """One line: the first question (escaped, so a newline cannot add a line)."""
    first = request.questions[0].question if request.questions else "(no question)"
    more = f" (+{len(request.questions) - 1} more)" if len(request.questions) > 1 else ""
    return f"Question: {visible(first)}{more}"


def _patterns_table(request: PermissionRequest) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    if request.patterns:
        table.add_row("Patterns", _joined(request.patterns))
    if request.always:
        table.add_row("Always allows", _joined(request.always))
    return table


def _joined(values: list[str], style: str = "") -> Text:
    """Patterns side by side, each one escaped (a newline in one cannot fake another)."""
    return Text(", ", style=style).join(shown(value, style) for value in values)


def render_permission(request: PermissionRequest, *, theme: str = "ansi_dark") -> RenderableType:
    meta: dict[str, Any] = request.metadata or {}
    kind = request.permission
    parts: list[RenderableType] = [Text(f"△ {permission_title(request)}", style="bold")]
    if kind in ("edit", "write") and isinstance(meta.get("diff"), str):
        parts.append(shown(f"  {meta.get('filepath', '')}", "dim"))
        parts.append(_diff_text(_trim_diff(meta["diff"])))
    elif kind == "bash" and isinstance(meta.get("command"), str):
        parts.append(_command(meta["command"], theme))
    elif kind == "external_directory":
        path = meta.get("filepath") or meta.get("parentDir")
        if path:
            parts.append(Text.assemble(("  Path ", "dim"), shown(str(path), "bold")))
        if meta.get("parentDir") and meta.get("parentDir") != path:
            parts.append(Text.assemble(("  In   ", "dim"), shown(str(meta["parentDir"]))))
    elif kind == "webfetch" and meta.get("url"):
        parts.append(Text.assemble(("  URL ", "dim"), shown(str(meta["url"]), "bold")))
    else:
        extra = {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
        for key, value in list(extra.items())[:8]:
            parts.append(Text.assemble(shown(f"  {key} ", "dim"), shown(str(value))))
    parts.append(_patterns_table(request))
    return Group(*parts)


#: An escape inside highlighted code: one colour, whatever the lexer made of ``\x1b``.
_SYNTAX_ESCAPE = ESCAPE_STYLE + Style(color="default", bgcolor="default")


def _command(command: str, theme: str) -> Syntax:
    """``$ command``, highlighted as bash, escapes in reverse video (Syntax would lex them as text).

    Multi-line: a script's lines are its lines; only a lone CR (which rewinds a terminal line) and
    the other controls are escaped.
    """
    syntax = Syntax(
        f"$ {visible(command, multiline=True)}", "bash", theme=theme, background_color="default", word_wrap=True
    )
    line, column = 1, 0  # Syntax positions: lines from 1, columns from 0
    for piece, escaped in visible_parts(f"$ {command}", multiline=True):
        if escaped:
            syntax.stylize_range(_SYNTAX_ESCAPE, (line, column), (line, column + len(piece)))
        elif "\n" in piece:
            line += piece.count("\n")
            column = len(piece) - piece.rfind("\n") - 1
            continue
        column += len(piece)
    return syntax


def _trim_diff(diff: str, limit: int = 400) -> str:
    """Drop the ``Index:``/``====`` preamble OpenCode adds; cap huge diffs."""
    lines = [ln for ln in diff.split("\n") if not ln.startswith(("Index: ", "====="))]
    if len(lines) > limit:
        lines = [*lines[:limit], f"… {len(lines) - limit} more lines"]
    return "\n".join(lines)


def _diff_text(diff: str) -> Text:
    """A unified diff, coloured line by line (Syntax would paint its own background boxes)."""
    text = Text()
    for line in diff.split("\n"):  # not splitlines(): it would also break at \x0b, \x1c, U+2028 …
        if line.startswith(("+++", "---")):
            style = "bold"
        elif line.startswith("@@"):
            style = "cyan"
        elif line.startswith("+"):
            style = "green"
        elif line.startswith("-"):
            style = "red"
        else:
            style = ""
        text.append_text(shown(line.removesuffix("\r"), style, multiline=True))
        text.append("\n")
    text.rstrip()
    return text


def render_question(request: QuestionRequest) -> RenderableType:
    parts: list[RenderableType] = []
    for number, q in enumerate(request.questions, 1):
        head = Text.assemble(shown(q.header), ": ") if q.header else Text()
        parts.append(Text.assemble("? ", head, shown(q.question, multiline=True), style="bold"))
        for i, option in enumerate(q.options, 1):
            line = Text.assemble((f"  {i}. ", "dim"), shown(option.label))
            if option.description:
                line.append_text(Text.assemble(" — ", shown(option.description, multiline=True), style="dim"))
            parts.append(line)
        flags = ["several answers" if q.multiple else "one answer"]
        if q.custom:
            flags.append("or your own")
        parts.append(Text("  " + ", ".join(flags), style="dim italic"))
        if number < len(request.questions):
            parts.append(Text(""))
    return Group(*parts)


#: What a policy file looks like (orchestrator_tui/pool/policy.py reads it), shown when there is none.
POLICY_EXAMPLE = """\
default = "human"               # who answers what no rule covers: "agent" or "human"
agent_may_allow_always = false  # may the agent ever reply "always"?
human_wait_timeout = 600        # seconds an agent's call waits for your answer

[[rule]]                        # first match wins
permission = "read"             # a permission type, or "*"
pattern = "*"                   # a glob against the request's patterns
answer = "agent"

[[rule]]
permission = "bash"
pattern = "git status*"
answer = "agent"
"""


def render_policy(policy: ApprovalPolicy, *, exists: bool, error: str | None = None) -> RenderableType:
    """The approval policy in plain words, with where it lives and how to change it.

    Written for the person deciding whether to trust an agent: who may answer what, whether the
    agent may ever say "always", how long the agent waits for a human. Works for a missing file
    (the defaults apply) and an invalid one (``error``; ``policy`` is then the fail-closed one
    the front ends apply until the file is fixed).
    """
    if policy.unavailable is not None:
        return _render_unavailable(policy, policy.unavailable)
    path = str(policy.path)
    # An invalid file's warning repeats the error shown under "What is wrong".
    warnings = () if error else policy.warnings
    parts: list[RenderableType] = []
    where = Table.grid(padding=(0, 1))
    where.add_column(style="dim", no_wrap=True)
    where.add_column()
    if error:
        state = Text("invalid — until it is fixed, every permission needs a human (below)", style="bold red")
    elif not exists:
        state = Text("not there yet — the defaults below apply", style="yellow")
    else:
        state = Text("in use", style="green")
    where.add_row("File", shown(path, "bold"))
    where.add_row("State", state)
    parts.append(where)
    if error:
        parts += [Text(""), Text("What is wrong", style="bold underline"), shown(error, "red", multiline=True)]
        parts.append(Text("Fix: correct what is named above in the file, save, then press r here.", "bold"))
    if warnings:
        parts += [Text(""), Text("Warnings", style="bold underline")]
        parts += [Text.assemble("  ! ", shown(w, multiline=True), style="yellow") for w in warnings]
    parts += [Text(""), Text("What it says", style="bold underline")]
    parts.append(_policy_words(policy))
    parts += [Text(""), Text("How to change it", style="bold underline")]
    parts.append(
        Text.assemble(
            "Edit the file in any editor (",
            (f"$EDITOR {visible(path)}", "bold"),
            "), save, and press ",
            ("r", "bold"),
            " here: this screen re-reads it and shows any mistake. Rules made from the inbox (",
            ("m", "bold"),
            ") are separate: list and revoke them with ",
            ("R", "bold"),
            ".",
        )
    )
    if error or not exists:
        # A valid file in use is its own example; a missing or broken one gets a working start.
        lead = "A valid file looks like this:" if error else "To start, save this as the file and edit it:"
        parts += [Text(""), Text(lead, style="dim")]
        parts.append(Padding(Text(POLICY_EXAMPLE.strip("\n"), style="cyan"), (0, 0, 0, 2)))
    return Group(*parts)


def _render_unavailable(policy: ApprovalPolicy, problem: str) -> RenderableType:
    """The policy screen when the pool's state cannot be read: what is wrong, its fix, and the
    fail-closed policy in force meanwhile (the policy file is not even looked at)."""
    where = Table.grid(padding=(0, 1))
    where.add_column(style="dim", no_wrap=True)
    where.add_column()
    where.add_row("State", Text("the pool's state cannot be read — every permission needs a human", style="bold red"))
    return Group(
        where,
        Text(""),
        Text("What is wrong", style="bold underline"),
        Text(problem, style="red"),
        Text(""),
        Text("What is in force until it is fixed", style="bold underline"),
        _policy_words(policy),
    )


def _who(answer: object) -> Text:
    if str(answer) == "agent":
        return Text("the agent may answer it itself", style="green")
    return Text("needs you (the human)", style="bold magenta")


def _policy_words(policy: ApprovalPolicy) -> RenderableType:
    """The structured fields of an ApprovalPolicy, as sentences."""
    lines: list[RenderableType] = []
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, style="dim")
    table.add_column()
    for rule in policy.rules:
        table.add_row(shown(rule.permission, "bold"), shown(rule.pattern), _who(rule.answer))
    table.add_row(Text("anything else", style="italic"), Text(""), _who(policy.default))
    lines.append(Text("Who answers a permission request of a session an agent drives (first match wins):", style="dim"))
    lines.append(table)
    lines.append(Text(""))
    lines.append(
        Text.assemble(
            ("Allow always: ", "dim"),
            ("the agent may answer “always”", "green")
            if policy.agent_may_allow_always
            else ("the agent may not answer “always” — only once or reject; “always” is yours", "bold"),
        )
    )
    lines.append(
        Text.assemble(
            ("Waiting: ", "dim"),
            "when a request needs you and a dashboard is attached, the agent's call waits up to ",
            (_seconds(policy.human_wait_timeout), "bold"),
            " for your answer, then returns ",
            ("permission_required", "bold"),
            ".",
        )
    )
    lines.append(
        Text(
            "Without a dashboard attached, requests that need you are returned to the agent as "
            "permission_required, with a warning that a human must approve.",
            style="dim",
        )
    )
    return Group(*lines)


def _seconds(value: float) -> str:
    if value >= 120 and value % 60 == 0:
        return f"{int(value // 60)} minutes"
    return f"{value:g} seconds"
