"""The `memex` command line (Typer).

Commands live in small modules that each add themselves to ``app`` through a
``register(app)`` function; this file holds the app, the global options and the
model commands.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Optional

import typer

from assistant import home as home_mod

app = typer.Typer(
    name="memex",
    help="memex: a private, offline memory of everything you wrote, in your terminal.",
    no_args_is_help=False,
    invoke_without_command=True,
    add_completion=False,
    rich_markup_mode="rich",
)

# Modules that add commands to the app, in the order they appear in --help.
COMMAND_MODULES = (
    "assistant.cli_ingest",
    "assistant.cli_memory",
    "assistant.cli_chat",
    "assistant.cli_train",
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
        chat = ctx.command.get_command(ctx, "chat") if isinstance(ctx.command, typer.core.TyperGroup) else None
        if chat is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()
        ctx.invoke(chat.callback)


model_app = typer.Typer(help="The local language model: prepare it, show what is loaded.",
                        no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("prepare")
def model_prepare(
    model: str = typer.Option("smollm2-135m-instruct", help="Model name, .gguf file or HF folder."),
) -> None:
    """Convert the model once into the cache so later loads take ~1.5 s."""
    from longnet.weights import ModelNotFoundError, resolve_model_dir

    try:
        folder = resolve_model_dir(model, home_mod.model_cache_dir(), progress=True)
    except ModelNotFoundError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1)
    typer.echo(f"model ready: {folder}")


@model_app.command("info")
def model_info(
    model: str = typer.Option("smollm2-135m-instruct", help="Model name, .gguf file or HF folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the model's architecture and where its weights are."""
    from longnet.weights import ModelNotFoundError, resolve_model_dir

    try:
        folder = resolve_model_dir(model, home_mod.model_cache_dir())
    except ModelNotFoundError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(1)
    config = json.loads((folder / "config.json").read_text())
    keys = ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "hidden_size", "head_dim", "vocab_size", "max_position_embeddings")
    info = {"path": str(folder), **{k: config.get(k) for k in keys}}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            typer.echo(f"{key:>24}: {value}")


def _register_commands() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that part of memex is not built yet
                continue
            raise
        module.register(app)


_register_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
