"""`memex chat`: the Textual app.

The engine does all the heavy work in thread workers (answers, reflections, the
background refresh), so typing never waits for the model. Tests pass a fake engine.
"""

from __future__ import annotations

import threading
from pathlib import Path

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding

from assistant.config import MODES
from assistant.engine.conversations import ConversationStore
from assistant.engine.prompting import PERSONAS
from assistant.tui.chat_screen import ChatScreen
from assistant.tui.reflect_screen import ReflectScreen
from assistant.tui.status_bar import StatusBar

STATUS_EVERY_S = 5.0
REFRESH_EVERY_S = 30.0


class MemexApp(App):
    CSS_PATH = Path(__file__).parent / "memex.tcss"
    TITLE = "memex"
    MODES = {"chat": ChatScreen, "reflect": ReflectScreen}
    DEFAULT_MODE = "chat"
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f2", "switch_mode('chat')", "Chat"),
        Binding("f3", "switch_mode('reflect')", "Reflect"),
        Binding("f4", "cycle_mode", "Answer mode"),
    ]

    def __init__(self, engine, mode: str | None = None, new_conversation: bool = False,
                 watch: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self.answer_mode = mode or engine.config.mode
        self.new_conversation = new_conversation
        self.watch_enabled = watch
        self.chats = ConversationStore(Path(engine.home))
        self.chats.mark_interrupted()
        self.status: dict = {}
        self.activity = ""
        self._stop_background = threading.Event()
        self._wake = threading.Event()

    def on_mount(self) -> None:
        self.sub_title = f"answer mode: {self.answer_mode}"
        self.engine.warm_up(self.answer_mode)  # the model loads while a question is typed
        self.refresh_status()
        self.set_interval(STATUS_EVERY_S, self.refresh_status)
        self.watcher = None
        if self.watch_enabled:
            # A plain daemon thread, not a Textual worker: it lives as long as the app
            # and must never hold up its exit.
            threading.Thread(target=self._background_loop, name="memex-background",
                             daemon=True).start()

    def on_unmount(self) -> None:
        self._stop_background.set()
        self._wake.set()
        if self.watcher is not None:
            self.watcher.stop(timeout=5)

    # -- status and background work ------------------------------------------------

    @work(thread=True, exclusive=True, group="status")
    def refresh_status(self) -> None:
        try:
            status = self.engine.status(wait=False)
        except Exception as exc:
            status = {"error": str(exc), "model": "", "device": ""}
        if status is not None:
            self.call_from_thread(self._show_status, status)

    def _show_status(self, status: dict | None = None) -> None:
        if status is not None:
            self.status = status
        for bar in self.screen.query(StatusBar):
            bar.status = self.status
            bar.activity = self.activity

    def _from_thread(self, callback, *args) -> None:
        if self._stop_background.is_set():
            return
        try:
            self.call_from_thread(callback, *args)
        except RuntimeError:  # the app is closing
            pass

    def set_activity(self, text: str) -> None:
        """Background progress for the status bar (thread-safe)."""
        self.activity = text
        self._from_thread(self._show_status)

    def _background_loop(self) -> None:
        """ingest's watcher keeps the store equal to the folders; this loop keeps the
        memory up with the stream. Neither ever blocks typing."""
        try:
            self.watcher = self.engine.start_watcher(
                self.set_activity, on_change=lambda: self._from_thread(self.refresh_status))
        except Exception as exc:  # no folders yet, or no tokenizer: chat still works
            self.set_activity(f"watcher off: {exc}")
        while not self._stop_background.is_set():
            try:
                self.engine.refresh(progress=self.set_activity,
                                    should_stop=self._stop_background.is_set)
            except Exception as exc:  # shown, and tried again later
                self.set_activity(f"background: {exc}")
            else:
                self.set_activity("")
            self._from_thread(self.refresh_status)
            self._wake.wait(REFRESH_EVERY_S)
            self._wake.clear()

    def refresh_now(self) -> None:
        self._wake.set()

    # -- actions and the command palette -------------------------------------------

    def action_cycle_mode(self) -> None:
        self.set_answer_mode(MODES[(MODES.index(self.answer_mode) + 1) % len(MODES)])

    def set_answer_mode(self, mode: str) -> None:
        self.answer_mode = mode
        self.engine.warm_up(mode)
        self.sub_title = f"answer mode: {mode}"
        self.notify(f"Answer mode: {mode}")

    def set_persona(self, persona: str) -> None:
        """For this session and the next: saved in the data home's settings."""
        from assistant.config import ConfigError, set_value

        self.engine.config.persona = persona
        try:
            set_value(self.engine.home, "persona", persona)
        except (ConfigError, OSError) as exc:  # this session keeps it all the same
            self.notify(f"Persona {persona} for this session only: {exc}", severity="warning")
            return
        self.notify(f"Persona: {persona}")

    def get_system_commands(self, screen):
        yield from super().get_system_commands(screen)
        yield SystemCommand("New conversation", "Start a fresh chat", self._new_chat)
        yield SystemCommand("Chat", "Go to the chat screen", lambda: self.switch_mode("chat"))
        yield SystemCommand("Reflect", "Reflect on a week, month, year or this day",
                            lambda: self.switch_mode("reflect"))
        for mode in MODES:
            yield SystemCommand(f"Answer mode: {mode}", f"Answer with the {mode} mode",
                                lambda mode=mode: self.set_answer_mode(mode))
        for persona in PERSONAS:
            yield SystemCommand(f"Persona: {persona}", "The tone of answers and reflections "
                                "(never the facts)", lambda persona=persona: self.set_persona(persona))
        yield SystemCommand("Toggle sources panel", "Show or hide the sources of answers",
                            self._toggle_sources)
        yield SystemCommand("Refresh now", "Ingest changed files and update the memory",
                            self.refresh_now)

    async def _new_chat(self) -> None:
        await self.switch_mode("chat")
        await self.screen.action_new_conversation()

    def _toggle_sources(self) -> None:
        if isinstance(self.screen, ChatScreen):
            self.screen.action_toggle_sources()
