"""`memex reflect`: a reflection on a period, streamed, then the facts it draws on."""

from __future__ import annotations

import json
import sys

import typer

from assistant.cli.common import check_today, fail, open_engine, require_notes, unlock_home


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
    With no period given: the latest month with entries. Answered by the warm server
    (`memex serve`) when it can be, else here."""
    from assistant.home import get_home
    from assistant.server.client import ServerUnavailable, open_server

    period = {"week": week, "month": month, "year": year, "since": since, "until": until,
              "on_this_day": on_this_day}
    if sum([week, month, year, on_this_day, bool(since or until)]) > 1:
        fail("pick one period: --week, --month, --year, --since/--until or --on-this-day")
    check_today(today)
    home = get_home()
    if open_server(home, unlock=unlock_home) is not None:
        try:
            _reflect_warm(home, period, as_json, today)
            return
        except ServerUnavailable:
            pass
    _reflect_here(period, as_json, today)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _reflect_warm(home, period: dict, as_json: bool, today: str | None) -> None:
    from rich.console import Console

    from assistant.engine.reflection import Reflection
    from assistant.server.client import request
    from assistant.server.protocol import ProtocolError

    console = Console(highlight=False)
    streamed = []
    try:
        for reply in request(home, {"op": "reflect", "period": period, "today": today}):
            if "label" in reply and not as_json:
                console.print(f"[bold]Reflection on {reply['label']}[/]\n")
            elif "token" in reply:
                streamed.append(reply["token"])
                if not as_json:
                    _write(reply["token"])
            elif "error" in reply:
                fail(reply["error"])
            elif "done" in reply:
                _show(console, Reflection.from_json(reply["done"]), reply["done"], streamed,
                      as_json)
    except KeyboardInterrupt:
        typer.secho("\n(stopped)", fg="yellow", err=True)
        raise typer.Exit(130)
    except ProtocolError as exc:
        fail(f"{exc}; see serve.log in the data home")


def _reflect_here(period: dict, as_json: bool, today: str | None) -> None:
    from rich.console import Console

    from assistant.engine.reflection import reflect_on

    engine = open_engine(today)
    require_notes(engine)
    console = Console(highlight=False)
    streamed = []

    def on_token(piece):
        streamed.append(piece)
        if not as_json:
            _write(piece)

    def on_label(label):
        if not as_json:
            console.print(f"[bold]Reflection on {label}[/]\n")

    try:
        reflection = reflect_on(engine, period, on_token=on_token, on_label=on_label)
    except ValueError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        typer.secho("\n(stopped)", fg="yellow", err=True)
        raise typer.Exit(130)
    _show(console, reflection, reflection.to_json(), streamed, as_json)


def _show(console, reflection, data: dict, streamed: list, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
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
