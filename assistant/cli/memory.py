"""`memex memory build | status | rebuild`: the LongNet memory of the whole stream."""

from __future__ import annotations

import json
import time

import typer

from assistant.cli.common import fail, open_engine
from assistant.engine.memory_build import (
    build_dtype,
    duration_text,
    estimated_build_seconds,
    memory_status_dict,
    record_build_rate,
    start_memory,
)

memory_app = typer.Typer(help="The LongNet memory of your whole history: build it, see it.",
                         no_args_is_help=True)


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def build_memory(engine, fresh: bool = False, as_json: bool = False,
                 dtype: str | None = None) -> dict:
    """Bring the memory up to the stream (from scratch when ``fresh`` or flagged), computing
    in ``dtype`` (default: the ``build_dtype`` setting; see ``build_dtype``). Waits, saying
    so, while another memex process extends the memory (``Engine.memory_writer``).

    Resumable: progress is saved every minute and on Ctrl-C; a later run goes on from there.
    """
    import contextlib

    from rich.console import Console

    from assistant.engine.memory import MemoryBusy

    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(engine.memory_writer(wait=False))
        except MemoryBusy:
            if not as_json:
                Console(stderr=True).print("another memex process is extending the memory: "
                                           "waiting for it to finish…")
            stack.enter_context(engine.memory_writer())
        try:
            return _build_memory(engine, fresh, as_json, dtype)
        finally:
            # Answers by this engine afterwards read the saved memory in their own dtype.
            engine.memory_dtype = None
            if engine._memory is not None and engine._memory.dtype != engine.dtype:
                engine._memory = None


def _build_memory(engine, fresh: bool, as_json: bool, dtype: str | None) -> dict:
    """``build_memory`` once the memory is this process's to extend."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from assistant.engine import EngineError

    err = Console(stderr=True)
    wanted = build_dtype(engine, dtype)
    if engine._memory is not None and engine._memory.dtype != wanted:
        engine.save_memory()  # loaded for answers: read back in the build's dtype
        engine._memory = None
    engine.memory_dtype = wanted
    try:
        memory = start_memory(engine, fresh, engine.memory_needs_rebuild(),
                              say=None if as_json else err.print)
    except Exception as exc:  # made by another model or configuration, or damaged
        raise EngineError(f"{exc}\nrun `memex memory rebuild` to start it again") from None
    total = engine.stream_tokens()
    start_offset = memory.stream_offset
    if not as_json and total > start_offset:
        seconds, source = estimated_build_seconds(engine.home, total - start_offset)
        when = (f"about {duration_text(seconds)} ({source})" if seconds is not None
                else "the bar shows the ETA once reading starts")
        err.print(f"memory: {total - start_offset:,} tokens to read, {when}")
    started = time.perf_counter()
    done = [start_offset]
    if err.is_terminal and not as_json:
        columns = (TextColumn("[bold]memory[/]"), BarColumn(), TaskProgressColumn(),
                   TextColumn("{task.completed:,.0f}/{task.total:,.0f} tokens"),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                   TimeRemainingColumn())
        with Progress(*columns, console=err) as bar:
            task = bar.add_task("memory", total=total, completed=start_offset, rate="")

            def progress(position, total_now):
                done[0] = position
                elapsed = time.perf_counter() - started
                rate = (position - start_offset) / elapsed if elapsed > 0 else 0
                bar.update(task, completed=position, total=total_now, rate=f"{rate:,.0f} tok/s")

            added = engine.catch_up(memory, progress=progress)
    else:
        last_line = [0.0]

        def progress(position, total_now):
            done[0] = position
            if not as_json and time.perf_counter() - last_line[0] > 10:
                err.print(f"memory: {position:,}/{total_now:,} tokens")
                last_line[0] = time.perf_counter()

        added = engine.catch_up(memory, progress=progress)
    elapsed = time.perf_counter() - started
    record_build_rate(engine.home, added, elapsed, engine.device,
                      str(memory.dtype).removeprefix("torch."))
    return {"tokens": memory.tokens, "stream_tokens": total, "added_tokens": added,
            "state_bytes": memory.nbytes, "dtype": str(memory.dtype).removeprefix("torch."),
            "rows_bytes": memory.rows.nbytes if memory.rows is not None else None,
            "seconds": round(elapsed, 2),
            "tokens_per_s": round(added / elapsed, 1) if elapsed > 0 and added else None}


DTYPE_HELP = ("Compute in float32 or bfloat16 (default: the build_dtype setting, auto: "
              "bfloat16 where this CPU has AVX512-BF16 or AMX).")


def _check_dtype(dtype: str | None) -> str | None:
    if dtype is not None and dtype not in ("auto", "float32", "bfloat16"):
        fail(f"unknown --dtype {dtype!r}: use auto, float32 or bfloat16")
    return dtype


def _run_build(fresh: bool, as_json: bool, dtype: str | None = None) -> None:
    from assistant.engine import EngineError

    dtype = _check_dtype(dtype)
    engine = open_engine()
    try:
        summary = build_memory(engine, fresh=fresh, as_json=as_json, dtype=dtype)
    except KeyboardInterrupt:
        tokens = engine.memory_info()["tokens"]  # what the saved memory holds
        typer.secho(f"\nstopped: progress saved at {tokens:,} tokens; run `memex memory build` "
                    "to go on", fg="yellow", err=True)
        raise typer.Exit(130)
    except EngineError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        rate = f" at {summary['tokens_per_s']:,.0f} tokens/s" if summary["tokens_per_s"] else ""
        typer.echo(f"memory: {summary['tokens']:,} of {summary['stream_tokens']:,} stream tokens "
                   f"(+{summary['added_tokens']:,}{rate}), state {_human_bytes(summary['state_bytes'])}"
                   + (f", rows {_human_bytes(summary['rows_bytes'])} on disk"
                      if summary["rows_bytes"] else ""))


@memory_app.command("build")
def memory_build(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
    distributed: bool = typer.Option(
        False, "--distributed",
        help="Split the stream across the ranks of a torchrun job "
             "(`torchrun --nproc-per-node K $(which memex) memory build --distributed`)."),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
) -> None:
    """Feed the stream's new tokens into the memory (resumable; Ctrl-C saves progress)."""
    if distributed:
        _run_distributed_build(fresh=False, as_json=as_json)
        return
    _run_build(fresh=False, as_json=as_json, dtype=dtype)


def _run_distributed_build(fresh: bool, as_json: bool) -> None:
    import os

    from assistant.cli.memory_distributed import DistributedBuildError, build_memory_distributed
    from assistant.home import get_home

    try:
        summary = build_memory_distributed(get_home(), fresh=fresh, as_json=as_json)
    except DistributedBuildError as exc:
        fail(str(exc))
    if os.environ.get("RANK", "0") != "0":
        return  # rank 0 speaks for the job
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        typer.echo(f"memory: {summary['tokens']:,} of {summary['stream_tokens']:,} stream tokens "
                   f"(+{summary['added_tokens']:,} over {summary['ranks']} ranks), "
                   f"state {_human_bytes(summary['state_bytes'])}")


@memory_app.command("rebuild")
def memory_rebuild(as_json: bool = typer.Option(False, "--json", help="Print a JSON summary."),
                   dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP)) -> None:
    """Throw the memory away and read the whole stream again."""
    _run_build(fresh=True, as_json=as_json, dtype=dtype)


@memory_app.command("status")
def memory_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """How much of the stream the memory holds, and its size."""
    engine = open_engine()
    info = memory_status_dict(engine)
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    typer.echo(f"memory tokens: {info['tokens']:,}")
    typer.echo(f"stream tokens: {info['stream_tokens']:,}")
    typer.echo(f"behind by:     {info['lag_tokens']:,} tokens")
    typer.echo(f"state size:    {_human_bytes(info['state_bytes'])}")
    if info["levels"]:
        typer.echo(f"levels:        {info['levels']} ({info['position_mode']} positions, {info['dtype']})")
    rows = info.get("rows")
    if rows:
        typer.echo(f"rows:          tokens {rows['from_token']:,}–{rows['to_token']:,}, "
                   f"{_human_bytes(rows['bytes'])} on disk (read by memory answers)")
    if info["rebuild_needed"]:
        typer.secho(f"needs a rebuild: {info['rebuild_needed']} (`memex memory build` does it)",
                    fg="yellow")


def register(app: typer.Typer) -> None:
    app.add_typer(memory_app, name="memory")
