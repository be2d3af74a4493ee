"""Reflect on a period: pick it, see entries per week beside the reflection."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Label, Markdown, RadioButton, RadioSet

from assistant.tui.status_bar import StatusBar
from assistant.tui.timeline import Timeline

PERIODS = {"latest": "Latest month", "week": "This week", "month": "This month",
           "year": "This year", "on-this-day": "On this day"}


def facts_markdown(reflection) -> str:
    def listing(pairs):
        return ", ".join(f"{n} ({c})" for n, c in pairs) or "—"

    dates = reflection.dates
    shown = ", ".join(dates[:10]) + (f" … (+{len(dates) - 10})" if len(dates) > 10 else "")
    return "\n".join([
        f"- **Entries:** {reflection.entries}",
        f"- **People and places:** {listing(reflection.people)}",
        f"- **Themes:** {listing(reflection.themes)}",
        f"- **Mood words:** {listing(reflection.moods)}",
        f"- **Dates drawn on:** {shown or '—'}",
    ])


class ReflectScreen(Screen):
    BINDINGS = [
        Binding("l", "period('latest')", "Latest"),
        Binding("w", "period('week')", "Week"),
        Binding("m", "period('month')", "Month"),
        Binding("y", "period('year')", "Year"),
        Binding("d", "period('on-this-day')", "On this day"),
        Binding("escape", "app.switch_mode('chat')", "Back to chat"),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.period = "latest"  # the latest month with entries: a journal of 1789 too
        self.reflection = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="reflect-main"):
            with Vertical(id="reflect-side"):
                yield Label("Period", classes="panel-title")
                with RadioSet(id="period"):
                    for key, label in PERIODS.items():
                        yield RadioButton(label, value=key == "latest", id=f"period-{key}")
                yield Timeline(id="timeline")
            with VerticalScroll(id="reflect-body"):
                yield Label("", id="reflect-title")
                yield Markdown("", id="reflection")
                yield Markdown("", id="facts")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        self.run_reflection()

    @on(RadioSet.Changed, "#period")
    def _changed(self, event: RadioSet.Changed) -> None:
        key = event.pressed.id.removeprefix("period-")
        if key != self.period:
            self.period = key
            self.run_reflection()

    def action_period(self, key: str) -> None:
        self.query_one(f"#period-{key}", RadioButton).value = True

    def run_reflection(self) -> None:
        from assistant.engine.reflection import resolve_period

        today = self.app.engine.today
        latest = self.app.engine.latest_month() if self.period == "latest" else None
        if latest is not None:
            start, end, label = latest  # ("Latest month" is the chosen period beside it)
            month_day = None
        else:  # (no entries yet: this week, which says there are none)
            start, end, label, month_day = resolve_period(
                today, week=self.period in ("week", "latest"), month=self.period == "month",
                year=self.period == "year", on_this_day=self.period == "on-this-day")
        self.query_one("#reflect-title", Label).update(f"Reflection on {label}")
        self.query_one("#reflection", Markdown).update("_thinking…_")
        self.query_one("#facts", Markdown).update("")
        self.reflect_worker(start, end, label, month_day)

    @work(thread=True, exclusive=True, group="reflect")
    def reflect_worker(self, start, end, label, month_day) -> None:
        pieces: list[str] = []

        def on_token(piece: str) -> None:
            pieces.append(piece)
            self.app.call_from_thread(self.query_one("#reflection", Markdown).update, "".join(pieces))

        try:
            reflection = self.app.engine.reflect(start, end, label, on_token=on_token,
                                                 month_day=month_day)
        except Exception as exc:  # shown, never a crash
            self.app.call_from_thread(self.query_one("#reflection", Markdown).update,
                                      f"Could not reflect: {exc}")
            return
        self.app.call_from_thread(self._show, reflection)

    def _show(self, reflection) -> None:
        self.reflection = reflection
        self.query_one("#reflection", Markdown).update(reflection.text)
        self.query_one("#facts", Markdown).update(facts_markdown(reflection))
        self.query_one(Timeline).show(reflection.weekly)
