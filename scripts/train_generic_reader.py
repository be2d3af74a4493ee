"""Train the generic reader that ships with memex, on synthetic journals only.

    .venv/bin/python scripts/train_generic_reader.py [--work DIR] [--steps N]

For each seed a synthetic journal (``synthetic.make_journal``) is written to a folder and
remembered in a data home of its own, as a user's notes are (``memex add``, then ``memex
memory build`` with the frozen base weights, rows kept). Its planted facts become turns made
exactly as memory answers make them (``Engine.memory_turn``: the same search, recalled
rows, prompt) with the fact as a one-sentence answer. The reader learns on the training
seeds' turns; one more journal is held out and its turns measured before and after (the
share answered word for word). The result is written to ``assistant/readers/generic/``.
Resumable: homes already built are kept, and an interrupted training run goes on.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from assistant.readers import generic_reader_dir  # (the repository is on the path now)
from assistant.readers.synthetic import make_journal

TRAIN_SEEDS = (101, 102, 103, 104, 105, 106)
HELDOUT_SEED = 999
ENTRIES = 110
DEFAULT_STEPS = 1200
DEFAULT_LR = 3e-4


def _memex(home: Path, *args: str) -> None:
    env = {**os.environ, "MEMEX_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "assistant.cli", *args], env=env, check=True)


def prepare(seed: int, work: Path) -> tuple[Path, list[dict]]:
    """The data home of seed ``seed``'s journal, remembered and its memory built (kept
    when already done); the journal's questions."""
    journal = make_journal(seed, entries=ENTRIES)
    folder, home = work / f"journal-{seed}", work / f"home-{seed}"
    done = home / "memory" / "built-for-generic-reader"
    if not done.is_file():
        shutil.rmtree(folder, ignore_errors=True)
        for relative, text in journal.files().items():
            path = folder / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        _memex(home, "add", str(folder))
        _memex(home, "memory", "build")
        done.write_text(journal.narrator)
    return home, journal.questions()


def answer_sentence(question: str, answer: str) -> str:
    """The one short sentence an answer should be: the question's own words, then the
    answer ("What did we name the kitten?" → "We named the kitten Biscuit.")."""
    from assistant.engine.stems import answer_stem

    stem = answer_stem(question)
    return f"{stem} {answer}." if stem else f"{answer}."


def qa_turns(engine, questions: list[dict]):
    """A ``Turn`` per question, read as a memory answer reads it."""
    from longnet.training import Turn

    end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    turns = []
    for item in questions:
        made = engine.memory_turn(item["question"])
        # (the stem, when answers use one, is the prompt's end already)
        sentence = answer_sentence(item["question"], item["answers"][0])
        if made.stem_ids:
            sentence = item["answers"][0] + "."
        answer = engine.tokenizer.encode(sentence, add_special_tokens=False) + [end]
        turns.append(Turn(np.asarray(made.prompt_ids), np.asarray(answer), item["kind"],
                          recall=made.recall))
    return turns


def main(argv: list[str] | None = None) -> int:
    import torch

    from assistant.engine import Engine
    from assistant.home import set_home
    from longnet.device import fast_dtype
    from longnet.reader import add_reader, save_reader
    from longnet.training import answer_accuracy, train_reader

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path,
                        default=Path.home() / ".cache" / "memex-generic-reader")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--lr", type=float, default=DEFAULT_LR)
    parser.add_argument("--out", type=Path, default=generic_reader_dir())
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    homes = {seed: prepare(seed, args.work) for seed in (*TRAIN_SEEDS, HELDOUT_SEED)}
    built_s = time.perf_counter() - started
    # One model for every home: its reader reads each home's memory in turn.
    model, memories, turns, model_id = None, {}, {}, None
    for seed, (home, questions) in homes.items():
        set_home(home)
        engine = Engine(home)
        engine.config.reader = "none"  # the writer alone: the reader to train is added below
        if model is None:
            model, model_id = engine.longnet_model, engine.config.model
            add_reader(model)
        else:
            engine.use_longnet(model)  # the same frozen writer for every home
        memories[seed] = engine.load_memory()
        turns[seed] = qa_turns(engine, questions)
    train = [(seed, turn) for seed in TRAIN_SEEDS for turn in turns[seed]]
    heldout = turns[HELDOUT_SEED]
    print(f"{len(train)} training turns from {len(TRAIN_SEEDS)} journals, {len(heldout)} "
          f"held out; homes ready in {built_s:.0f} s", flush=True)
    before = answer_accuracy(memories[HELDOUT_SEED], heldout)
    print(f"held-out turns answered word for word before: {before:.1%}", flush=True)

    def example(rng):
        seed, turn = train[int(rng.integers(len(train)))]
        return memories[seed], turn

    def progress(p):
        if p.step % 25 == 0 or p.step == p.steps:
            print(f"step {p.step}/{p.steps} loss {p.loss:.3f} {p.examples_per_s:.2f} ex/s "
                  f"eta {p.eta_s:.0f} s", flush=True)

    compute = fast_dtype(torch.device("cpu"))
    result = train_reader(model, example, args.steps, args.work / "run", lr=args.lr,
                          checkpoint_every=25, progress=progress, dtype=compute)
    after = answer_accuracy(memories[HELDOUT_SEED], heldout)
    print(f"held-out turns answered word for word after: {after:.1%}", flush=True)
    meta = {"examples_seen": result.steps, "kind": "generic", "model_id": model_id,
            "dtype": str(compute).replace("torch.", ""),
            "trained_on": "synthetic journals (assistant/readers/synthetic.py), seeds "
                          f"{list(TRAIN_SEEDS)}, {ENTRIES} entries each; turns made by "
                          "Engine.memory_turn from their planted facts",
            "heldout_seed": HELDOUT_SEED, "heldout_turns": len(heldout),
            "heldout_accuracy_before": before, "heldout_accuracy_after": after,
            "lr": args.lr, "wall_s": round(result.seconds, 1),
            "examples_per_s": round(result.examples_per_s or 0.0, 3),
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    save_reader(model, args.out, meta)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
