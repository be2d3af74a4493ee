"""`memex ask` and `memex eval`: one question answered and streamed, or a file of
questions scored."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import typer

from assistant.cli.common import MODE_HELP, check_mode, fail, open_engine, require_notes
from assistant.engine.evaluation import load_questions, run_eval
from assistant.engine.quotes import short_part


def _print_sources(console, sources, notes=()) -> None:
    for note in notes:
        console.print(f"[yellow]note:[/] {note}")
    if not sources:
        return
    console.print("\n[bold]Sources[/]")
    for i, source in enumerate(sources, 1):
        console.print(f"  [cyan]{i}.[/] {source.path} [dim]{source.date or 'undated'}[/]",
                      highlight=False)
        console.print(f"     [dim]{source.snippet}[/]", highlight=False)


def ask(
    question: str = typer.Argument(..., help="Your question, in plain words."),
    mode: str | None = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    resume: bool = typer.Option(False, "--continue", "-c",
                                help="Continue the latest conversation (earlier turns in view)."),
    today: str | None = typer.Option(None, "--today", help="Resolve 'last week' etc. against this date."),
) -> None:
    """Ask your notes a question: the answer streams in, then its sources."""
    from rich.console import Console

    from assistant.engine import EngineError, Stopped
    from assistant.engine.conversations import ConversationStore

    mode = check_mode(mode)
    engine = open_engine(today)
    require_notes(engine)
    chats = ConversationStore(engine.home)
    chats.mark_interrupted()
    conversation = chats.latest_conversation() if resume else None
    history = []
    if conversation is None:
        conversation = chats.new_conversation(mode=mode or engine.config.mode)
    else:
        history = _history(chats.messages(conversation, with_sources=False))
    chats.add_message(conversation, "user", question)
    message = chats.add_message(conversation, "assistant", "", status="streaming",
                                mode=mode or engine.config.mode)
    console = Console(highlight=False)
    parts: list[str] = []
    last_save = [time.monotonic()]

    def on_token(piece: str) -> None:
        parts.append(piece)
        if not as_json:
            sys.stdout.write(piece)
            sys.stdout.flush()
        if time.monotonic() - last_save[0] > 0.5:  # a crash keeps what was said so far
            chats.update_message(message, content="".join(parts))
            last_save[0] = time.monotonic()

    try:
        answer = engine.answer(question, mode, history=history, on_token=on_token)
    except KeyboardInterrupt:
        chats.update_message(message, content="".join(parts), status="partial")
        if not as_json:
            sys.stdout.write("\n")
        typer.secho("(stopped; the partial answer is saved)", fg="yellow", err=True)
        raise typer.Exit(130)
    except (EngineError, Stopped) as exc:
        chats.update_message(message, content="".join(parts), status="error", note=str(exc))
        fail(str(exc))
    chats.update_message(message, content=answer.text, status=answer.status,
                         timings=answer.timings, note="; ".join(answer.notes) or None)
    chats.add_sources(message, answer.sources)
    if as_json:
        typer.echo(json.dumps(answer.to_json(), indent=2, ensure_ascii=False))
        return
    sys.stdout.write("\n")
    _print_sources(console, answer.sources, answer.notes)
    t = answer.timings
    rate = f", {t['tokens_per_s']} tokens/s" if t.get("tokens_per_s") else ""
    console.print(f"[dim]{answer.mode} · first token {t['ttft_s']} s · total {t['total_s']} s{rate}[/]")


def _history(messages) -> list[tuple[str, str]]:
    """(question, answer) pairs of completed turns, the last three."""
    pairs, question = [], None
    for m in messages:
        if m.role == "user":
            question = m.content
        elif m.role == "assistant" and question is not None and m.content:
            pairs.append((question, short_part(m.content)))
            question = None
    return pairs[-3:]


def eval_command(
    questions: Path = typer.Argument(..., help="JSONL file: {question, answers, evidence} per line."),
    mode: str | None = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions."),
    today: str | None = typer.Option(None, "--today", help="Resolve 'last week' etc. against this date."),
) -> None:
    """Score answers against known ones: accuracy (short answer, quotes, whole answer),
    citation rate, abstention on questions the notes cannot answer, loops."""
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
