"""The Textual app, driven by Pilot with a fast fake engine (the UI is under test here,
not the model): chat, sources, stop, history, reflect; snapshots of each screen at 80×24
and 120×40."""

from __future__ import annotations

import threading
from datetime import date
from pathlib import Path

import pytest
from test_engine import journal_home, tiny_model_dir  # noqa: F401  (fixtures)

from assistant.config import Config
from assistant.engine import Answer, Reflection, Stopped, weekly_counts
from assistant.engine.conversations import ConversationStore, SourceRecord

pytestmark = pytest.mark.anyio

TODAY = date(2024, 12, 31)
ANSWER = "Biscuit came home on **11 March 2023**, from Hollins Lane Rescue."
SOURCE = SourceRecord(
    path="notes/biscuit-comes-home.md", date="2023-03-11", root="/journal",
    snippet="Picked Biscuit up from Hollins Lane Rescue this morning.",
    text="We did it. Picked Biscuit up from Hollins Lane Rescue this morning.")


class FakeEngine:
    """The engine's interface as the TUI uses it, answering instantly and predictably."""

    def __init__(self, home: Path, gate: threading.Event | None = None):
        self.home = home
        self.config = Config()
        self.today = TODAY
        self.device = "cpu"
        self.lock = threading.RLock()
        self.asked: list[tuple[str, str, list]] = []
        self.reflected: list[tuple] = []
        self.gate = gate  # when set, answers wait for it between tokens (to test Stop)
        self.warmed: list[str] = []

    def warm_up(self, mode=None):
        self.warmed.append(mode)

    def status(self, wait: bool = True):
        return {"model": "smollm2-135m-instruct", "device": "cpu", "entries": 420,
                "stream_tokens": 456789, "memory_tokens": 456000, "memory_lag": 789}

    def refresh(self, progress=None, should_stop=None):
        pass

    def answer(self, question, mode=None, history=(), on_token=None):
        self.asked.append((question, mode, list(history)))
        answer = Answer(question=question, mode=mode or "hybrid")
        text = ""
        for piece in ANSWER.split(" "):
            piece = piece + " "
            if self.gate is not None:
                self.gate.wait(5)
            try:
                if on_token:
                    on_token(piece)
            except Stopped:
                answer.status = "partial"
                break
            text += piece
        answer.text = text.strip()
        answer.sources = [SOURCE]
        answer.timings = {"ttft_s": 0.1, "total_s": 0.5, "tokens_per_s": 20.0}
        return answer

    def latest_month(self):
        return date(2024, 12, 1), date(2024, 12, 31), "December 2024"

    def reflect(self, start, end, label, on_token=None, month_day=None):
        self.reflected.append((start, end, label, month_day))
        dates = ["2024-12-02", "2024-12-03", "2024-12-10", "2024-12-24", "2024-12-25"]
        text = "A quiet month: runs by the river, Christmas at Alder Street with Maya."
        if on_token:
            on_token(text)
        return Reflection(label=label, start=start, end=end, text=text, entries=5, dates=dates,
                          people=[("Maya", 4), ("Biscuit", 2)], themes=[("running", 3)],
                          moods=[("tired", 2), ("happy", 1)],
                          weekly=weekly_counts(dates, date(2024, 12, 1), TODAY),
                          sources=[SOURCE])


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def fake(tmp_path):
    return FakeEngine(tmp_path / "home")


def make_app(engine, **kwargs):
    from assistant.tui.app import MemexApp

    return MemexApp(engine, watch=False, **kwargs)


async def _ask(pilot, text: str):
    from assistant.tui.prompt_input import PromptInput

    prompt = pilot.app.screen.query_one(PromptInput)
    prompt.focus()
    prompt.load_text(text)
    await pilot.press("enter")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def test_the_model_warms_up_for_the_answer_mode(fake):
    """On start, and when F4 changes the answer mode, the engine loads what that mode
    needs in the background, so the first answer does not wait for it."""
    app = make_app(fake, mode="memory")
    async with app.run_test(size=(80, 24)) as pilot:
        assert fake.warmed == ["memory"]
        await pilot.press("f4")
        assert fake.warmed == ["memory", "retrieval"] and app.answer_mode == "retrieval"


async def test_chat_streams_answer_and_persists_it(fake):
    from assistant.tui.message_view import MessageView
    from assistant.tui.sources_panel import SourcesPanel

    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask(pilot, "When did Biscuit come home?")
        views = list(app.screen.query(MessageView))
        assert [v.role for v in views] == ["user", "assistant"]
        assert views[1].text == ANSWER
        assert views[1].status == "complete"
        panel = app.screen.query_one(SourcesPanel)
        assert [s.path for s in panel.sources] == ["notes/biscuit-comes-home.md"]
        # A follow-up question carries the earlier turn as history.
        await _ask(pilot, "Where from?")
        assert fake.asked[1][2] == [("When did Biscuit come home?", ANSWER)]
    chats = ConversationStore(fake.home)
    conv = chats.latest_conversation()
    messages = chats.messages(conv)
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].content == ANSWER and messages[1].status == "complete"
    assert messages[1].sources[0].path == "notes/biscuit-comes-home.md"


async def test_chat_continues_where_it_stopped(fake):
    from assistant.tui.message_view import MessageView

    async with make_app(fake).run_test(size=(80, 24)) as pilot:
        await _ask(pilot, "When did Biscuit come home?")
    async with make_app(fake).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        texts = [v.text for v in pilot.app.screen.query(MessageView)]
        assert texts == ["When did Biscuit come home?", ANSWER]
    async with make_app(fake, new_conversation=True).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not list(pilot.app.screen.query(MessageView))


async def test_sources_open_in_viewer(fake):
    from textual.widgets import OptionList

    from assistant.tui.source_viewer import SourceViewer

    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask(pilot, "When did Biscuit come home?")
        options = app.screen.query_one("#source-list", OptionList)
        options.focus()
        options.highlighted = 0
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SourceViewer)
        assert "Hollins Lane Rescue" in app.screen.text
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, SourceViewer)


async def test_stop_keeps_partial_answer(tmp_path):
    from assistant.tui.message_view import MessageView
    from assistant.tui.prompt_input import PromptInput

    gate = threading.Event()
    engine = FakeEngine(tmp_path / "home", gate=gate)
    app = make_app(engine)
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.screen.query_one(PromptInput)
        prompt.load_text("When did Biscuit come home?")
        await pilot.press("enter")
        await pilot.pause()
        assert app.screen.busy
        # Typing still works while the answer is being generated.
        await pilot.press("h", "i")
        assert prompt.text == "hi"
        await pilot.press("escape")
        gate.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        answer = [v for v in app.screen.query(MessageView) if v.role == "assistant"][0]
        assert answer.status == "partial"
        assert not app.screen.busy
    chats = ConversationStore(engine.home)
    stored = chats.messages(chats.latest_conversation())[1]
    assert stored.status == "partial"
    assert len(stored.content) < len(ANSWER)


async def test_input_history_and_multiline(fake):
    from assistant.tui.prompt_input import PromptInput

    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask(pilot, "first question")
        await _ask(pilot, "second question")
        prompt = app.screen.query_one(PromptInput)
        prompt.focus()
        await pilot.press("up")
        assert prompt.text == "second question"
        await pilot.press("up")
        assert prompt.text == "first question"
        await pilot.press("down", "down")
        assert prompt.text == ""
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"


async def test_reflect_screen_periods(fake):
    from textual.widgets import Markdown, Sparkline

    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f3")
        await app.workers.wait_for_complete()
        await pilot.pause()
        # It opens on the latest month with entries, and says so.
        start, end, label, _ = fake.reflected[-1]
        assert (start, end) == (date(2024, 12, 1), date(2024, 12, 31))
        assert label == "December 2024"
        assert app.screen.query_one("#period-latest").value  # "Latest month" is chosen
        # Weeks from Monday 2024-11-25 (the week of 1 December) to the week of "today".
        assert list(app.screen.query_one(Sparkline).data) == [0, 2, 1, 0, 2, 0]
        facts = app.screen.query_one("#facts", Markdown).source
        assert "Maya (4)" in facts and "2024-12-24" in facts
        await pilot.press("w")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert fake.reflected[-1][0] == date(2024, 12, 25)  # a week back from "today"
        await pilot.press("m")
        await app.workers.wait_for_complete()
        await pilot.pause()
        start, end, label, _ = fake.reflected[-1]
        assert (start, end) == (date(2024, 12, 2), TODAY)
        await pilot.press("d")
        await app.workers.wait_for_complete()
        assert fake.reflected[-1][3] == (12, 31)
        await pilot.press("escape")
        await pilot.pause()
        assert app.current_mode == "chat"


async def _palette(pilot, command: str) -> None:
    """Run ``command`` from the command palette."""
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*command)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause()


async def test_command_palette_switches_answer_mode(fake):
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await _palette(pilot, "Answer mode: retrieval")
        assert app.answer_mode == "retrieval"
        await _ask(pilot, "When did Biscuit come home?")
        assert fake.asked[-1][1] == "retrieval"


async def test_command_palette_switches_persona_and_saves_it(fake):
    from assistant.config import load_config

    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await _palette(pilot, "Persona: tutor")
    assert fake.config.persona == "tutor"
    assert load_config(fake.home).persona == "tutor"  # the next session keeps it


async def test_ctrl_q_quits(fake):
    app = make_app(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert app.return_code == 0


# -- snapshots (deterministic: fake engine, fixed "today") ------------------------------
# Every screen at the smallest terminal people use (80×24) and a roomy one (120×40):
# nothing may be cut off at either (issue 19).

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
BUILDING = "memory 37% (18,560/50,112 tokens) · 141 tok/s · 3m44s left"
NOTE = ("the memory is 31,552 tokens behind your notes; run `memex memory build` to bring "
        "it up to date")


class BuildingEngine(FakeEngine):
    """An engine whose memory is being built in the background: its answers say how far
    behind the memory is, and the status bar shows the build's progress."""

    def answer(self, question, mode=None, history=(), on_token=None):
        answer = super().answer(question, mode, history, on_token)
        answer.notes.append(NOTE)
        return answer


@SIZES
def test_snapshot_chat(snap_compare, tmp_path, size):
    async def run_before(pilot):
        pilot.app.screen.query_one("#prompt").cursor_blink = False  # a blinking cursor is random
        await _ask(pilot, "When did Biscuit come home?")
        pilot.app.screen.query_one("#prompt").focus()
        await pilot.pause()

    assert snap_compare(make_app(FakeEngine(tmp_path / "home")), terminal_size=size,
                        run_before=run_before)


@SIZES
def test_snapshot_chat_while_the_memory_builds(snap_compare, tmp_path, size):
    async def run_before(pilot):
        pilot.app.screen.query_one("#prompt").cursor_blink = False
        await _ask(pilot, "When did Biscuit come home?")
        pilot.app.activity = BUILDING  # (what the background loop's set_activity shows)
        pilot.app._show_status()
        pilot.app.screen.query_one("#prompt").focus()
        await pilot.pause()

    assert snap_compare(make_app(BuildingEngine(tmp_path / "home")), terminal_size=size,
                        run_before=run_before)


@SIZES
def test_snapshot_source_viewer(snap_compare, tmp_path, size):
    async def run_before(pilot):
        pilot.app.screen.query_one("#prompt").cursor_blink = False
        await _ask(pilot, "When did Biscuit come home?")
        pilot.app.screen.open_source(SOURCE)
        await pilot.pause()

    assert snap_compare(make_app(FakeEngine(tmp_path / "home")), terminal_size=size,
                        run_before=run_before)


@SIZES
def test_snapshot_reflect(snap_compare, tmp_path, size):
    async def run_before(pilot):
        await pilot.press("f3")
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    assert snap_compare(make_app(FakeEngine(tmp_path / "home")), terminal_size=size,
                        run_before=run_before)


def test_the_status_line_fits_every_width():
    """Nothing is cut off: the model and device give way first, the build's line stands in
    for the lag, and what still does not fit ends in an ellipsis, never mid-word unseen."""
    from assistant.tui.status_bar import fit_status

    status = FakeEngine(Path("unused")).status()
    wide = fit_status(status, BUILDING, 160)
    assert "smollm2-135m-instruct" in wide and BUILDING in wide and "behind" not in wide
    narrow = fit_status(status, BUILDING, 80)
    assert BUILDING in narrow and "smollm2" not in narrow and len(narrow) <= 78
    tiny = fit_status(status, BUILDING, 40)
    assert len(tiny) <= 40 and tiny.endswith("…")
    assert fit_status(status, "", 80).endswith("cpu")  # room for everything: all of it


async def test_real_engine_with_watcher(journal_home, tmp_path):
    """The app over the real engine (tiny model, real store): the watcher and the memory
    upkeep run in the background while a question is answered and the status bar fills."""
    from assistant.engine import Engine
    from assistant.tui.message_view import MessageView
    from assistant.tui.status_bar import StatusBar

    engine = Engine(journal_home)
    from assistant.tui.app import MemexApp

    app = MemexApp(engine, mode="retrieval", watch=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await _ask(pilot, "What did I order at Café Lune?")
        answer = [v for v in app.screen.query(MessageView) if v.role == "assistant"][0]
        assert answer.status == "complete"
        assert answer.sources[0].path == "daily/2024-02-10.md"
        for _ in range(100):  # the watcher's first pass and the memory catch-up
            await pilot.pause(0.2)
            if app.watcher is not None and app.watcher.ready.is_set() \
                    and engine.memory_info()["tokens"] == engine.stream_tokens():
                break
        app.refresh_status()
        await pilot.pause(0.5)
        status = app.screen.query_one(StatusBar).status
        assert status["entries"] == 3 and status["memory_lag"] == 0


@SIZES
def test_snapshot_passphrase_screen(snap_compare, size):
    """An encrypted home's first screen (issue 21): nothing of the home is read before it."""
    from pathlib import Path

    from assistant.tui.passphrase_screen import PassphraseApp

    async def run_before(pilot):
        field = pilot.app.query_one("#passphrase")
        field.cursor_blink = False
        field.value = "typed, not shown"
        await pilot.pause()

    assert snap_compare(PassphraseApp(Path("/home/you/.local/share/memex")),
                        terminal_size=size, run_before=run_before)
