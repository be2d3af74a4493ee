"""Question answering over the example journal: the four answer modes side by side.

    .venv/bin/python bench/qa.py [--modes hybrid,memory,retrieval,dense] [--limit N]

Builds a data home for examples/journal once (ingest with embeddings, then the LongNet
memory), answers every question of examples/questions.jsonl in each mode with the
default model, and prints accuracy (an accepted answer string in the answer,
case-insensitive), citation rate (an evidence file among the sources) and the median
seconds per question. Resumable: each answered question is appended to
bench/results/qa-<mode>.tmp, and a rerun carries on from there (--fresh starts over).
The table goes to bench/results/qa.txt.

    .venv/bin/python bench/qa.py --recall [--home H]

measures retrieval alone, without the model (a minute or two): the share of questions
whose retrieval prompt holds an accepted answer, the share citing an evidence file,
and the share whose searched entries hold the answer at all; even- and odd-numbered
questions apart (tune on one half, check the other).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import date
from pathlib import Path
from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
MODES = ("hybrid", "memory", "retrieval", "dense")


def machine() -> str:
    cpu = cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at start"


def prepare_home(home: Path, journal: Path, console, memory: bool = True) -> None:
    """Ingest the journal and build the memory (each step skips what is already done)."""
    import ingest
    from assistant.cli.memory import build_memory
    from assistant.engine import Engine
    from assistant.home import model_cache_dir, set_home
    from longnet.weights import load_tokenizer

    set_home(home)
    store = ingest.open_store(home)
    if not store.sources():
        ingest.add_source(store, journal)
    tokenizer = load_tokenizer(None, model_cache_dir())
    console.print(f"ingesting {journal} into {home} …")
    ingest.run(store, tokenizer, embed=True)
    store.close()
    if not memory:
        return
    engine = Engine(home)
    console.print("building the memory …")
    summary = build_memory(engine)
    console.print(f"memory: {summary['tokens']:,} tokens, {summary['state_bytes'] / 2**20:.0f} MiB")
    engine.close()


def run_mode(engine, mode: str, items: list[dict], checkpoint: Path, console) -> list[dict]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from assistant.engine.evaluation import score

    done = []
    if checkpoint.exists():
        done = [json.loads(line) for line in checkpoint.read_text().splitlines() if line.strip()]
    asked = {r["question"] for r in done}
    with Progress(TextColumn(f"[bold]{mode:>9}[/]"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[right]} right"), TimeRemainingColumn(),
                  console=console) as bar:
        task = bar.add_task(mode, total=len(items), completed=len(done),
                            right=sum(r["correct"] for r in done))
        with checkpoint.open("a") as out:
            for item in items:
                if item["question"] in asked:
                    continue
                answer = engine.answer(item["question"], mode)
                correct, cited = score(answer.text, answer.sources, item["answers"], item["evidence"])
                result = {"question": item["question"], "answer": answer.text, "correct": correct,
                          "cited": cited, "status": answer.status, "timings": answer.timings,
                          "prompt_tokens": answer.prompt_tokens,
                          "sources": [s.path for s in answer.sources]}
                out.write(json.dumps(result, ensure_ascii=False) + "\n")
                out.flush()
                done.append(result)
                bar.update(task, advance=1, right=sum(r["correct"] for r in done))
    return done


def prompt_recall(engine, items: list[dict], console, number: dict[str, int] | None = None) -> list[dict]:
    """Answer-in-prompt recall of the retrieval prompt, without running the model."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from assistant.engine import prompting
    from assistant.engine.evaluation import score
    from assistant.engine.dates import resolve_dates
    from assistant.engine import relevant_sentences

    rows = []
    with Progress(TextColumn("[bold]recall[/]"), BarColumn(), MofNCompleteColumn(),
                  console=console) as bar:
        task = bar.add_task("recall", total=len(items))
        for index, item in enumerate(items):
            date_range = resolve_dates(item["question"], engine.today)
            passages, sentences, _ = engine.gather(item["question"], date_range)
            chosen = relevant_sentences(sentences)
            notes = prompting.format_notes(chosen)
            in_prompt, cited = score(notes, engine._sources(passages, chosen), item["answers"],
                                     item["evidence"])
            searched = any(score(p.text or "", [p], item["answers"], item["evidence"]) == (True, True)
                           for p in passages)
            index = number.get(item["question"], index) if number else index
            rows.append({"index": index, "question": item["question"], "in_prompt": in_prompt,
                         "cited": cited, "in_searched": searched})
            bar.update(task, advance=1)
    return rows


def recall_table(rows: list[dict]) -> str:
    def share(subset, key):
        return f"{sum(r[key] for r in subset) / len(subset):.0%}" if subset else "-"

    lines = ["| questions | n | answer in prompt | cited | answer in searched entries |",
             "|---|---|---|---|---|"]
    even = [r for r in rows if r["index"] % 2 == 0]
    odd = [r for r in rows if r["index"] % 2 == 1]
    for label, subset in (("all", rows), ("even-numbered", even), ("odd-numbered", odd)):
        lines.append(f"| {label} | {len(subset)} | {share(subset, 'in_prompt')} "
                     f"| {share(subset, 'cited')} | {share(subset, 'in_searched')} |")
    missed = [f"#{r['index']} {r['question']}" for r in rows if not r["in_prompt"]]
    return "\n".join(lines) + "\n\nnot in the prompt: " + "; ".join(missed) + "\n"


def select_items(items: list[dict], half: str | None, every: int = 1,
                 limit: int | None = None) -> list[dict]:
    """The questions to ask: one half (by number in the file, from 0), every k-th, the first N."""
    if half is not None:
        items = items[0 if half == "even" else 1::2]
    return items[::every][:limit]


def summarise_halves(mode: str, results: list[dict], number: dict[str, int]) -> list[dict]:
    """The mode's row, then (when it holds both) its even- and odd-numbered questions apart."""
    rows = [summarise(mode, results)]
    halves = (("even-numbered", 0), ("odd-numbered", 1))
    parts = [(label, [r for r in results if number.get(r["question"], -1) % 2 == parity])
             for label, parity in halves]
    if all(part for _, part in parts):
        rows.extend(summarise(f"{mode}, {label}", part) for label, part in parts)
    return rows


def summarise(mode: str, results: list[dict]) -> dict:
    n = len(results)
    totals = [r["timings"]["total_s"] for r in results if r["timings"].get("total_s") is not None]
    ttfts = [r["timings"]["ttft_s"] for r in results if r["timings"].get("ttft_s") is not None]
    return {"mode": mode, "n": n,
            "accuracy": sum(r["correct"] for r in results) / n if n else 0.0,
            "cited": sum(r["cited"] for r in results) / n if n else 0.0,
            "median_s": statistics.median(totals) if totals else float("nan"),
            "median_ttft_s": statistics.median(ttfts) if ttfts else float("nan"),
            "prompt_tokens": statistics.median([r["prompt_tokens"] for r in results]) if n else 0}


def main() -> None:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--home", type=Path, default=cache / "memex-bench" / "qa",
                        help="data home for the example journal (kept between runs)")
    parser.add_argument("--journal", type=Path, default=REPO / "examples" / "journal")
    parser.add_argument("--questions", type=Path, default=REPO / "examples" / "questions.jsonl")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions")
    parser.add_argument("--every", type=int, default=1, help="every k-th question (a spread sample)")
    parser.add_argument("--half", choices=("even", "odd"), default=None,
                        help="only the even- or odd-numbered questions (numbered from 0 in the "
                             "file): tune on one half, check on the other")
    parser.add_argument("--today", default="2025-01-01", help="'today' for relative dates")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (1 is faster on a machine shared with other work)")
    parser.add_argument("--fresh", action="store_true", help="forget earlier answers of this run")
    parser.add_argument("--table-only", action="store_true",
                        help="only print the table of the answers saved so far (no model)")
    parser.add_argument("--no-memory-build", action="store_true",
                        help="use the memory as far as it is built (the table says how far)")
    parser.add_argument("--recall", action="store_true",
                        help="measure only whether the answer reaches the retrieval prompt (no model)")
    parser.add_argument("--out", type=Path, default=RESULTS / "qa.txt")
    args = parser.parse_args()

    import torch

    from assistant.engine.evaluation import load_questions
    from assistant.engine import Engine

    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console(stderr=True)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; pick from {MODES}")
    all_items = load_questions(args.questions)
    number = {item["question"]: index for index, item in enumerate(all_items)}
    items = select_items(all_items, args.half, args.every, args.limit)
    if args.table_only:
        rows = []
        for mode in modes:
            checkpoint = RESULTS / f"qa-{mode}.tmp"
            saved = [json.loads(line) for line in checkpoint.read_text().splitlines()
                     if line.strip()] if checkpoint.exists() else []
            wanted = {item["question"] for item in items}
            rows.extend(summarise_halves(mode, [r for r in saved if r["question"] in wanted], number))
        write_table(args, rows, len(items), "(table of saved answers)", None, None)
        return
    if args.recall:
        prepare_home(args.home, args.journal, console, memory=False)
        engine = Engine(args.home, today=date.fromisoformat(args.today))
        table = recall_table(prompt_recall(engine, items, console, number))
        print(f"# answer-in-prompt recall (no model), {args.questions.name}; {machine()}; "
              f"{time.strftime('%Y-%m-%d')}\n\n{table}")
        return
    prepare_home(args.home, args.journal, console,
                 memory=not args.no_memory_build and any(m in ("hybrid", "memory") for m in modes))
    RESULTS.mkdir(parents=True, exist_ok=True)
    engine = Engine(args.home, today=date.fromisoformat(args.today))
    header = machine()
    memory = engine.memory_info()["tokens"]
    stream = engine.stream_tokens()
    rows = []
    for mode in modes:
        checkpoint = RESULTS / f"qa-{mode}.tmp"
        if args.fresh and checkpoint.exists():
            checkpoint.unlink()
        results = run_mode(engine, mode, items, checkpoint, console)
        wanted = {item["question"] for item in items}
        rows.extend(summarise_halves(mode, [r for r in results if r["question"] in wanted], number))
    write_table(args, rows, len(items), header, memory, stream)
    console.print(f"written to {args.out}; per-question answers in {RESULTS}/qa-<mode>.tmp")


def write_table(args, rows, count, header, memory, stream) -> None:
    import torch

    memory_line = (f"# LongNet memory (hybrid, memory modes): {memory:,} of {stream:,} stream tokens"
                   if memory is not None else "# LongNet memory: see the run's log")
    lines = [
        f"# memex QA: {args.questions.name} ({count} questions), default model "
        f"(SmolLM2-135M-Instruct), greedy",
        f"# machine: {header}; torch threads {torch.get_num_threads()}; "
        f"{time.strftime('%Y-%m-%d')}",
        memory_line,
        "",
        "| mode | questions | accuracy | cited | median s/question | median TTFT s "
        "| median prompt tokens |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['n']} | {r['accuracy']:.0%} | {r['cited']:.0%} "
                     f"| {r['median_s']:.1f} | {r['median_ttft_s']:.1f} | {r['prompt_tokens']:.0f} |")
    table = "\n".join(lines) + "\n"
    print(table)
    args.out.write_text(table)


if __name__ == "__main__":
    main()
