"""The question box: Enter sends, Ctrl+J (or Shift+Enter where the terminal tells it apart)
adds a line, Up/Down on the first/last line walk through earlier questions."""

from __future__ import annotations

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class PromptInput(TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, past_questions: list[str] | None = None, **kwargs) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, tab_behavior="focus",
                         compact=True, **kwargs)
        self.past_questions: list[str] = list(past_questions or [])
        self._history_index: int | None = None
        self._draft = ""

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            self.submit()
            return
        if event.key in ("shift+enter", "ctrl+j"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        row, _ = self.cursor_location
        if event.key == "up" and row == 0 and self.past_questions:
            event.prevent_default()
            event.stop()
            self.walk_history(-1)
            return
        if event.key == "down" and row == self.document.line_count - 1 and self._history_index is not None:
            event.prevent_default()
            event.stop()
            self.walk_history(+1)
            return
        await super()._on_key(event)

    def walk_history(self, step: int) -> None:
        if self._history_index is None:
            self._draft = self.text
            index = len(self.past_questions)
        else:
            index = self._history_index
        index += step
        if index >= len(self.past_questions):
            self._history_index = None
            self.load_text(self._draft)
        else:
            self._history_index = max(0, index)
            self.load_text(self.past_questions[self._history_index])
        self.move_cursor(self.document.end)

    def submit(self) -> None:
        text = self.text.strip()
        if not text:
            return
        if not self.past_questions or self.past_questions[-1] != text:
            self.past_questions.append(text)
        self._history_index = None
        self._draft = ""
        self.load_text("")
        self.post_message(self.Submitted(text))
