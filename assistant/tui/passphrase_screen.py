"""The passphrase screen: what `memex chat` shows first on an encrypted data home, before
anything of the home is read. It asks, unlocks (Argon2id, about half a second, off the
event loop) and exits with the data key as its return value; a wrong passphrase is said
under the field and may be typed again, up to ``TRIES`` times."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Footer, Input, Static

TRIES = 3


class PassphraseApp(App):
    """Returns the data key (bytes), or None when the person gave up or ran out of tries
    (``wrong`` then says how many wrong passphrases were typed)."""

    CSS = """
    Screen { align: center middle; }
    #unlock { width: 64; max-width: 100%; height: auto; padding: 1 2;
              border: round $primary; }
    #unlock Static { width: 100%; }
    #why { color: $text-muted; margin-bottom: 1; }
    #error { color: $error; height: auto; }
    """
    TITLE = "memex"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("escape", "give_up", "Quit"), Binding("ctrl+q", "give_up", "Quit",
                                                              priority=True)]

    def __init__(self, home: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.home = Path(home)
        self.wrong = 0

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="unlock"):
            yield Static("[b]This data home is encrypted.[/b]")
            yield Static(f"{self.home}\nIts passphrase unlocks it for this session; it is "
                         "never written anywhere.", id="why")
            yield Input(placeholder="passphrase", password=True, id="passphrase")
            yield Static("", id="error")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not event.value:
            return
        event.input.disabled = True
        self.query_one("#error", Static).update("unlocking…")
        self.unlock(event.value)

    @work(thread=True, exclusive=True)
    def unlock(self, passphrase: str) -> None:
        import vault

        try:
            key = vault.unlock(self.home, passphrase)
        except vault.WrongPassphrase:
            self.call_from_thread(self._wrong)
        except vault.VaultError as exc:
            self.call_from_thread(self._failed, str(exc))
        else:
            self.call_from_thread(self.exit, key)

    def _wrong(self) -> None:
        self.wrong += 1
        if self.wrong >= TRIES:
            self.exit(None)
            return
        field = self.query_one(Input)
        field.value = ""
        field.disabled = False
        field.focus()
        left = TRIES - self.wrong
        self.query_one("#error", Static).update(
            f"wrong passphrase: nothing was read ({left} {'try' if left == 1 else 'tries'} left)")

    def _failed(self, message: str) -> None:
        self.query_one("#error", Static).update(message)
        self.query_one(Input).disabled = False

    def action_give_up(self) -> None:
        self.exit(None)
