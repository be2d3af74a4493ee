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
        s = self.status
        if not s:
            return "loading…"
        if s.get("error"):
            parts = [f"no notes yet ({s['error']})" if s.get("entries") is None else s["error"]]
        else:
            lag = s.get("memory_lag")
            memory = "memory up to date" if lag == 0 else f"memory {_short(lag)} behind"
            parts = [f"{_short(s.get('entries'))} entries", f"{_short(s.get('stream_tokens'))} tokens",
                     memory]
        parts += [str(s.get("model", "")), str(s.get("device", ""))]
        if self.activity:
            parts.append(self.activity)
        return " │ ".join(p for p in parts if p)
