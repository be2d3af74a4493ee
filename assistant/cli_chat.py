"""`memex ask`, `eval`, `reflect`, `chat`, `export` and `config`."""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from assistant.config import MODES, SETTINGS, ConfigError, load_config, set_value

MODE_HELP = f"Answer mode: {', '.join(MODES)} (default: the configured mode, hybrid)."


def _fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _engine(today: str | None = None):
    from assistant.engine import Engine
    from assistant.home import get_home

    try:
        config = load_config(get_home())
    except ConfigError as exc:
        _fail(str(exc))
    when = None
    if today:
        try:
            when = date.fromisoformat(today)
        except ValueError:
            _fail(f"--today must be an ISO date (YYYY-MM-DD), not {today!r}")
    return Engine(get_home(), config, today=when)


def _check_mode(mode: str | None) -> str | None:
    if mode is not None and mode not in MODES:
        _fail(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    return mode


def _require_notes(engine) -> None:
    """A clear message instead of an empty answer when nothing has been added yet."""
    try:
        count = engine.entry_count()
    except Exception as exc:  # the store could not be opened at all
        _fail(f"cannot open the notes store in {engine.home}: {exc}")
    if count == 0:
        _fail("no notes yet: add a folder first with `memex add PATH`")


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

    from assistant.conversations import ConversationStore
    from assistant.engine import EngineError, Stopped

    mode = _check_mode(mode)
    engine = _engine(today)
    _require_notes(engine)
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
        _fail(str(exc))
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
            pairs.append((question, m.content))
            question = None
    return pairs[-3:]


def score(answer_text: str, sources, accepted: list[str], evidence: list[str]) -> tuple[bool, bool]:
    """(correct, cited): an accepted string in the answer (case-insensitive); an evidence
    path among the sources."""
    text = answer_text.lower()
    correct = any(str(a).lower() in text for a in accepted)
    paths = {_norm_path(s.path) for s in sources}
    cited = any(_norm_path(e) in paths for e in evidence)
    return correct, cited


def _norm_path(path: str) -> str:
    return str(path).replace("\\", "/").lstrip("./")


def load_questions(path: Path) -> list[dict]:
    """Lines of {"question", "answers", "evidence"}; a bad line is an error naming it."""
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("question"), str):
            raise ValueError(f"{path}:{number}: needs a \"question\" string")
        answers = item.get("answers", [])
        evidence = item.get("evidence", [])
        if not isinstance(answers, list) or not isinstance(evidence, list):
            raise ValueError(f"{path}:{number}: \"answers\" and \"evidence\" must be lists")
        items.append({**item, "answers": [str(a) for a in answers],
                      "evidence": [str(e) for e in evidence]})
    return items


def run_eval(engine, items: list[dict], mode: str, progress=None) -> dict:
    """Answer every question; the summary and per-question results."""
    results = []
    for index, item in enumerate(items):
        answer = engine.answer(item["question"], mode)
        correct, cited = score(answer.text, answer.sources, item["answers"], item["evidence"])
        results.append({
            "question": item["question"], "answer": answer.text, "correct": correct,
            "cited": cited, "expected": item["answers"], "evidence": item["evidence"],
            "sources": [s.public() for s in answer.sources], "timings": answer.timings,
            "status": answer.status, "prompt_tokens": answer.prompt_tokens,
        })
        if progress:
            progress(index + 1, results[-1])
    n = len(results)
    return {
        "mode": mode, "n": n,
        "accuracy": round(sum(r["correct"] for r in results) / n, 4) if n else 0.0,
        "cited": round(sum(r["cited"] for r in results) / n, 4) if n else 0.0,
        "seconds_per_question": round(sum(r["timings"]["total_s"] or 0 for r in results) / n, 3)
        if n else 0.0,
        "results": results,
    }


def eval_command(
    questions: Path = typer.Argument(..., help="JSONL file: {question, answers, evidence} per line."),
    mode: str | None = typer.Option(None, "--mode", "-m", help=MODE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    limit: int | None = typer.Option(None, "--limit", help="Only the first N questions."),
    today: str | None = typer.Option(None, "--today", help="Resolve 'last week' etc. against this date."),
) -> None:
    """Score answers against known ones: accuracy and citation rate."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    mode = _check_mode(mode)
    try:
        items = load_questions(questions)
    except ValueError as exc:
        _fail(str(exc))
    if limit:
        items = items[:limit]
    engine = _engine(today)
    _require_notes(engine)
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
        cite = "[green]cited[/]" if r["cited"] else "[red]uncited[/]"
        console.print(f"{mark} {cite} {r['question']}\n    [dim]→ {r['answer']}[/]")
    console.print(f"\n[bold]{mode}[/]: {report['n']} questions · accuracy "
                  f"{report['accuracy']:.0%} · cited {report['cited']:.0%} · "
                  f"{report['seconds_per_question']} s/question")


def reflect_command(
    week: bool = typer.Option(False, "--week", help="The last 7 days (default)."),
    month: bool = typer.Option(False, "--month", help="The last 30 days."),
    year: bool = typer.Option(False, "--year", help="The last 365 days."),
    since: str | None = typer.Option(None, "--since", help="Start date (YYYY-MM-DD or words)."),
    until: str | None = typer.Option(None, "--until", help="End date (YYYY-MM-DD or words)."),
    on_this_day: bool = typer.Option(False, "--on-this-day", help="This day in every year."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    today: str | None = typer.Option(None, "--today", help="Take this date as today."),
) -> None:
    """A reflection on a period: what happened, who and what recurs, the mood, the dates."""
    from rich.console import Console

    chosen = sum([week, month, year, on_this_day, bool(since or until)])
    if chosen > 1:
        _fail("pick one period: --week, --month, --year, --since/--until or --on-this-day")
    engine = _engine(today)
    _require_notes(engine)
    try:
        start, end, label, month_day = resolve_period(engine.today, week, month, year, since,
                                                      until, on_this_day)
    except ValueError as exc:
        _fail(str(exc))
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


def resolve_period(today: date, week=False, month=False, year=False, since=None, until=None,
                   on_this_day=False):
    """(start, end, label, month_day) for the reflect options."""
    from assistant.engine import period_range

    if on_this_day:
        return None, None, f"{today:%B} {today.day} in every year", (today.month, today.day)
    if since or until:
        start = _one_date(since, today, first=True) if since else None
        end = _one_date(until, today, first=False) if until else today
        if start and end and start > end:
            raise ValueError("--since is after --until")
        label = f"{start.isoformat() if start else 'the beginning'} to {end.isoformat()}"
        return start, end, label, None
    kind = "month" if month else "year" if year else "week"
    start, end, label = period_range(kind, today)
    return start, end, label, None


def _one_date(text: str, today: date, first: bool) -> date:
    from assistant.dates import resolve_dates

    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    found = resolve_dates(text, today)
    if found is None or (found.start is None and found.end is None):
        raise ValueError(f"cannot read {text!r} as a date (try YYYY-MM-DD or 'March 2024')")
    return (found.start or found.end) if first else (found.end or found.start)


def chat(
    # Annotated defaults: bare `memex` calls this function directly, with no arguments.
    mode: Annotated[str | None, typer.Option("--mode", "-m", help=MODE_HELP)] = None,
    new: Annotated[bool, typer.Option("--new", help="Start a new conversation.")] = False,
    today: Annotated[str | None, typer.Option("--today", help="Take this date as today.")] = None,
    watch: Annotated[bool, typer.Option("--watch/--no-watch",
                                        help="Ingest changes in the background.")] = True,
) -> None:
    """Open the chat (Textual TUI). Bare `memex` does the same."""
    mode = _check_mode(mode)
    engine = _engine(today)
    from assistant.tui.app import MemexApp

    MemexApp(engine, mode=mode, new_conversation=new, watch=watch).run()


def export(
    out: Path = typer.Option(Path("memex-export"), "--out", "-o", help="Folder to write into."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write conversations and the index of your notes as Markdown and JSON."""
    from assistant.conversations import ConversationStore
    from assistant.home import get_home

    home = get_home()
    out.mkdir(parents=True, exist_ok=True)
    conversations = ConversationStore(home).export()
    written = []
    written.append(_write(out / "conversations.json", json.dumps(conversations, indent=2, ensure_ascii=False)))
    written.append(_write(out / "conversations.md", conversations_markdown(conversations)))
    index = _index_rows(home)
    written.append(_write(out / "index.json", json.dumps(index, indent=2, ensure_ascii=False)))
    written.append(_write(out / "index.md", index_markdown(index)))
    summary = {"folder": str(out.resolve()), "files": [str(p) for p in written],
               "conversations": len(conversations), "documents": len(index)}
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(f"wrote {len(conversations)} conversations and an index of {len(index)} "
                   f"documents to {out}/")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)  # an export holds private text
    return path


def _index_rows(home: Path) -> list[dict]:
    """Documents of the ingest store (path, root, date, format, status); empty without one."""
    try:
        import ingest

        store = ingest.open_store(home)
    except Exception:
        return []
    db = store.db
    columns = {c.name for c in db["documents"].columns} if "documents" in db.table_names() else set()
    if not columns:
        return []
    wanted = [c for c in ("path", "root", "entry_date", "format", "status", "size", "error",
                          "date_rule", "title") if c in columns]
    rows = [dict(r) for r in db.query(f"select {', '.join(wanted)} from documents order by "
                                      f"{'entry_date, ' if 'entry_date' in columns else ''}path")]
    if hasattr(store, "close"):
        store.close()
    return rows


def conversations_markdown(conversations: list[dict]) -> str:
    lines = ["# memex conversations", ""]
    for conv in conversations:
        lines += [f"## {conv['title'] or 'Untitled'}", "", f"_{conv['created']}_", ""]
        for m in conv["messages"]:
            who = "**You**" if m["role"] == "user" else "**memex**"
            status = "" if m["status"] in ("complete", None) else f" _({m['status']})_"
            lines += [f"{who}{status}: {m['content']}", ""]
            for s in m.get("sources", []):
                lines.append(f"- `{s['path']}` ({s['date'] or 'undated'}): {s['snippet']}")
            if m.get("sources"):
                lines.append("")
    return "\n".join(lines)


def index_markdown(rows: list[dict]) -> str:
    lines = ["# memex index", "", "| date | path | format | status |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.get('entry_date') or ''} | {r.get('path')} | {r.get('format') or ''} "
                     f"| {r.get('status') or ''} |")
    return "\n".join(lines) + "\n"


config_app = typer.Typer(help="Settings: model, device, dtype, positions, levels, answer mode…",
                         no_args_is_help=True)


@config_app.command("show")
def config_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show every setting and where the file lives."""
    from assistant.config import config_path
    from assistant.home import get_home

    try:
        config = load_config(get_home())
    except ConfigError as exc:
        _fail(str(exc))
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
    from assistant.home import get_home

    try:
        config = set_value(get_home(), key, value)
    except ConfigError as exc:
        _fail(str(exc))
    typer.echo(f"{key} = {getattr(config, key)!r}")


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
    app.command("eval")(eval_command)
    app.command("reflect")(reflect_command)
    app.command("chat")(chat)
    app.command("export")(export)
    app.add_typer(config_app, name="config")
