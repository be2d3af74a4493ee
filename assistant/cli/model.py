"""`memex model prepare | info`: the local language model."""

from __future__ import annotations

import json

import typer

from assistant import home as home_mod
from assistant.cli.common import fail

model_app = typer.Typer(help="The local language model: prepare it, show what is loaded.",
                        no_args_is_help=True)

@model_app.command("prepare")
def model_prepare(
    model: str = typer.Option("smollm2-135m-instruct", help="Model name, .gguf file or HF folder."),
) -> None:
    """Convert the model once into the cache so later loads take ~1.5 s."""
    from longnet.weights import ModelNotFoundError, resolve_model_dir

    try:
        folder = resolve_model_dir(model, home_mod.model_cache_dir(), progress=True)
    except ModelNotFoundError as exc:
        fail(str(exc))
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
        fail(str(exc))
    config = json.loads((folder / "config.json").read_text())
    keys = ("model_type", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
            "hidden_size", "head_dim", "vocab_size", "max_position_embeddings")
    info = {"path": str(folder), **{k: config.get(k) for k in keys}}
    if as_json:
        typer.echo(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            typer.echo(f"{key:>24}: {value}")


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model")
