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
    engine = open_engine(today)
    from assistant.server.client import server_enabled
    from assistant.tui.app import MemexApp

    if server_enabled(engine.home):
        from assistant.server.remote import WarmEngine

        engine = WarmEngine(engine)

    MemexApp(engine, mode=mode, new_conversation=new, watch=watch).run()


def register(app: typer.Typer) -> None:
    app.command("chat")(chat)
