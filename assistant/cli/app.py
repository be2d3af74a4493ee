"""The `memex` command line (Typer): the app and its global options.

Each command group lives in a module of its own that adds itself to ``app`` through
``register(app)``; they are registered here in the order ``--help`` lists them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from assistant import home as home_mod
from assistant.cli import (
    ask,
    chat,
    config,
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
    home: Optional[Path] = typer.Option(
        None, "--home", help="Data home (default: $MEMEX_HOME, else $XDG_DATA_HOME/memex).",
        show_default=False,
    ),
    version: bool = typer.Option(False, "--version", callback=version_callback, is_eager=True,
                                 help="Show the version and exit."),
) -> None:
    home_mod.set_home(home)
    if ctx.invoked_subcommand is None:
        # Bare `memex` opens the chat, like `memex chat`.
        command = ctx.command.get_command(ctx, "chat") if isinstance(ctx.command, typer.core.TyperGroup) else None
        if command is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()
        ctx.invoke(command.callback)



# In the order --help lists them.
for module in (model, ingest, memory, ask, reflect, chat, serve, export, config, train):
    module.register(app)


def main() -> None:
    app()

