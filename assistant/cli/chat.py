"""`memex chat` (and bare `memex`): the Textual TUI on the data home."""

from __future__ import annotations

from typing import Annotated

import typer

from assistant.cli.common import MODE_HELP, check_mode, open_engine


def chat(
    # Annotated defaults: bare `memex` calls this function directly, with no arguments.
    mode: Annotated[str | None, typer.Option("--mode", "-m", help=MODE_HELP)] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new conversation.")] = False,
    today: Annotated[str | None, typer.Option("--today", help="Take this date as today.")] = None,
    watch: Annotated[bool, typer.Option("--watch/--no-watch",
                                        help="Ingest changes in the background.")] = True,
) -> None:
    """Open the chat (Textual TUI). Bare `memex` does the same. Answers, reflections and
    the memory's upkeep run in the warm server (`memex serve`) when one can be used."""
    mode = check_mode(mode)
    _unlock_on_screen()
    engine = open_engine(today)
    from assistant.server.client import server_enabled
    from assistant.tui.app import MemexApp

    if server_enabled(engine.home):
        from assistant.server.remote import WarmEngine

        engine = WarmEngine(engine)

    MemexApp(engine, mode=mode, new_conversation=new, watch=watch).run()


def _unlock_on_screen() -> None:
    """An encrypted home, in a terminal and without MEMEX_PASSPHRASE: the passphrase
    screen comes first, before anything of the home is read."""
    import os
    import sys

    import vault
    from assistant.cli.common import PASSPHRASE_ENV, WRONG_PASSPHRASE, fail
    from assistant.home import get_home

    home = get_home()
    if not vault.is_encrypted(home) or vault.is_unlocked(home) or \
            os.environ.get(PASSPHRASE_ENV) is not None or not sys.stdin.isatty():
        return  # (open_engine unlocks, or says why it cannot)
    from assistant.tui.passphrase_screen import TRIES, PassphraseApp

    unlock = PassphraseApp(home)
    key = unlock.run()
    if key is None:
        if unlock.wrong >= TRIES:
            fail(f"wrong passphrase for {home} ({TRIES} tries): nothing was read or changed",
                 code=WRONG_PASSPHRASE)
        raise typer.Exit(1)
    vault.remember(home, key)


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
