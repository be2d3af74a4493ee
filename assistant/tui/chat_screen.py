"""The chat: messages on the left, the selected answer's sources on the right."""

from __future__ import annotations

import threading
import time

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Markdown

from assistant.engine.quotes import short_part
from assistant.tui.message_list import MessageList
from assistant.tui.message_view import MessageView
from assistant.tui.prompt_input import PromptInput
from assistant.tui.source_viewer import SourceViewer
from assistant.tui.sources_panel import SourcesPanel
from assistant.tui.status_bar import StatusBar


def _meta(answer) -> str:
    t = answer.timings or {}
    if t.get("total_s") is None:
        return answer.mode
    return f"{answer.mode} · {t['total_s']:.1f} s"


class ChatScreen(Screen):
    BINDINGS = [
        Binding("ctrl+n", "new_conversation", "New chat"),
        Binding("escape", "stop", "Stop answer"),
        Binding("ctrl+s", "toggle_sources", "Sources"),
        Binding("ctrl+o", "open_source", "Open source"),
        Binding("ctrl+l", "focus_input", "Ask", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.conversation_id: int | None = None
        self.busy = False
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="conversation"):
                yield MessageList(id="messages")
                yield PromptInput(id="prompt", placeholder="Ask your notes…  (Enter sends, Ctrl+J new line)")
            yield SourcesPanel(id="sources")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def chats(self):
        return self.app.chats

    async def on_mount(self) -> None:
        self.query_one(PromptInput).past_questions = [
            m.content for c in self.chats.conversations(limit=20)[::-1]
            for m in self.chats.messages(c.id, with_sources=False) if m.role == "user"][-100:]
        if not self.app.new_conversation:
            self.conversation_id = self.chats.latest_conversation()
        if self.conversation_id is not None:
            await self.load_conversation(self.conversation_id)
        self.query_one(PromptInput).focus()

    async def load_conversation(self, conversation_id: int) -> None:
        messages = self.query_one(MessageList)
        await messages.remove_children()
        last = None
        for m in self.chats.messages(conversation_id):
            view = MessageView(m.role, m.content, m.sources, m.status,
                               notes=[m.note] if m.note else [], meta=m.mode or "")
            await messages.add(view)
            if m.role == "assistant":
                last = view
        self.query_one(SourcesPanel).show(last.sources if last else [])

    # -- asking ------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def ask(self, event: PromptInput.Submitted) -> None:
        if self.busy:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        question = event.text
        if self.conversation_id is None:
            self.conversation_id = self.chats.new_conversation(mode=self.app.answer_mode)
        history = self._history()
        self.chats.add_message(self.conversation_id, "user", question)
        message_id = self.chats.add_message(self.conversation_id, "assistant", "", status="streaming",
                                            mode=self.app.answer_mode)
        messages = self.query_one(MessageList)
        await messages.add(MessageView("user", question))
        view = await messages.add(MessageView("assistant", "", status="streaming"))
        stream = Markdown.get_stream(view.body)
        self.busy = True
        self._stop.clear()
        self.answer_worker(question, history, view, stream, message_id)

    def _history(self) -> list[tuple[str, str]]:
        pairs, question = [], None
        for view in self.query(MessageView):
            if view.role == "user":
                question = view.text
            elif question is not None and view.text and view.status != "nothing_found":
                pairs.append((question, short_part(view.text)))
                question = None
        return pairs[-3:]

    @work(thread=True, exclusive=True, group="answer")
    def answer_worker(self, question, history, view, stream, message_id) -> None:
        from assistant.engine import EngineError, Stopped

        parts: list[str] = []
        last_save = [time.monotonic()]

        def on_token(piece: str) -> None:
            if self._stop.is_set():
                raise Stopped()
            parts.append(piece)
            self.app.call_from_thread(stream.write, piece)
            if time.monotonic() - last_save[0] > 0.5:
                self.chats.update_message(message_id, content="".join(parts))
                last_save[0] = time.monotonic()

        try:
            answer = self.app.engine.answer(question, self.app.answer_mode, history=history,
                                            on_token=on_token)
        except (EngineError, Exception) as exc:  # shown in the chat, never a crash
            self.chats.update_message(message_id, content="".join(parts), status="error", note=str(exc))
            self.app.call_from_thread(self._failed, view, stream, "".join(parts), str(exc))
            return
        self.chats.update_message(message_id, content=answer.text, status=answer.status,
                                  timings=answer.timings, note="; ".join(answer.notes) or None)
        self.chats.add_sources(message_id, answer.sources)
        self.app.call_from_thread(self._finished, view, stream, answer)

    async def _finished(self, view: MessageView, stream, answer) -> None:
        await stream.stop()
        view.finish(answer.text, answer.sources, answer.status, answer.notes, _meta(answer))
        self.query_one(SourcesPanel).show(answer.sources)
        self.query_one(MessageList).scroll_end(animate=False)
        self.busy = False

    async def _failed(self, view: MessageView, stream, text: str, error: str) -> None:
        await stream.stop()
        view.finish(text or "_(no answer)_", [], "error", [f"error: {error}"])
        self.notify(error, title="Could not answer", severity="error")
        self.busy = False

    # -- actions -----------------------------------------------------------------

    def action_stop(self) -> None:
        if self.busy:
            self._stop.set()

    async def action_new_conversation(self) -> None:
        if self.busy:
            self.notify("Still answering: Esc stops it.", severity="warning")
            return
        self.conversation_id = None
        await self.query_one(MessageList).remove_children()
        self.query_one(SourcesPanel).show([])
        self.query_one(PromptInput).focus()

    def action_toggle_sources(self) -> None:
        panel = self.query_one(SourcesPanel)
        panel.display = not panel.display

    def action_focus_input(self) -> None:
        self.query_one(PromptInput).focus()

    def action_open_source(self) -> None:
        panel = self.query_one(SourcesPanel)
        if panel.sources:
            self.open_source(panel.sources[0])

    def open_source(self, source) -> None:
        self.app.push_screen(SourceViewer(source, source.text or source.snippet))

    @on(SourcesPanel.Open)
    def _open(self, event: SourcesPanel.Open) -> None:
        self.open_source(event.source)

    def on_descendant_focus(self, event) -> None:
        widget = event.widget
        if isinstance(widget, MessageView) and widget.role == "assistant":
            self.query_one(SourcesPanel).show(widget.sources)
