"""The command palette: every entry of the key table (:mod:`.keys`), plus one per OpenCode command."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape as escape_markup

from orchestrator_tui.tui.keys import palette_entries
from orchestrator_tui.tui.safe import visible

if TYPE_CHECKING:
    from orchestrator_tui.tui.app import DashboardApp  # the app imports this module


class DashboardCommands(Provider):
    """Command-palette entries for every dashboard action, plus one per OpenCode command."""

    def _entries(self) -> list[tuple[str, str, Callable[[], Any]]]:
        app = cast("DashboardApp", self.app)  # the only app this provider is registered with
        entries = palette_entries(app)
        for command in app.known_commands:
            # Names and descriptions come from the project's files: escaped, and never markup
            # (the palette reads plain strings as markup, which can style text and bind clicks).
            description = command.description.split("\n", 1)[0] if command.description else "OpenCode command"
            entries.append(
                (
                    f"Run /{visible(command.name)}",
                    escape_markup(visible(description)),
                    partial(app.run_named_command, command.name),
                )
            )
        return entries

    async def discover(self) -> Hits:
        for name, help_text, callback in self._entries():
            yield DiscoveryHit(Content(name), callback, text=name, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._entries():
            score = matcher.match(name)
            if score > 0:
                # Matcher.highlight parses its argument as markup: only for names without any.
                prompt = matcher.highlight(name) if "[" not in name else Content(name)
                yield Hit(score, prompt, callback, text=name, help=help_text)
