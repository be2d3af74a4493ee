"""A source's full text, over the chat; Escape closes it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Markdown


class SourceViewer(ModalScreen):
    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, source, text: str) -> None:
        super().__init__()
        self.source = source
        self.text = text

    def compose(self) -> ComposeResult:
        with Vertical(id="viewer"):
            yield Label(f"{self.source.path} · {self.source.date or 'undated'}", id="viewer-title")
            with VerticalScroll():
                yield Markdown(self.text or "_(this source's text is no longer in the index)_")
        yield Footer()
