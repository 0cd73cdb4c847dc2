"""Scroll views that grow without laying out the screen still get their scrollbars right.

`orchestrator_tui.tui.steady` skips Textual's screen layout when only what a widget scrolls over
changes. What a user relies on: the scrollbar appears as soon as the content outgrows the pane
(and goes when it fits again), the end of a growing text can be scrolled to, and the session
list's filter shows a scrollbar only while the rows overflow.
"""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.pilot import Pilot

from orchestrator_tui.tui.session_list import Row, SessionList
from orchestrator_tui.tui.steady import SteadyInput, SteadyTextArea


class _Panes(App[None]):
    CSS = "SteadyTextArea { height: 10; } SessionList { height: 12; }"

    def compose(self) -> ComposeResult:
        yield SteadyInput(id="input")
        yield SteadyTextArea(id="text", read_only=True, soft_wrap=True)
        yield SessionList()


def _row(i: int) -> Row:
    return Row(
        id=f"ses_{i}",
        state="idle",
        title=f"{'even' if i % 2 == 0 else 'odd'} task {i}",
        origin="other",
        updated=1000 - i,
        path="",
        additions=0,
        deletions=0,
        tokens=0,
        cost=0.0,
    )


async def _settle(pilot: Pilot[None]) -> None:
    await pilot.pause()
    await pilot.pause()


async def test_a_growing_text_gets_its_scrollbar_and_can_be_followed_to_the_end() -> None:
    app = _Panes()
    async with app.run_test(size=(80, 40)) as pilot:
        area = app.query_one(SteadyTextArea)
        area.load_text("one line")
        await _settle(pilot)
        assert not area.show_vertical_scrollbar and area.max_scroll_y == 0

        for i in range(40):  # streamed in, a line at a time, as the output pane receives it
            area.insert(f"line {i}\n", area.document.end)
        await _settle(pilot)
        assert area.show_vertical_scrollbar, "the content outgrew the pane: a scrollbar"
        assert area.max_scroll_y > 25
        area.scroll_end(animate=False)
        await _settle(pilot)
        assert area.scroll_y == area.max_scroll_y
        assert "line 39" in "\n".join(strip.text for strip in app.screen._compositor.render_strips())

        area.load_text("short again")
        await _settle(pilot)
        assert not area.show_vertical_scrollbar and area.scroll_y == 0


async def test_the_filter_shows_a_scrollbar_only_while_the_rows_overflow() -> None:
    app = _Panes()
    async with app.run_test(size=(80, 40)) as pilot:
        session_list = app.query_one(SessionList)
        session_list.set_rows({f"ses_{i}": _row(i) for i in range(50)})
        await _settle(pilot)
        assert session_list.show_vertical_scrollbar

        session_list.set_filter("odd task 1")  # 9 rows (1, 11, 13 ... 41): they fit below the header
        await _settle(pilot)
        assert len(session_list.shown) == 9
        assert not session_list.show_vertical_scrollbar

        session_list.set_filter("even")  # 25 rows: overflows again
        await _settle(pilot)
        assert session_list.show_vertical_scrollbar
        session_list.action_jump(-1)
        await _settle(pilot)
        assert session_list.selected_id == "ses_48"
        assert session_list.scroll_offset.y > 0, "scrolled down to the last row"
        lines = [session_list.render_line(y).text for y in range(session_list.size.height)]
        assert any("even task 48" in line for line in lines), lines


async def test_typing_past_the_width_of_the_input_keeps_the_cursor_in_view() -> None:
    app = _Panes()
    async with app.run_test(size=(40, 40)) as pilot:
        field = app.query_one(SteadyInput)
        field.focus()
        text = "a-long-filter-that-does-not-fit-in-forty-columns-at-all"
        await pilot.press(*text)
        await _settle(pilot)
        assert field.value == text
        assert field.scroll_x > 0, "the input scrolled to keep the cursor in view"
        shown = "\n".join(strip.text for strip in app.screen._compositor.render_strips())
        assert "at-all" in shown
