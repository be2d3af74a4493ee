"""`memex config show | set`: the settings file of the data home."""

from __future__ import annotations

import json

import typer

from assistant.cli.common import fail
from assistant.config import SETTINGS, ConfigError, config_path, load_config, set_value
from assistant.home import get_home

config_app = typer.Typer(help="Settings: model, device, dtype, positions, levels, answer mode…",
                         no_args_is_help=True)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every setting and where the file lives."""
    try:
        config = load_config(get_home())
    except ConfigError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps({"path": str(config_path(get_home())), **config.as_dict()}, indent=2))
        return
    typer.echo(f"# {config_path(get_home())}")
    for key, value in config.as_dict().items():
        typer.echo(f"{key:>15} = {value!r:<28} # {SETTINGS[key].help}")


@config_app.command("set")
def config_set(key: str = typer.Argument(..., help=f"One of: {', '.join(SETTINGS)}."),
               value: str = typer.Argument(..., help="The new value.")) -> None:
    """Change one setting (checked before it is saved)."""
    try:
        config = set_value(get_home(), key, value)
    except ConfigError as exc:
        fail(str(exc))
    typer.echo(f"{key} = {getattr(config, key)!r}")


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
