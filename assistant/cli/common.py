"""What every `memex` command shares: the one-line error, opening the engine on the data
home, checking an answer mode, and refusing politely when nothing was added yet."""

from __future__ import annotations

from datetime import date
from typing import NoReturn

import typer

from assistant.config import MODES, ConfigError, load_config
from assistant.home import get_home

MODE_HELP = f"Answer mode: {', '.join(MODES)} (default: the configured mode, hybrid)."


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def open_engine(today: str | None = None):
    """The engine on the current data home (``--today`` an ISO date, if given)."""
    from assistant.engine import Engine

    try:
        config = load_config(get_home())
    except ConfigError as exc:
        fail(str(exc))
    return Engine(get_home(), config, today=check_today(today))


def check_today(today: str | None) -> date | None:
    """``--today`` as a date (None when not given); a clear error when it is not ISO."""
    if not today:
        return None
    try:
        return date.fromisoformat(today)
    except ValueError:
        fail(f"--today must be an ISO date (YYYY-MM-DD), not {today!r}")


def check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        fail(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def require_notes(engine) -> None:
    """A clear message instead of an empty answer when nothing has been added yet."""
    try:
        count = engine.entry_count()
    except Exception as exc:  # the store could not be opened at all
        fail(f"cannot open the notes store in {engine.home}: {exc}")
    if count == 0:
        fail("no notes yet: add a folder first with `memex add PATH`")
