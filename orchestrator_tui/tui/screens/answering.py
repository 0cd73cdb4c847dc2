"""Answering a question request: options picked by number, several questions in tabs, a confirm.

Questions and options come from the model: they are shown through :func:`shown` / :func:`visible`
(control characters as escapes, never markup); what is sent back is each option's exact label.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import (
    Input,
    Label,
    Static,
    TabbedContent,
    TabPane,
)

from orchestrator_tui.opencode.models import QuestionInfo, QuestionRequest
from orchestrator_tui.tui.safe import shown, visible


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
            who = visible(self.session_title or self.request.sessionID)
            yield Label(Content(f"{title} from {who}"), classes="dialog-title")
            if len(self.request.questions) == 1:
                yield from self._question_body(0, self.request.questions[0])
            else:
                with TabbedContent(id="tabs"):
                    for i, q in enumerate(self.request.questions):
                        with TabPane(Content(visible(q.header) if q.header else f"Q{i + 1}"), id=f"q{i}"):
                            yield from self._question_body(i, q)
            yield Static(id="summary", classes="dialog-hint")
            tab = " · Tab next question" if len(self.request.questions) > 1 else ""
            yield Static(f"1-9 pick{tab} · Enter submit (twice) · Ctrl+R reject · Esc close", classes="dialog-hint")

    def _question_body(self, index: int, q: QuestionInfo) -> ComposeResult:
        with VerticalScroll(classes="question-body"):
            yield Static(shown(q.question, "bold", multiline=True), classes="question-text")
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
            text.append_text(shown(option.label, "bold" if i in self.draft.selected[index] else ""))
            if option.description:
                text.append_text(Text.assemble("  ", shown(option.description, multiline=True), style="dim"))
            text.append("\n")
        text.append("several answers allowed" if q.multiple else "one answer", style="italic dim")
        return text

    def on_mount(self) -> None:
        self._refresh_summary()

    def _refresh_summary(self) -> None:
        answers = self.draft.answers(self.request)
        table = Table.grid(padding=(0, 1))
        for q, a in zip(self.request.questions, answers, strict=True):
            answers = Text(", ").join(shown(label) for label in a) if a else Text("—")
            table.add_row(shown(q.header or q.question[:30], "dim"), answers)
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
