"""Scrolling widgets whose content can grow and shrink without laying out the whole screen.

Textual declares a widget's ``virtual_size`` (the size of what it scrolls over) as a reactive
that lays out the whole screen on every change: every widget arranged, resized and rendered
again. A scroll view whose own size is set by the stylesheet (a fraction, a fixed height) does
not move anything else when what it scrolls over changes, unless one of its scrollbars appears
or goes. Yet the session list changes it on every filter keystroke, the filter input on every
character typed, the output pane on every session selected and on every streamed line. Traced
through a pty (`benchmarks.pty_keys --trace`), those layouts were most of a filter keystroke's
70-100 ms and of a cursor move's time.

:class:`SteadyScrollView` is mixed in after a widget's own class (Textual takes a widget's
stylesheet and component classes from its first base only): a change of the virtual size then
updates the scrollbars in place and repaints the widget; the screen is laid out only when a
scrollbar appears or goes (which does change the widget's content area).
"""

from __future__ import annotations

from textual.geometry import Size
from textual.reactive import Reactive
from textual.scroll_view import ScrollView
from textual.widgets import Input, TextArea


class SteadyScrollView(ScrollView):
    """A scroll view that lays out the screen only when a scrollbar appears or goes."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, new: Size) -> None:
        if self.is_mounted:
            # What a layout would do for this widget (private to Textual, pinned below 9 in
            # pyproject): the scrollbars' sizes and the scroll position checked. A scrollbar that
            # appears or goes still lays out the screen: that is a reactive of its own.
            self._scroll_update(new)


class SteadyInput(Input, SteadyScrollView):
    """An :class:`Input` that does not lay out the screen on each character typed."""


class SteadyTextArea(TextArea, SteadyScrollView):
    """A :class:`TextArea` that does not lay out the screen each time its text grows."""
