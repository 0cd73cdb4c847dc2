"""The session list keeps sessions newest first, and the filter right, through any stream of changes.

The list moves only the rows that changed instead of sorting every session again on each screen
refresh; these tests hold that to the order a full sort gives (equal times: the order sessions
were first seen), after random additions, updates and removals, with and without a filter.
"""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from orchestrator_tui.tui.session_list import Row, SessionList, fuzzy_match


def _row(i: int, updated: int | None) -> Row:
    return Row(
        id=f"ses_{i}",
        state="idle",
        title=f"task {i}",
        origin="other",
        updated=updated,
        path="",
        additions=0,
        deletions=0,
        tokens=0,
        cost=0.0,
    )


class _ListApp(App[None]):
    def compose(self) -> ComposeResult:
        yield SessionList()


async def test_order_and_filter_stay_right_through_random_changes() -> None:
    rnd = random.Random(7)
    app = _ListApp()
    async with app.run_test(size=(100, 30)):
        session_list = app.query_one(SessionList)
        rows = {f"ses_{i}": _row(i, rnd.choice([None, 5, 10, rnd.randint(0, 1000)])) for i in range(300)}
        first_seen = list(rows)
        session_list.set_rows(dict(rows))
        for step in range(300):
            changed: dict[str, Row] = {}
            removed: set[str] = set()
            for _ in range(rnd.choice([0, 1, 3, 10, 80])):  # 80: more than the list moves one by one
                roll = rnd.random()
                if roll < 0.1 and rows:
                    removed.add(rnd.choice(list(rows)))
                elif roll < 0.2:
                    i = rnd.randint(300, 600)
                    changed[f"ses_{i}"] = _row(i, rnd.choice([None, rnd.randint(0, 1000)]))
                else:
                    sid = rnd.choice(list(rows))
                    changed[sid] = _row(int(sid[4:]), rnd.choice([rows[sid].updated, rnd.randint(0, 1000)]))
            for sid in removed:
                changed.pop(sid, None)
                if rows.pop(sid, None) is not None:
                    first_seen.remove(sid)
            for sid, row in changed.items():
                if sid not in rows:
                    first_seen.append(sid)
                rows[sid] = row
            session_list.update_rows(changed, removed)
            expected = sorted(first_seen, key=lambda sid: rows[sid].updated or 0, reverse=True)
            assert session_list.order == expected, f"step {step}"
            if step % 30 == 0:
                for typed in ("t", "ta", "task 1", "task 12", "task 1", ""):
                    session_list.set_filter(typed)
                    assert session_list.shown == [sid for sid in expected if rows[sid].matches(typed)], typed


def test_fuzzy_match_is_substring_or_letters_in_order() -> None:
    assert fuzzy_match("mod 12", "refactor module 123")
    assert fuzzy_match("rfm", "refactor module")
    assert not fuzzy_match("mr", "refactor module")
    # Regex characters are letters like any other.
    assert fuzzy_match("a.*", "a . b *")
    assert not fuzzy_match(".*", "abc")
    assert fuzzy_match("[x]", "[a x ]")


async def test_grouped_by_project_and_filtered_to_one_through_changes() -> None:
    """Grouped: each project's sessions together (projects by name), newest first within each;
    filtered to a project: its sessions and its subdirectories' only, not a sibling's that shares
    a prefix ("/p/api" is not in "/p/ap")."""

    def row(i: int, updated: int, project: str, sub: str = "") -> Row:
        directory = project + sub
        return Row(
            id=f"ses_{i}",
            state="idle",
            title=f"task {i}",
            origin="other",
            updated=updated,
            path=sub.strip("/"),
            additions=0,
            deletions=0,
            tokens=0,
            cost=0.0,
            project=project,
            directory=directory,
        )

    app = _ListApp()
    async with app.run_test(size=(120, 30)):
        session_list = app.query_one(SessionList)
        rows = {
            "ses_1": row(1, 50, "/p/web"),
            "ses_2": row(2, 40, "/p/api"),
            "ses_3": row(3, 30, "/p/web", "/ui"),
            "ses_4": row(4, 20, "/p/ap"),
            "ses_5": row(5, 10, "/p/api", "/db"),
        }
        session_list.set_rows(dict(rows))
        assert session_list.shown == ["ses_1", "ses_2", "ses_3", "ses_4", "ses_5"]
        session_list.set_grouped(True)
        assert session_list.shown == ["ses_4", "ses_2", "ses_5", "ses_1", "ses_3"]
        # A change moves a row within its group only.
        session_list.update_rows({"ses_5": row(5, 99, "/p/api", "/db")}, set())
        assert session_list.shown == ["ses_4", "ses_5", "ses_2", "ses_1", "ses_3"]
        session_list.set_project("/p/ap")
        assert session_list.shown == ["ses_4"]
        session_list.set_project("/p/web")
        assert session_list.shown == ["ses_1", "ses_3"]
        session_list.set_filter("ui")
        assert session_list.shown == ["ses_3"]
        session_list.set_filter("")
        session_list.set_project(None)
        session_list.set_grouped(False)
        assert session_list.shown == ["ses_5", "ses_1", "ses_2", "ses_3", "ses_4"]
