"""Modal screens: confirmations, text prompts, answering questions, picking commands, help."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static, TabbedContent, TabPane
from textual.widgets.option_list import Option

from orchestrator_tui.opencode.models import Command, QuestionInfo, QuestionRequest


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
    """Ask for one line of text (a prompt, a rejection message); Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, placeholder: str = "", *, allow_empty: bool = False, help_text: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self._title = title
        self._placeholder = placeholder
        self._allow_empty = allow_empty
        self._help = help_text

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._title, classes="dialog-title")
            yield Input(placeholder=self._placeholder, id="text")
            yield Static(self._help or "Enter to send · Esc to cancel", classes="dialog-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value and not self._allow_empty:
            self.query_one(".dialog-hint", Static).update(Text("Type something first (Esc cancels).", style="bold"))
            return
        self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


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
                        (c.name, "bold"), (f"  {(c.description or '').splitlines()[0]}" if c.description else "", "dim")
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


@dataclass
class QuestionDraft:
    """The answers being composed for one question request."""

    selected: list[set[int]] = field(default_factory=list)
    custom: list[str] = field(default_factory=list)

    def answers(self, request: QuestionRequest) -> list[list[str]]:
        out: list[list[str]] = []
        for i, q in enumerate(request.questions):
            labels = [q.options[j].label for j in sorted(self.selected[i]) if j < len(q.options)]
            if self.custom[i].strip():
                labels.append(self.custom[i].strip())
            out.append(labels)
        return out


QuestionResult = tuple[str, list[list[str]]] | None
"""("reply", answers) or ("reject", []); None when the screen was closed without a decision."""


class QuestionScreen(ModalScreen[QuestionResult]):
    """Answer a question request: number keys pick options, tabs switch questions."""

    BINDINGS = [
        Binding("escape", "cancel", "Close"),
        Binding("1,2,3,4,5,6,7,8,9", "pick", "Pick option", show=False, key_display="1-9"),
        Binding("left,shift+tab", "tab(-1)", "Prev question", show=False),
        Binding("right,tab", "tab(1)", "Next question", show=False),
        Binding("ctrl+r", "reject", "Reject"),
        Binding("ctrl+s,enter", "submit", "Submit"),
    ]

    def __init__(self, request: QuestionRequest, session_title: str = "") -> None:
        super().__init__(classes="dialog-screen")
        self.request = request
        self.session_title = session_title
        n = len(request.questions)
        self.draft = QuestionDraft([set() for _ in range(n)], ["" for _ in range(n)])
        self.current = 0
        self.confirming = False

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog question-dialog"):
            title = "Question" if len(self.request.questions) == 1 else f"{len(self.request.questions)} questions"
            # Content, not markup: a session title may contain "[...]".
            who = self.session_title or self.request.sessionID
            yield Label(Content(f"{title} from {who}"), classes="dialog-title")
            if len(self.request.questions) == 1:
                yield from self._question_body(0, self.request.questions[0])
            else:
                with TabbedContent(id="tabs"):
                    for i, q in enumerate(self.request.questions):
                        with TabPane(q.header or f"Q{i + 1}", id=f"q{i}"):
                            yield from self._question_body(i, q)
            yield Static(id="summary", classes="dialog-hint")
            tab = " · Tab next question" if len(self.request.questions) > 1 else ""
            yield Static(f"1-9 pick{tab} · Enter submit (twice) · Ctrl+R reject · Esc close", classes="dialog-hint")

    def _question_body(self, index: int, q: QuestionInfo) -> ComposeResult:
        with VerticalScroll(classes="question-body"):
            yield Static(Text(q.question, style="bold"), classes="question-text")
            yield Static(self._options_text(index), id=f"options-{index}")
            if q.custom:
                yield Input(placeholder="your own answer (optional)", id=f"custom-{index}", classes="custom-answer")

    def _options_text(self, index: int) -> Text:
        q = self.request.questions[index]
        text = Text()
        for i, option in enumerate(q.options):
            mark = (
                ("[x]" if q.multiple else "(•)")
                if i in self.draft.selected[index]
                else ("[ ]" if q.multiple else "( )")
            )
            text.append(f" {i + 1} {mark} ", style="bold" if i in self.draft.selected[index] else "dim")
            text.append(option.label, style="bold" if i in self.draft.selected[index] else "")
            if option.description:
                text.append(f"  {option.description}", style="dim")
            text.append("\n")
        text.append("several answers allowed" if q.multiple else "one answer", style="italic dim")
        return text

    def on_mount(self) -> None:
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        answers = self.draft.answers(self.request)
        table = Table.grid(padding=(0, 1))
        for q, a in zip(self.request.questions, answers, strict=True):
            table.add_row(Text(q.header or q.question[:30], style="dim"), Text(", ".join(a) or "—"))
        if self.confirming:
            table.add_row("", Text("Press Enter again to send these answers.", style="bold"))
        self.query_one("#summary", Static).update(table)

    def action_pick(self) -> None:  # pragma: no cover - replaced by on_key for digits
        pass

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if isinstance(self.focused, Input) or not (isinstance(key, str) and key.isdigit() and key != "0"):
            return
        self._pick(int(key) - 1)
        getattr(event, "stop", lambda: None)()

    def _pick(self, option: int) -> None:
        q = self.request.questions[self.current]
        if option >= len(q.options):
            self.notify(f"Question {self.current + 1} has {len(q.options)} options.", severity="warning")
            return
        chosen = self.draft.selected[self.current]
        if q.multiple:
            chosen ^= {option}
        else:
            chosen.clear()
            chosen.add(option)
        self.confirming = False
        self.query_one(f"#options-{self.current}", Static).update(self._options_text(self.current))
        self._refresh_summary()
        if not q.multiple and self.current + 1 < len(self.request.questions):
            self.action_tab(1)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("custom-"):
            index = int(event.input.id.split("-", 1)[1])
            self.draft.custom[index] = event.value
            q = self.request.questions[index]
            if event.value.strip() and not q.multiple:
                self.draft.selected[index].clear()
                self.query_one(f"#options-{index}", Static).update(self._options_text(index))
            self.confirming = False
            self._refresh_summary()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_submit()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        pane = event.pane.id or "q0"
        self.current = int(pane[1:])

    def action_tab(self, delta: int) -> None:
        n = len(self.request.questions)
        if n < 2:
            return
        self.current = (self.current + delta) % n
        self.query_one("#tabs", TabbedContent).active = f"q{self.current}"

    def action_submit(self) -> None:
        answers = self.draft.answers(self.request)
        missing = [i + 1 for i, a in enumerate(answers) if not a]
        if missing:
            self.notify(f"Answer question {missing[0]} first (or Ctrl+R to reject).", severity="warning")
            self.current = missing[0] - 1
            if len(self.request.questions) > 1:
                self.query_one("#tabs", TabbedContent).active = f"q{self.current}"
            return
        if not self.confirming:
            self.confirming = True
            self._refresh_summary()
            return
        self.dismiss(("reply", answers))

    def action_reject(self) -> None:
        self.dismiss(("reject", []))

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """Every key, generated from the bindings so it cannot go stale."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]]) -> None:
        super().__init__(classes="dialog-screen")
        self._sections = sections

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help-dialog"):
            yield Label("orchestrator-tui — keys", classes="dialog-title")
            with VerticalScroll(), Horizontal(classes="help-columns"):
                # Two columns of about equal height (one on narrow terminals: styles/app.tcss).
                columns: list[list[tuple[str, list[tuple[str, str]]]]] = [[], []]
                for section in self._sections:
                    min(columns, key=lambda c: sum(len(keys) + 2 for _, keys in c)).append(section)
                for column in columns:
                    with Vertical(classes="help-column"):
                        for title, keys in column:
                            table = Table.grid(padding=(0, 2))
                            table.add_column(style="bold", no_wrap=True, min_width=10)
                            table.add_column()
                            for key, description in keys:
                                table.add_row(key, description)
                            yield Static(Text(title, style="bold underline"), classes="help-section")
                            yield Static(table)
            yield Static("Esc to close", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
