"""One message of the conversation: who said it, and what, rendered as Markdown."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Markdown


class MessageView(Vertical, can_focus=True):
    """A question or an answer. Answers can be focused (clicked) to show their sources."""

    def __init__(self, role: str, text: str = "", sources=None, status: str = "complete",
                 notes: list[str] | None = None, meta: str = "", **kwargs) -> None:
        super().__init__(classes=f"message {role}", **kwargs)
        self.role = role
        self.text = text
        self.sources = list(sources or [])
        self.status = status
        self.notes = list(notes or [])
        self.meta = meta

    def compose(self) -> ComposeResult:
        yield Label("You" if self.role == "user" else "memex", classes="role")
        yield Markdown(self.text, classes="body")
        yield Label(self._footer(), classes="meta")

    def _footer(self) -> str:
        bits = []
        if self.status == "partial":
            bits.append("stopped")
        elif self.status == "streaming":
            bits.append("…")
        if self.role == "assistant" and self.sources:
            bits.append(f"{len(self.sources)} source{'s' if len(self.sources) != 1 else ''}")
        bits.extend(self.notes)
        if self.meta:
            bits.append(self.meta)
        return " · ".join(bits)

    @property
    def body(self) -> Markdown:
        return self.query_one(".body", Markdown)

    def finish(self, text: str, sources, status: str, notes=(), meta: str = "") -> None:
        self.text, self.sources, self.status = text, list(sources), status
        self.notes, self.meta = list(notes), meta
        self.body.update(text)
        self.query_one(".meta", Label).update(self._footer())

    def on_click(self) -> None:
        self.focus()
