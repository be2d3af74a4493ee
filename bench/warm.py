"""Cold vs warm `memex ask`: time to the first printed token and to the end, measured from
the command's start as a person sees it, side by side in one run.

    .venv/bin/python bench/warm.py                      # the example journal's bench home
    .venv/bin/python bench/warm.py --home PATH --repeats 5

Rows: in-process (``MEMEX_NO_SERVER=1``: every ask imports torch and loads the model, as
before the warm server), the first ask that has to start the server, and the next ask (the
server warm, a question it has not answered). Questions from examples/questions.jsonl;
the cold and the warm row ask the same ones; medians of the repeats. Timings are not a test: they print a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _machine import cpu_name, print_report  # (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_HOME = Path.home() / ".cache" / "memex-bench" / "recall" / "examples"


def timed_ask(home: Path, question: str, mode: str, server: bool) -> tuple[float, float, str]:
    """(seconds to the first byte on stdout, seconds to exit, stdout) of one `memex ask`."""
    env = {**os.environ, "MEMEX_HOME": str(home)}
    if server:
        env.pop("MEMEX_NO_SERVER", None)
    else:
        env["MEMEX_NO_SERVER"] = "1"
    began = time.perf_counter()
    process = subprocess.Popen([str(REPO / ".venv" / "bin" / "memex"), "ask", question,
                                "--mode", mode], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    first = process.stdout.read(1)
    first_s = time.perf_counter() - began
    rest = process.stdout.read()
    process.wait()
    total_s = time.perf_counter() - began
    if process.returncode != 0:
        raise SystemExit(f"memex ask failed: {process.stderr.read().decode()}")
    return first_s, total_s, (first + rest).decode()


def home_state(home: Path) -> str:
    """What the home holds that changes an answer's cost: its memory and its reader."""
    try:
        tokens = json.loads((home / "memory" / "memory.json").read_text())["tokens"]
        memory = f"memory built ({tokens:,} tokens)"
    except (OSError, ValueError, KeyError):
        memory = "no memory built"
    reader = "trained reader" if (home / "reader").is_dir() else "generic reader"
    return f"{memory}, {reader}"


def stop_server(home: Path) -> None:
    env = {**os.environ, "MEMEX_HOME": str(home)}
    subprocess.run([str(REPO / ".venv" / "bin" / "memex"), "serve", "--stop"], env=env,
                   capture_output=True, check=False)


def bench_pre_embed(home: Path, mode: str, questions: list[str]) -> str:
    """Two engines in this process, one whose sentence cache was filled ahead
    (``Engine.pre_embed``, the warm server's idle work) and one without, answering the
    same new questions in turn: the seconds of each answer, medians."""
    sys.path.insert(0, str(REPO))
    from assistant.config import load_config
    from assistant.engine import Engine

    os.environ["MEMEX_HOME"] = str(home)
    engines = {}
    for name in ("without", "pre-embedded"):
        engine = Engine(home, load_config(home))
        engine.warm_up(mode).join()
        engine.answer("a question to load everything", mode)
        if name == "pre-embedded":
            began = time.perf_counter()
            count = engine.pre_embed()
            filled = (count, time.perf_counter() - began)
        engines[name] = engine
    seconds: dict[str, list[float]] = {name: [] for name in engines}
    for question in questions:
        for name, engine in engines.items():
            began = time.perf_counter()
            engine.answer(question, mode)
            seconds[name].append(time.perf_counter() - began)
    lines = [(f"Sentence cache filled ahead or not: {cpu_name()}, {os.cpu_count()} CPUs; mode "
             f"{mode}; the example journal, {home_state(home)}; {len(questions)} questions "
             f"neither engine had seen, asked of both in turn, in one process; pre-embedding "
             f"took {filled[1]:.1f} s for {filled[0]:,} sentences."), "",
             "| engine | answer (s, median) |", "|---|---:|"]
    lines += [f"| {name} | {statistics.median(values):.2f} |" for name, values in seconds.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=DEFAULT_HOME,
                        help="a data home with the example journal (memory built)")
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds between the ask that starts the server and the warm "
                             "one (a person reading the first answer)")
    parser.add_argument("--pre-embed", action="store_true",
                        help="instead: answers in one process with the sentence cache filled "
                             "ahead (the server's idle work) or not")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    questions = [json.loads(line)["question"]
                 for line in (REPO / "examples" / "questions.jsonl").read_text().splitlines()
                 if line.strip()][:2 * args.repeats]
    names = ("in-process (cold, every ask)", "first ask, starting the server",
             "next asks (server warm)")
    if args.pre_embed:
        all_questions = [json.loads(line)["question"] for line in
                         (REPO / "examples" / "questions.jsonl").read_text().splitlines()
                         if line.strip()]
        print_report(bench_pre_embed(args.home, args.mode, all_questions[20:32]), args.out)
        return 0
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    # Interleaved: each repeat asks a question cold, then another one that starts a
    # server, then the first one again, warm (a question the server has not seen: no
    # sentence of its entries is in its embedding cache unless the other one shared it).
    for opener, question in zip(questions[::2], questions[1::2], strict=False):
        stop_server(args.home)
        first, total, _ = timed_ask(args.home, question, args.mode, server=False)
        rows["in-process (cold, every ask)"].append((first, total))
        first, total, _ = timed_ask(args.home, opener, args.mode, server=True)
        rows["first ask, starting the server"].append((first, total))
        time.sleep(args.pause)
        first, total, out = timed_ask(args.home, question, args.mode, server=True)
        assert "· warm" in out, out
        rows["next asks (server warm)"].append((first, total))
        print(f"  {question[:50]}: done", file=sys.stderr)
    stop_server(args.home)
    caption = (f"`memex ask` cold vs warm: {cpu_name()}, {os.cpu_count()} CPUs; mode "
               f"{args.mode}; the example journal, {home_state(args.home)}; "
               f"{len(questions) // 2} questions each; the warm ask {args.pause:.0f} s after the "
               f"first; medians, seconds from the command's start.")
    lines = [caption, "", "| ask | first token (s) | total (s) |", "|---|---:|---:|"]
    for name, values in rows.items():
        lines.append(f"| {name} | {statistics.median(v[0] for v in values):.2f} | "
                     f"{statistics.median(v[1] for v in values):.2f} |")
    print_report("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
