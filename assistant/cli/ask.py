"""`memex ask` and `memex eval`: one question answered and streamed, or a file of
questions scored."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from assistant.cli.common import (
    MODE_HELP,
    check_mode,
    check_today,
    fail,
    open_engine,
    require_notes,
    unlock_home,
)


def _print_sources(console, sources, notes=()) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    if not sources:
        return
    console.print("\n[bold]Sources[/]")
    for i, source in enumerate(sources, 1):
        console.print(f"  [cyan]{i}.[/] {source['path']} [dim]{source.get('date') or 'undated'}[/]",
                      highlight=False)
        console.print(f"     [dim]{source.get('snippet', '')}[/]", highlight=False)


def ask(
    question: str = typer.Argument(..., help="Your question, in plain words."),
    mode: str | None = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    resume: bool = typer.Option(False, "--continue", "-c",
                                help="Continue the latest conversation (earlier turns in view)."),
    today: str | None = typer.Option(None, "--today", help="Resolve 'last week' etc. against this date."),
) -> None:
    """Ask your notes a question: the answer streams in, then its sources.

    The model stays loaded in a background process for the next question (`memex serve`);
    where that cannot be, the answer is computed here."""
    from assistant.home import get_home
    from assistant.server.client import ServerUnavailable, open_server

    mode = check_mode(mode)
    check_today(today)
    home = get_home()
    if open_server(home, unlock=unlock_home) is not None:
        try:
            _ask_warm(home, question, mode, as_json, resume, today)
            return
        except ServerUnavailable:
            pass  # it went away before saying a word: answer here
    _ask_here(question, mode, as_json, resume, today)


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()


def _ask_warm(home, question, mode, as_json, resume, today) -> None:
    from assistant.server.client import request
    from assistant.server.protocol import ProtocolError

    message = {"op": "ask", "question": question, "mode": mode, "continue": resume,
               "today": today}
    streamed = False
    try:
        for reply in request(home, message):
            if "token" in reply:
                streamed = True
                if not as_json:
                    _write(reply["token"])
            elif "error" in reply:
                if streamed and not as_json:
                    sys.stdout.write("\n")
                fail(reply["error"])
            elif "done" in reply:
                _show_answer(reply["done"], as_json, warm=True)
    except KeyboardInterrupt:  # the server sees us go and keeps the partial answer
        if not as_json:
            sys.stdout.write("\n")
        typer.secho("(stopped; the partial answer is saved)", fg="yellow", err=True)
        raise typer.Exit(130)
    except ProtocolError as exc:
        fail(f"{exc}; see serve.log in the data home")


def _ask_here(question, mode, as_json, resume, today) -> None:
    from assistant.engine import EngineError, Stopped
    from assistant.engine.asking import AnswerStopped, answer_payload, ask_in_conversation

    engine = open_engine(today)
    require_notes(engine)
    try:
        answer = ask_in_conversation(engine, question, mode, resume=resume,
                                     on_token=None if as_json else _write)
    except AnswerStopped:
        if not as_json:
            sys.stdout.write("\n")
        typer.secho("(stopped; the partial answer is saved)", fg="yellow", err=True)
        raise typer.Exit(130)
    except (EngineError, Stopped) as exc:
        fail(str(exc))
    _show_answer(answer_payload(answer), as_json, warm=False)


def _show_answer(payload: dict, as_json: bool, warm: bool) -> None:
    """The answer's JSON (the keys ``Answer.to_json`` promises), or its sources, notes and
    timings after the streamed text."""
    from rich.console import Console

    if as_json:
        shown = {k: v for k, v in payload.items() if k not in ("mode", "status", "notes")}
        typer.echo(json.dumps(shown, indent=2, ensure_ascii=False))
        return
    sys.stdout.write("\n")
    console = Console(highlight=False)
    _print_sources(console, payload.get("sources", []), payload.get("notes", ()))
    t = payload.get("timings") or {}
    rate = f", {t['tokens_per_s']} tokens/s" if t.get("tokens_per_s") else ""
    where = " · warm" if warm else ""
    console.print(f"[dim]{payload.get('mode')} · first token {t.get('ttft_s')} s · total "
                  f"{t.get('total_s')} s{rate}{where}[/]")


def eval_command(
    questions: Path = typer.Argument(..., help="JSONL file: {question, answers, evidence} per line."),
    mode: str | None = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions."),
    today: str | None = typer.Option(None, "--today", help="Resolve 'last week' etc. against this date."),
) -> None:
    """Score answers against known ones: accuracy (short answer, quotes, whole answer),
    citation rate, abstention on questions the notes cannot answer, loops."""
    from assistant.engine.evaluation import load_questions, run_eval
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    mode = check_mode(mode)
    try:
        items = load_questions(questions)
    except ValueError as exc:
        fail(str(exc))
    if limit:
        items = items[:limit]
    engine = open_engine(today)
    require_notes(engine)
    mode = mode or engine.config.mode
    err = Console(stderr=True)
    if err.is_terminal:
        with Progress(TextColumn("[bold]eval[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[right]} right"), TimeRemainingColumn(),
                      console=err, transient=True) as bar:
            task = bar.add_task(mode, total=len(items), right=0)
            right = [0]

            def progress(done, result):
                right[0] += result["correct"]
                bar.update(task, completed=done, right=right[0])

            report = run_eval(engine, items, mode, progress)
    else:
        report = run_eval(engine, items, mode)
    if as_json:
        typer.echo(json.dumps(report, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False)
    for r in report["results"]:
        mark = "[green]✓[/]" if r["correct"] else "[red]✗[/]"
        if r["answerable"]:
            cite = "[green]cited[/]" if r["cited"] else "[red]uncited[/]"
        else:
            cite = "[green]abstained[/]" if r["abstained"] else "[red]answered[/]"
        console.print(f"{mark} {cite} {r['question']}\n    [dim]→ {r['short']}[/]")
    unanswerable = (f" · abstained on {report['abstention']:.0%} of {report['unanswerable']} "
                    "unanswerable" if report["unanswerable"] else "")
    quotes = (f" · quotes {report['quote_accuracy']:.0%}"
              if report["quote_accuracy"] is not None else "")
    console.print(f"\n[bold]{mode}[/]: {report['n']} questions · accuracy "
                  f"{report['accuracy']:.0%} · short {report['short_accuracy']:.0%}{quotes} · "
                  f"cited {report['cited']:.0%}{unanswerable} · loops {report['loops']} · "
                  f"{report['seconds_per_question']} s/question")


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("eval")(eval_command)
