"""The scrolling list of messages."""

from __future__ import annotations

from textual.containers import VerticalScroll

from assistant.tui.message_view import MessageView


class MessageList(VerticalScroll):
    async def add(self, view: MessageView) -> MessageView:
        await self.mount(view)
        self.scroll_end(animate=False)
        return view

    def answers(self) -> list[MessageView]:
        return [v for v in self.query(MessageView) if v.role == "assistant"]
