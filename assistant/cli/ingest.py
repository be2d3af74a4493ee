"""`memex add | ingest | watch | status | forget | compact | search`: the ingest commands."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import date
from pathlib import Path

import typer

from assistant import home as home_mod
from assistant.cli.common import fail
from assistant.engine.memory_build import drop_memory_rows

MB = 1024 * 1024

_NO_EMBED = typer.Option(False, "--no-embed",
                         help="Skip embeddings for now (search uses words only until "
                              "`memex ingest` computes them).")
_MAX_FILE_MB = typer.Option(None, "--max-file-mb", min=1,
                            help="Skip files larger than this (default 50; remembered).")


_tokenizers: dict = {}


def _load_tokenizer():
    """The model's tokenizer (loaded once per process and model cache)."""
    from longnet.weights import ModelNotFoundError, load_tokenizer

    cache = home_mod.model_cache_dir()
    if cache not in _tokenizers:
        try:
            _tokenizers[cache] = load_tokenizer(None, cache)
        except ModelNotFoundError as exc:
            fail(str(exc))
    return _tokenizers[cache]


def _open(tokenizer=None):
    import ingest

    try:
        return ingest.open_store(home_mod.get_home(), tokenizer)
    except (ingest.StoreError, ingest.StreamError) as exc:
        fail(str(exc))


def _progress():
    from ingest.progress import progress_for_terminal

    return progress_for_terminal()


def _max_bytes(store, max_file_mb: int | None) -> int | None:
    if max_file_mb is None:
        return None
    with store.write():
        store.set_meta("max_file_bytes", int(max_file_mb) * MB)
    return int(max_file_mb) * MB


def _summary(report) -> str:
    parts = []
    for key in ("new", "changed", "moved", "revived", "deleted", "touched"):
        value = getattr(report, key)
        if value:
            parts.append(f"{value} {key}")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    parts.append(f"{report.unchanged} unchanged")
    text = ", ".join(parts)
    if report.tokens_appended:
        text += f"; +{report.tokens_appended:,} tokens"
    if report.chunks_embedded:
        text += f"; {report.chunks_embedded:,} chunks embedded"
    return text


def _run_ingest(store, tokenizer, scope, no_embed: bool, max_file_mb, as_json: bool = False):
    import ingest

    progress = _progress()
    try:
        report = ingest.run(store, tokenizer, scope=scope, embed=not no_embed,
                            max_file_bytes=_max_bytes(store, max_file_mb), progress=progress)
    except KeyboardInterrupt:
        progress.close()
        typer.secho("interrupted: everything committed so far is kept; run `memex ingest` "
                    "to finish", fg="yellow", err=True)
        raise typer.Exit(130)
    except (ingest.StoreError, ingest.StreamError) as exc:
        progress.close()
        fail(str(exc))
    progress.close()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return report
    typer.echo(_summary(report))
    for item in report.skipped:
        typer.echo(f"  skipped {item['path']}: {item['reason']}")
    for root in report.missing_sources:
        typer.secho(f"  source folder missing (left as it was): {root}", fg="yellow")
    if report.embed_error:
        typer.secho(f"  embeddings not computed: {report.embed_error}", fg="yellow")
    return report


def add(
    paths: list[Path] = typer.Argument(..., help="Folders or files to remember.",
                                       show_default=False),
    no_embed: bool = _NO_EMBED,
    max_file_mb: int | None = _MAX_FILE_MB,
) -> None:
    """Register folders or files and ingest them."""
    import ingest

    # The sources are recorded first, before the tokenizer loads: a Ctrl-C while it does
    # loses nothing the user asked for (`memex ingest` reads them later).
    store = _open()
    failed = False
    scope = []
    try:
        for path in paths:
            try:
                source, what = ingest.add_source(store, path)
            except ingest.StoreError as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)
                failed = True
                continue
            typer.echo(f"{path}: {what}")
            scope.append(source.path if what == "added" else Path(path).expanduser().absolute())
        if scope:
            tokenizer = _load_tokenizer()
            store.tokenizer = tokenizer
            _run_ingest(store, tokenizer, scope, no_embed, max_file_mb)
            _say_memory_behind(store)
    finally:
        store.close()
    if failed:
        raise typer.Exit(1)


def _say_memory_behind(store) -> None:
    """How long the memory build will take, at the end of `memex add`."""
    from assistant.config import load_config
    from assistant.engine.memory_build import memory_behind_text

    home = home_mod.get_home()
    line = memory_behind_text(home, len(store.stream), load_config(home).model)
    if line:
        typer.echo(line)
        typer.echo("(or leave `memex chat` or `memex watch` open: they build it in the "
                   "background, answering meanwhile with what is built)")


def ingest_command(
    no_embed: bool = _NO_EMBED,
    max_file_mb: int | None = _MAX_FILE_MB,
    as_json: bool = typer.Option(False, "--json", help="Print the run's report as JSON."),
) -> None:
    """Rescan every source: new, changed, moved and deleted files."""
    tokenizer = _load_tokenizer()
    store = _open(tokenizer)
    try:
        if not store.sources():
            fail("no sources yet: add one with `memex add PATH`")
        _run_ingest(store, tokenizer, None, no_embed, max_file_mb, as_json)
    finally:
        store.close()


def watch(
    debounce: float = typer.Option(1.0, min=0.05, help="Seconds of quiet before ingesting."),
    rescan_every: float = typer.Option(300.0, min=1.0,
                                       help="Seconds between full rescans (catches missed events)."),
    no_embed: bool = _NO_EMBED,
    max_file_mb: int | None = _MAX_FILE_MB,
    memory: bool = typer.Option(True, "--memory/--no-memory",
                                help="Extend the memory with what lands, while the machine "
                                     "is otherwise idle."),
) -> None:
    """Watch every source and ingest changes as they happen (Ctrl-C stops). New text goes
    into the memory too, whenever other programs leave the CPUs idle."""
    import ingest

    tokenizer = _load_tokenizer()
    store = _open(tokenizer)
    try:
        if not store.sources():
            fail("no sources yet: add one with `memex add PATH`")
        max_bytes = _max_bytes(store, max_file_mb)
        roots = [str(s.path) for s in store.sources()]
    finally:
        store.close()
    stop = threading.Event()

    def on_pass(report):
        typer.echo(f"{time.strftime('%H:%M:%S')} {_summary(report)}")
        for item in report.skipped:
            typer.echo(f"  skipped {item['path']}: {item['reason']}")

    def on_error(exc):
        typer.secho(f"{time.strftime('%H:%M:%S')} error: {exc}", fg="red", err=True)

    watcher = ingest.Watcher(home_mod.get_home(), tokenizer, embed=not no_embed,
                             debounce=debounce, rescan_every=rescan_every,
                             max_file_bytes=max_bytes, on_pass=on_pass, on_error=on_error)

    def request_stop(signum, frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        typer.echo("stopping after the current step… (Ctrl-C again to abort it)", err=True)

    previous = signal.signal(signal.SIGINT, request_stop)
    typer.echo(f"watching {len(roots)} source(s): {', '.join(roots)} (Ctrl-C to stop)")
    upkeep = None
    if memory:
        from assistant.cli.common import open_engine
        from assistant.engine.upkeep import keep_memory_current

        def say(line: str) -> None:
            typer.echo(f"{time.strftime('%H:%M:%S')} {line}")

        upkeep = threading.Thread(target=keep_memory_current, args=(open_engine, stop, say),
                                  name="memex-memory-upkeep", daemon=True)
        upkeep.start()
    try:
        watcher.run(stop)
    except KeyboardInterrupt:
        pass  # the open transaction was rolled back; nothing is half-written
    finally:
        signal.signal(signal.SIGINT, previous)
        stop.set()
        if upkeep is not None:
            upkeep.join(timeout=120)  # the build stops after its chunk and saves
    typer.echo("stopped")


def status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """What memex holds: sources, documents, skipped files, stream and memory."""
    store = _open()
    try:
        info = store.status()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    span = info["date_range"]
    table.add_row("data home", info["home"] + ("  (encrypted)" if info.get("encrypted") else ""))
    table.add_row("documents", f"{info['documents']:,} ({info['entries']:,} entries, "
                               f"{info['chunks']:,} chunks)")
    if info["by_format"]:
        table.add_row("formats", ", ".join(f"{k} {v}" for k, v in sorted(info["by_format"].items())))
    undated = info.get("undated_entries") or 0
    table.add_row("dates", (f"{span['first']} → {span['last']}" if span else "—")
                  + (f" ({undated:,} undated: file time)" if undated else ""))
    table.add_row("stream", f"{info['stream_tokens']:,} tokens"
                            + (f" ({info['dead_tokens']:,} dead: `memex compact`)"
                               if info["dead_tokens"] else ""))
    table.add_row("memory", f"{info['memory_tokens']:,} tokens"
                            + (f" — rebuild needed: {info['memory_rebuild']}"
                               if info["memory_rebuild"] else ""))
    emb = info["embeddings"]
    table.add_row("embeddings", f"{emb['done']:,} done, {emb['missing']:,} missing")
    table.add_row("last ingest", info["last_ingest"] or "never")
    console.print(table)
    if info["sources"]:
        console.print("[bold]sources[/bold]")
        for source in info["sources"]:
            where = source["root"] + (f"/{source['file']}" if source["file"] else "")
            console.print(f"  {where} ({source['documents']:,} documents)", markup=False,
                          highlight=False)
    if info["skipped"]:
        console.print(f"[bold]skipped ({len(info['skipped'])})[/bold]")
        for item in info["skipped"]:
            console.print(f"  {item['path']}: {item['reason']}", markup=False, highlight=False)


def forget(
    path: Path = typer.Argument(..., help="A file or folder (or a whole source) to forget.",
                                show_default=False),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Remove a file's or folder's text for good (index, stream, embeddings)."""
    import ingest
    from ingest.forget import forget_targets

    store = _open()
    try:
        try:
            source, rel, document_ids = forget_targets(store, path)
        except ingest.StoreError as exc:
            fail(str(exc))
        what = "the whole source " + str(source.path) if rel == "" or source.only_file \
            else f"{rel} in {source.root}"
        if not yes:
            typer.confirm(f"Forget {len(document_ids)} document(s): {what}? This cannot be undone",
                          abort=True)
        try:
            report = ingest.forget(store, path)
        except ingest.StoreError as exc:
            fail(str(exc))
        if report.tokens_zeroed:
            drop_memory_rows(home_mod.get_home())  # they hold the forgotten text's rows
    finally:
        store.close()
    typer.echo(f"forgot {report.documents} document(s), {report.chunks} chunk(s); "
               f"{report.tokens_zeroed:,} stream tokens zeroed")
    if report.source_removed:
        typer.echo("the source is no longer watched")
    else:
        typer.echo("excluded from future scans (`memex add` the path to bring it back)")
    if report.tokens_zeroed:
        typer.echo("the memory will be rebuilt without it: run `memex memory build`")
    if not report.scrubbed:
        typer.secho("warning: another memex process kept the database log open; close it and "
                    "run `memex compact` to finish scrubbing", fg="yellow", err=True)


def compact() -> None:
    """Rewrite the stream without superseded, deleted and forgotten text."""
    import ingest

    store = _open()
    progress = _progress()
    try:
        report = ingest.compact(store, progress=progress)
        if report.tokens_after != report.tokens_before:
            drop_memory_rows(home_mod.get_home())  # stream positions have moved
    except ingest.StoreError as exc:
        fail(str(exc))
    finally:
        progress.close()
        store.close()
    if report.tokens_after == report.tokens_before:
        typer.echo(f"nothing to compact ({report.tokens_before:,} tokens, all live)")
        return
    typer.echo(f"stream: {report.tokens_before:,} → {report.tokens_after:,} tokens "
               f"({report.entries_dropped} old entries dropped); the memory will be rebuilt "
               f"on `memex memory build`")


def _parse_day(value: str | None, option: str) -> str | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value.strip()).isoformat()
    except ValueError:
        pass
    import dateparser

    parsed = dateparser.parse(value, settings={"PREFER_DATES_FROM": "past"})
    if parsed is None:
        fail(f"{option}: cannot read {value!r} as a date (try 2024-03-05 or 'last monday')", 2)
    return parsed.date().isoformat()


def search(
    query: str = typer.Argument(..., help="Words to look for (any text is safe).",
                                show_default=False),
    since: str | None = typer.Option(None, "--since", help="Only entries on or after."),
    until: str | None = typer.Option(None, "--until", help="Only entries on or before."),
    limit: int = typer.Option(10, "--limit", "-n", min=1, max=200),
    no_embed: bool = typer.Option(False, "--no-embed", help="Words only (BM25), no embeddings."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Search your notes: ranked passages (BM25 fused with embeddings)."""
    from ingest.search import search as run_search

    since_day, until_day = _parse_day(since, "--since"), _parse_day(until, "--until")
    store = _open()
    try:
        embedder = None
        has_vectors = store.db.execute("SELECT 1 FROM embeddings LIMIT 1").fetchone()
        if has_vectors and not no_embed:
            from ingest.embeddings import EmbeddingsUnavailable, load_embedder

            try:
                embedder = load_embedder()
            except EmbeddingsUnavailable as exc:
                typer.secho(f"note: words only ({exc})", fg="yellow", err=True)
        results = run_search(store, query, since=since_day, until=until_day, limit=limit,
                             embedder=embedder)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps({"results": [r.as_json() for r in results]}, indent=2,
                              ensure_ascii=False))
        return
    if not results:
        typer.echo("no matches")
        return
    from rich.console import Console

    console = Console()
    for result in results:
        when = result.date or "undated"
        if result.date and result.date_rule == "mtime":
            when += " (file time)"  # the file names no date of its own
        console.print(f"[bold]{when}[/bold]  [cyan]{_escape(result.path)}"
                      f"[/cyan]  [dim]{result.score:.4f}[/dim]")
        console.print(f"  {_escape(result.snippet)}", highlight=False)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def register(app: typer.Typer) -> None:
    app.command("add")(add)
    app.command("ingest")(ingest_command)
    app.command("watch")(watch)
    app.command("status")(status)
    app.command("forget")(forget)
    app.command("compact")(compact)
    app.command("search")(search)
