"""Entries per week over the chosen period, as a sparkline with its ends labelled."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline


class Timeline(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("Entries per week", classes="panel-title")
        yield Sparkline([], summary_function=max, id="sparkline")
        yield Label("", id="timeline-range")

    def show(self, weekly: list[tuple[str, int]]) -> None:
        counts = [count for _, count in weekly]
        self.query_one(Sparkline).data = counts or [0]
        if weekly:
            text = (f"{weekly[0][0]} → {weekly[-1][0]}\n{len(weekly)} weeks, {sum(counts)} entries\n"
                    f"busiest week: {max(counts)}")
        else:
            text = "no entries"
        self.query_one("#timeline-range", Label).update(text)
