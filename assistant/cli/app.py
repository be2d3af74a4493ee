"""The `memex` command line (Typer): the app and its global options.

Each command group lives in a module of its own that adds itself to ``app`` through
``register(app)``; they are registered here in the order ``--help`` lists them.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

from assistant import home as home_mod
from assistant.cli import (
    ask,
    chat,
    config,
    encryption,
    export,
    ingest,
    memory,
    model,
    reflect,
    serve,
    train,
)

app = typer.Typer(
    name="memex",
    help="memex: a private, offline memory of everything you wrote, in your terminal.",
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def version_callback(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"memex {version('memex')}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Data home (default: $MEMEX_HOME, else $XDG_DATA_HOME/memex).",
        show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    home_mod.set_home(home)
    if ctx.invoked_subcommand not in CONVERTS_THE_HOME:
        # Shared while the command runs (a chat or a warm server: as long as it lives);
        # `memex encrypt`/`decrypt` take it alone, so none runs across a conversion.
        from assistant.cli.common import hold_home

        ctx.call_on_close(hold_home(home_mod.get_home()))
    _open_vault(ctx.invoked_subcommand)
    if ctx.invoked_subcommand is None:
        # Bare `memex` opens the chat, like `memex chat`.
        command = ctx.command.get_command(ctx, "chat") if isinstance(ctx.command, typer.core.TyperGroup) else None
        if command is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()
        ctx.invoke(command.callback)



# Commands that take the home's lock alone (every other holds it shared while it runs).
CONVERTS_THE_HOME = {"encrypt", "decrypt"}
# Commands that unlock an encrypted home themselves, when and if they need to: ask and
# reflect only when no warm server holds the key already, chat on its passphrase screen,
# serve from the key its client hands it; the others never read the notes.
UNLOCKS_ITSELF = {"ask", "reflect", "chat", "serve", "init", "encrypt", "decrypt",
                  "passphrase", "config", "model", None}


def _open_vault(command: str | None) -> None:
    """Finish or undo a conversion a crash interrupted, then unlock an encrypted home for
    the commands that read it."""
    from assistant.cli.common import PASSPHRASE_ENV, unlock_home
    from vault.convert import recover

    recover(home_mod.get_home())
    if command not in UNLOCKS_ITSELF:
        unlock_home()
    elif command in ("ask", "reflect") and PASSPHRASE_ENV in os.environ:
        unlock_home()  # a passphrase given is checked, even when a warm server holds the key


# In the order --help lists them.
for module in (model, ingest, memory, ask, reflect, chat, serve, export, config, train,
               encryption):
    module.register(app)


def main() -> None:
    app()

