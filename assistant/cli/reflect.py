"""`memex reflect`: a reflection on a period, streamed, then the facts it draws on."""

from __future__ import annotations

import json
import sys

import typer

from assistant.cli.common import fail, open_engine, require_notes
from assistant.engine.reflection import resolve_period


def reflect_command(
    week: bool = typer.Option(False, "--week", help="The last 7 days."),
    month: bool = typer.Option(False, "--month", help="The last 30 days."),
    year: bool = typer.Option(False, "--year", help="The last 365 days."),
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD or words)."),
    until: str | None = typer.Option(None, "--until", help="End date (YYYY-MM-DD or words)."),
    on_this_day: bool = typer.Option(False, "--on-this-day", help="This day in every year."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    today: str | None = typer.Option(None, "--today", help="Take this date as today."),
) -> None:
    """A reflection on a period: what happened, who and what recurs, the mood, the dates.
    With no period given: the latest month with entries."""
    from rich.console import Console

    chosen = sum([week, month, year, on_this_day, bool(since or until)])
    if chosen > 1:
        fail("pick one period: --week, --month, --year, --since/--until or --on-this-day")
    engine = open_engine(today)
    require_notes(engine)
    latest = engine.latest_month() if not chosen else None
    if latest is not None:
        start, end, label = latest
        label, month_day = f"{label}, the latest month with entries", None
    else:
        try:
            start, end, label, month_day = resolve_period(engine.today, week, month, year,
                                                          since, until, on_this_day)
        except ValueError as exc:
            fail(str(exc))
    console = Console(highlight=False)
    streamed = []

    def on_token(piece):
        streamed.append(piece)
        if not as_json:
            sys.stdout.write(piece)
            sys.stdout.flush()

    if not as_json:
        console.print(f"[bold]Reflection on {label}[/]\n")
    try:
        reflection = engine.reflect(start, end, label, on_token=on_token, month_day=month_day)
    except KeyboardInterrupt:
        typer.secho("\n(stopped)", fg="yellow", err=True)
        raise typer.Exit(130)
    if as_json:
        typer.echo(json.dumps(reflection.to_json(), indent=2, ensure_ascii=False))
        return
    if not streamed:
        console.print(reflection.text)
    console.print()
    print_reflection_facts(console, reflection)


def print_reflection_facts(console, reflection) -> None:
    def listing(pairs):
        return ", ".join(f"{name} ({count})" for name, count in pairs) or "—"

    console.print(f"[bold]Entries[/]: {reflection.entries}")
    console.print(f"[bold]People and places[/]: {listing(reflection.people)}")
    console.print(f"[bold]Themes[/]: {listing(reflection.themes)}")
    console.print(f"[bold]Mood words[/]: {listing(reflection.moods)}")
    if reflection.weekly:
        bars = " ▁▂▃▄▅▆▇█"
        top = max(c for _, c in reflection.weekly) or 1
        line = "".join(bars[min(8, round(8 * c / top))] for _, c in reflection.weekly)
        console.print(f"[bold]Entries per week[/]: {line}")
    dates = reflection.dates
    shown = ", ".join(dates[:12]) + (f" … (+{len(dates) - 12})" if len(dates) > 12 else "")
    console.print(f"[bold]Dates drawn on[/]: {shown or '—'}")


def register(app: typer.Typer) -> None:
    app.command("reflect")(reflect_command)
