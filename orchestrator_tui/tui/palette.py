"""The command palette's entries: every dashboard action, plus one per OpenCode command."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.content import Content
from textual.markup import escape as escape_markup

from orchestrator_tui.tui.safe import visible


class DashboardCommands(Provider):
    """Command-palette entries for every dashboard action, plus one per OpenCode command."""

    def _entries(self) -> list[tuple[str, str, Callable[[], Any]]]:
        from orchestrator_tui.tui.app import DashboardApp  # the app imports this module

        app = self.app
        assert isinstance(app, DashboardApp)
        entries = [
            ("New session…", "start a session with a prompt", app.action_new_session),
            ("Send prompt to selected session…", "type a follow-up", app.action_send_prompt),
            ("Run a command in selected session…", "pick from list_commands", app.action_run_command),
            ("Abort selected session", "stop the current turn", app.action_abort),
            ("Delete selected session…", "with confirmation", app.action_delete),
            ("Jump to next session needing input", "◆", app.action_next_waiting),
            ("Filter sessions…", "fuzzy search", app.action_filter),
            ("Allow once", "the highlighted permission, or all marked", partial(app.action_permission, "once")),
            ("Allow always…", "the highlighted permission, or all marked", partial(app.action_permission, "always")),
            ("Reject…", "the highlighted request, or all marked", app.action_reject),
            ("Mark / unmark request", "space: select for a batch answer", app.action_toggle_mark),
            ("Mark all like this request", "*: identical ones (same diff, command…)", app.action_mark_similar),
            ("Make a rule from this permission…", "m: answer future matching requests", app.action_make_rule),
            ("Show attached front ends", "w: agents' MCP workers and dashboards", app.action_workers),
            ("Show decision log", "L: every answer, who gave it, how", app.action_decision_log),
            ("Show approval policy", "P: what agents may answer themselves", app.action_policy),
            ("Show rules", "R: list and revoke standing decisions", app.action_rules),
            ("Toggle terminal bell", "for new requests", app.action_toggle_bell),
            ("Help", "every key", app.action_help),
        ]
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
