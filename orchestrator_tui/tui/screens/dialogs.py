"""Small dialogs the dashboard asks through: a confirmation, one line of text, a command to run.

Text from projects (command and agent names and descriptions) is shown through :func:`shown`; what
is sent back (a command's or an agent's name) is the exact original.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    Input,
    Label,
    OptionList,
    Select,
    Static,
)
from textual.widgets.option_list import Option

from orchestrator_tui.opencode.models import Agent, Command
from orchestrator_tui.tui.safe import shown

log = logging.getLogger(__name__)

#: What the agent choice says while nothing is chosen: the prompt goes to OpenCode's default agent.
DEFAULT_AGENT = "default agent"


class ConfirmScreen(ModalScreen[bool]):
    """Yes/no with a body explaining exactly what will happen."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Confirm"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, body: RenderableType, confirm_label: str = "Confirm") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._body = body
        self._confirm = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Static(self._body, classes="dialog-body")
            with Horizontal(classes="dialog-buttons"):
                # Content, not a markup string: "[y]" would be read as a style tag and vanish.
                yield Button(Content(f"{self._confirm} [y]"), variant="primary", id="yes")
                yield Button(Content("Cancel [n]"), id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class TextPromptScreen(ModalScreen[str | None]):
    """Ask for one line of text (a prompt, a rejection message); Esc cancels.

    With ``agents`` (a prompt for a session) it also offers the agent the prompt goes to, below
    the text: the list loads while the human types, nothing chosen means OpenCode's default
    agent, and Enter in the text still sends. The choice is :attr:`agent` once dismissed (the
    result stays the text, so every caller reads it the same way).
    """

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        placeholder: str = "",
        *,
        allow_empty: bool = False,
        help_text: str = "",
        agents: Callable[[], Awaitable[list[Agent]]] | None = None,
    ) -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._placeholder = placeholder
        self._allow_empty = allow_empty
        self._help = help_text
        self._load_agents = agents
        #: The agent chosen (its exact name), or None for OpenCode's default.
        self.agent: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Input(placeholder=self._placeholder, id="text")
            if self._load_agents is not None:
                yield Select[str]([], prompt=f"{DEFAULT_AGENT} (loading the agents…)", id="agent")
            hint = self._help or "Enter to send · Esc to cancel"
            if self._load_agents is not None:
                hint += " · Tab: agent"
            yield Static(hint, classes="dialog-hint")

    def on_mount(self) -> None:
        if self._load_agents is not None:
            self.run_worker(self._fill_agents(self._load_agents), exclusive=True)

    async def _fill_agents(self, load: Callable[[], Awaitable[list[Agent]]]) -> None:
        select = self.query_one("#agent", Select)
        try:
            agents = await load()
        except Exception as exc:  # the prompt still goes to the default agent
            log.info("could not list agents: %s", exc)
            select.prompt = f"{DEFAULT_AGENT} (the agents could not be listed)"
            return
        select.set_options(
            (
                Text.assemble(shown(a.name, "bold"), ("  ", ""), shown(_first_line(a.description)[:70], "dim")),
                a.name,
            )
            for a in agents
        )
        select.prompt = DEFAULT_AGENT

    def on_select_changed(self, event: Select.Changed) -> None:
        self.agent = event.value if isinstance(event.value, str) else None
        self.query_one("#text", Input).focus()  # back to the text: Enter sends

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value and not self._allow_empty:
            self.query_one(".dialog-hint", Static).update(Text("Type something first (Esc cancels).", style="bold"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


def _first_line(text: str | None) -> str:
    return text.split("\n", 1)[0] if text else ""


class CommandPickerScreen(ModalScreen[tuple[str, str] | None]):
    """Pick one of the server's commands, then give its arguments."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, commands: list[Command]) -> None:
        super().__init__(classes="dialog-screen")
        self._commands = commands

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Run a command in the selected session", classes="dialog-title")
            options = [
                Option(
                    Text.assemble(
                        shown(c.name, "bold"),
                        ("  ", "dim"),
                        shown(c.description.split("\n", 1)[0] if c.description else "", "dim"),
                    ),
                    id=c.name,
                )
                for c in self._commands
            ]
            yield OptionList(*options, id="commands")
            yield Input(placeholder="arguments ($ARGUMENTS)", id="arguments")
            yield Static("↑↓ choose · Enter run · Esc cancel", classes="dialog-hint")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#arguments", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        option_list = self.query_one("#commands", OptionList)
        if option_list.highlighted is None:
            option_list.focus()
            return
        option = option_list.get_option_at_index(option_list.highlighted)
        self.dismiss((option.id or "", event.value.strip()))

    def action_cancel(self) -> None:
        self.dismiss(None)
