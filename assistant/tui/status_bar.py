"""One line at the bottom: entries, stream tokens, memory lag, model, device, background work."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static


def _short(n) -> str:
    if n is None:
        return "?"
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 10_000:
        return f"{n / 1000:.0f}K"
    return f"{n:,}"


class StatusBar(Static):
    status: reactive[dict] = reactive(dict, always_update=True)
    activity: reactive[str] = reactive("")

    def on_mount(self) -> None:
        # A screen opened later starts from what the app already knows.
        self.status = getattr(self.app, "status", {}) or {}
        self.activity = getattr(self.app, "activity", "")

    def render(self) -> str:
        return fit_status(self.status, self.activity, self.size.width or 80)


def fit_status(s: dict, activity: str, width: int) -> str:
    """The status line at ``width`` columns, never cut off: the model and device go first
    when space is short, the background work's line stands in for the memory's lag (it
    says more: how far, how fast, how long), and what still does not fit ends in "…"."""
    if not s:
        return "loading…"
    if s.get("error"):
        parts = [f"no notes yet ({s['error']})" if s.get("entries") is None else s["error"]]
    else:
        lag = s.get("memory_lag")
        memory = "memory up to date" if lag == 0 else f"memory {_short(lag)} behind"
        if activity and activity.startswith("memory"):
            memory, activity = activity, ""
        parts = [f"{_short(s.get('entries'))} entries", f"{_short(s.get('stream_tokens'))} tokens",
                 memory]
    extras = [str(s.get("model", "")), str(s.get("device", ""))]
    tail = [activity] if activity else []
    for candidate in (parts + extras + tail, parts + tail, parts[:1] + parts[2:] + tail):
        line = " │ ".join(p for p in candidate if p)
        if len(line) <= width - 2:
            return line
    return line[:max(1, width - 3)] + "…"
