"""Answers on real writing and on the example journal: short answer, quotes, abstention.

    .venv/bin/python bench/answers.py [--sets examples,barbellion,mackenzie] [--mode retrieval]
                                      [--recall rows|text] [--reader none|generic|trained]
                                      [--limit N] [--fresh]

Each question set is a journal and its questions:
- examples: examples/journal with examples/questions.jsonl and examples/questions-more.jsonl;
- barbellion, mackenzie: the real journals in ../shared/data/real-journals/ (third-party
  text, read where it lies, never copied) with their questions.jsonl, and this project's
  own questions about them in bench/questions/ (some of which the notes cannot answer).
Each journal is ingested once (with embeddings) into a data home under
~/.cache/memex-bench/answers/; then every question is answered with the default model
and scored as `memex eval` scores it (assistant.engine.evaluation.run_eval):
short_accuracy (an accepted string in the short answer), quote_accuracy (in the quotes),
accuracy (in the whole answer; over 120 words counts wrong), cited (an evidence file among
the sources), abstention (questions the notes cannot answer, answered "the notes don't
say"), loops (short answers with a repeated run of four words or a broken character) and
the median seconds per question. Resumable: answered questions are kept in
bench/results/answers-<set>-<file>-<mode>.tmp and a rerun carries on (--fresh starts over).
The table goes to bench/results/answers.txt (another --mode: answers-MODE.txt; --recall and
--reader add their names).
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
REAL = REPO.parent / "shared" / "data" / "real-journals"
OURS = REPO / "bench" / "questions"
# name -> (journal folder, question files, today for relative dates)
SETS = {
    "examples": (REPO / "examples" / "journal",
                 [REPO / "examples" / "questions.jsonl", REPO / "examples" / "questions-more.jsonl"],
                 "2025-01-01"),
    "barbellion": (REAL / "barbellion" / "journal",
                   [REAL / "barbellion" / "questions.jsonl", OURS / "barbellion.jsonl"], None),
    "mackenzie": (REAL / "mackenzie" / "journal",
                  [REAL / "mackenzie" / "questions.jsonl", OURS / "mackenzie.jsonl"], None),
}
COLUMNS = ("short_accuracy", "quote_accuracy", "accuracy", "cited", "abstention", "loops")


def prepare_home(home: Path, journal: Path, console) -> None:
    """Ingest the journal with embeddings (a rerun finds nothing new to do)."""
    import ingest
    from assistant.home import model_cache_dir, set_home
    from longnet.weights import load_tokenizer

    set_home(home)
    store = ingest.open_store(home)
    if not store.sources():
        ingest.add_source(store, journal)
    console.print(f"ingesting {journal} into {home} …")
    ingest.run(store, load_tokenizer(None, model_cache_dir()), embed=True)
    store.close()


class Checkpointed:
    """An engine stand-in for run_eval that answers each question once: answers already
    in the checkpoint come back from it, new ones are appended to it."""

    def __init__(self, engine, checkpoint: Path, bar, task):
        self.engine, self.checkpoint, self.bar, self.task = engine, checkpoint, bar, task
        self.done = {}
        if checkpoint.exists():
            for line in checkpoint.read_text().splitlines():
                if line.strip():
                    row = json.loads(line)
                    self.done[row["question"]] = row

    def answer(self, question: str, mode: str):
        from assistant.engine import Answer
        from assistant.engine.conversations import SourceRecord
        from assistant.engine.quotes import Quote

        row = self.done.get(question)
        if row is None:
            answer = self.engine.answer(question, mode)
            row = {"question": question, "text": answer.text, "short": answer.short,
                   "generated": answer.generated,
                   "quotes": [vars(q) for q in answer.quotes],
                   "sources": [s.public() for s in answer.sources],
                   "timings": answer.timings, "status": answer.status,
                   "prompt_tokens": answer.prompt_tokens}
            with self.checkpoint.open("a") as out:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            self.done[question] = row
        self.bar.update(self.task, advance=1)
        return Answer(question=question, mode=mode, text=row["text"], short=row["short"],
                      quotes=[Quote(**q) for q in row["quotes"]],
                      sources=[SourceRecord(**s) for s in row["sources"]],
                      timings=row["timings"], status=row["status"],
                      prompt_tokens=row["prompt_tokens"])


def run_set(name: str, mode: str, limit: int | None, fresh: bool, cache: Path, console,
            recall: str = "rows", reader: str = "none") -> list[dict]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    from assistant.engine import Engine
    from assistant.engine.evaluation import load_questions, run_eval

    journal, files, today = SETS[name]
    home = cache / name
    prepare_home(home, journal, console)
    engine = Engine(home, today=date.fromisoformat(today) if today else None)
    engine.config.reader = reader  # which reader reads the memory (before the model loads)
    # memory mode: the recalled passages read as stored rows (the default), as rows with
    # free decoding, or as text read again (the baseline)
    engine.recall_as = "text" if recall == "text" else "rows"
    engine.ground_recall = recall == "rows-grounded"
    variant = mode if mode != "memory" or recall == "rows" else f"{mode}-{recall}"
    variant += "" if reader == "none" else f"-reader-{reader}"
    rows = []
    for path in files:
        items = load_questions(path)[:limit] if limit else load_questions(path)
        label = f"{name}: {path.relative_to(path.parents[1])}"
        checkpoint = RESULTS / f"answers-{name}-{path.stem}-{variant}.tmp"
        if fresh:
            checkpoint.unlink(missing_ok=True)
        with Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), console=console) as bar:
            task = bar.add_task(label, total=len(items))
            report = run_eval(Checkpointed(engine, checkpoint, bar, task), items, mode)
        seconds = [r["timings"]["total_s"] or 0 for r in report["results"]]
        rows.append({"set": label, "n": report["n"], "unanswerable": report["unanswerable"],
                     **{c: report[c] for c in COLUMNS},
                     "median_s": statistics.median(seconds) if seconds else None,
                     "results": report["results"]})
    engine.close()
    return rows


def percent(value) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def table(rows: list[dict], mode: str) -> str:
    lines = [f"| question set ({mode}) | n | short | quotes | whole answer | cited | abstention "
             "| loops | s/question (median) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        abst = (f"{percent(r['abstention'])} of {r['unanswerable']}" if r["unanswerable"]
                else "–")
        lines.append(f"| {r['set']} | {r['n']} | {percent(r['short_accuracy'])} | "
                     f"{percent(r['quote_accuracy'])} | {percent(r['accuracy'])} | "
                     f"{percent(r['cited'])} | {abst} | {r['loops']} | {r['median_s']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(SETS), help="comma-separated: " + ", ".join(SETS))
    parser.add_argument("--mode", default="retrieval", choices=("hybrid", "memory", "retrieval", "dense"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N questions of each file")
    parser.add_argument("--fresh", action="store_true", help="answer every question again")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memex-bench" / "answers"
    parser.add_argument("--cache", type=Path, default=cache, help="data homes of the journals")
    parser.add_argument("--recall", default="rows", choices=("rows", "rows-grounded", "text"),
                        help="memory mode: recalled passages as stored rows, as rows with the "
                             "answer held to their words, or as text read again")
    parser.add_argument("--reader", default="none", choices=("none", "generic", "trained", "auto"),
                        help="which reader reads the memory (hybrid and memory modes): none, "
                             "the generic one memex ships, the home's trained one, or auto")
    parser.add_argument("--show-wrong", action="store_true", help="print each wrong short answer")
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M")
    load = os.getloadavg()[0]
    rows = []
    for name in args.sets.split(","):
        if not SETS[name][0].is_dir():
            console.print(f"[yellow]skipped {name}: {SETS[name][0]} is not there[/]")
            continue
        rows.extend(run_set(name, args.mode, args.limit, args.fresh, args.cache, console,
                            recall=args.recall, reader=args.reader))
    if args.show_wrong:
        for r in rows:
            for result in r["results"]:
                if not result["short_correct"]:
                    console.print(f"[red]✗[/] {result['question']}\n   short: {result['short']}\n"
                                  f"   quote: {(result['quotes'] or [{'text': ''}])[0]['text'][:160]}"
                                  f"\n   expected: {result['expected']}")
    text = (f"# bench/answers.py --mode {args.mode}"
            f"{' --recall ' + args.recall if args.mode == 'memory' else ''}"
            f"{' --reader ' + args.reader if args.reader != 'none' else ''}, {started}; "
            f"{cpu_name()}, {os.cpu_count()} cores, "
            f"load average {load:.1f} at start\n{table(rows, args.mode)}\n")
    print(text)
    if not args.limit:  # the retrieval table is the README's; other modes keep their own
        name = "answers.txt" if args.mode == "retrieval" else f"answers-{args.mode}.txt"
        if args.mode == "memory" and args.recall != "rows":
            name = f"answers-memory-{args.recall}.txt"
        if args.reader != "none":
            name = name.replace(".txt", f"-reader-{args.reader}.txt")
        (RESULTS / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
