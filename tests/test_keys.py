"""The dashboard's keys come from one table (orchestrator_tui/tui/keys.py): what the footer shows,
what the help screen lists, what the command palette offers and what a key press does cannot
disagree, and a key added to the table appears in all of them.

The dashboard runs headless, attached to a port nothing listens on: the keys, the footer, the
help screen and the palette do not need a server (the app says it is down and keeps retrying).
"""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from orchestrator_tui.pool.actions import PoolActions
from orchestrator_tui.pool.service import PoolService, ServerSpec
from orchestrator_tui.tui import keys
from orchestrator_tui.tui.app import DashboardApp
from orchestrator_tui.tui.keys import Key, Note, Section
from orchestrator_tui.tui.palette import DashboardCommands
from orchestrator_tui.tui.screens import HelpScreen

SIZE = (160, 48)


def nowhere() -> str:
    """A local URL nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def make_app(tmp_path: Path) -> Callable[[type[DashboardApp]], DashboardApp]:
    def make(cls: type[DashboardApp] = DashboardApp) -> DashboardApp:
        service = PoolService(ServerSpec(cwd=tmp_path, attach_url=nowhere(), scope_directory=False))
        return cls(service, PoolActions(service, None), None, bell=False, owns_service=True)

    return make


async def until(pilot: Pilot[None], predicate: Callable[[], object], what: str) -> None:
    for _ in range(250):
        if predicate():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def flat(text: str) -> str:
    return " ".join(text.split())


def footer(app: DashboardApp) -> list[tuple[str, str]]:
    """(key, label) of each footer entry, left to right (the palette's own key left out)."""
    return [
        (item.key_display, item.description)
        for item in app.screen.query(FooterKey)
        if not item.has_class("-command-palette")
    ]


async def help_text(pilot: Pilot[None]) -> str:
    """What the help screen says (opened with ?, closed again), each line whole (not as wrapped
    on the terminal: a long line wraps in its column)."""
    app = pilot.app
    await pilot.press("question_mark")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
    console = Console(width=400, record=True, file=io.StringIO())
    for static in app.screen.query(Static):
        console.print(static.content)
    await pilot.press("escape")
    await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "the help screen to close")
    return flat(console.export_text())


async def palette(app: DashboardApp) -> dict[str, str]:
    """Name → help line of every entry the palette offers before anything is typed."""
    return {str(hit.text): str(hit.help) async for hit in DashboardCommands(app.screen).discover()}


async def test_footer_help_palette_and_bindings_come_from_the_key_table(
    make_app: Callable[..., DashboardApp],
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: footer(app), "the footer")
        table = keys.all_keys()

        # The footer: exactly the table's footer keys, in its order, with its labels.
        assert footer(app) == [(key.shown, key.label) for key in table if key.footer]

        # Every key of the table is bound on the main screen, to the table's action.
        bound = app.screen.active_bindings
        for key in table:
            for name in filter(None, key.keys.split(",")):
                assert name in bound, f"{name} ({key.label}) is not bound"
                binding = bound[name].binding
                assert (binding.action, binding.description) == (key.binding_action, key.label)

        # The help screen: every key and every note of the table, with the table's sentence.
        shown = await help_text(pilot)
        for section in keys.KEYS:
            assert flat(section.title) in shown
            for entry in section.entries:
                assert flat(f"{entry.shown} {entry.help}") in shown, entry

        # The palette: the table's entries, each with the help screen's sentence.
        offered = await palette(app)
        for key in table:
            if key.palette is not None:
                assert offered.get(key.palette) == keys.palette_help(key), key
                assert key.help in offered[key.palette]


def test_keys_the_help_names_for_other_screens_are_bound_there() -> None:
    """A help line about a dialog's or the session list's keys names keys that widget binds."""
    notes = [entry for section in keys.KEYS for entry in section.entries if isinstance(entry, Note)]
    checked = [note for note in notes if note.bound_in is not None]
    assert checked, "no note names where its keys are bound"
    for note in checked:
        assert note.bound_in is not None
        bound = {
            name
            for binding in note.bound_in.BINDINGS
            if isinstance(binding, Binding)
            for name in binding.key.split(",")
        }
        assert set(note.keys.split(",")) <= bound, f"{note.shown}: not all bound in {note.bound_in.__name__}"


async def test_a_key_added_to_the_table_shows_up_everywhere(
    make_app: Callable[..., DashboardApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    """One line in the table: the key works, and the footer, the help and the palette show it."""
    added = Key("z", "toggle_bell", "Doze", "ring or silence the terminal bell", footer=True, palette="Doze…")
    monkeypatch.setattr(keys, "KEYS", (*keys.KEYS, Section("Added", (added,))))

    class Extended(DashboardApp, inherit_bindings=False):
        # What DashboardApp does with the table, done again now that the table has the new key.
        BINDINGS = keys.bindings()

    app = make_app(Extended)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: footer(app), "the footer")
        assert footer(app)[-1] == ("z", "Doze")
        shown = await help_text(pilot)
        assert "Added" in shown
        assert "z ring or silence the terminal bell" in shown
        assert (await palette(app)).get("Doze…") == "z · ring or silence the terminal bell"
        assert app.bell_enabled is False
        await pilot.press("z")
        await until(pilot, lambda: app.bell_enabled, "the new key to toggle the bell")
