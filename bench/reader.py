"""What one step of the reader's training costs on this machine (issue 18).

    .venv/bin/python bench/reader.py --home HOME [--steps 12] [--dtypes float32,bfloat16]

HOME is a data home whose memory was built with rows kept (``memex memory build``; e.g.
bench/recall.py's). A reader (LoRA rank 8 on every projection, gate offsets) is put on the
default model, and ``--steps`` training steps are timed for each compute dtype, side by
side on the same memory and the same turns: the turns `memex train` learns from
(``assistant.engine.reader_training.make_turn``: cloze, date and name turns from the home's
own sentences, read with their recalled rows), ``longnet.training.turn_loss`` + backward +
AdamW. The table gives the median seconds per example and examples per second (appended to
bench/results/reader-cpu.txt). The losses are of one random turn each, not a learning curve.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from assistant.engine import Engine
    from assistant.engine.reader_training import TURN_KINDS, make_turn, note_sentences
    from assistant.engine.trained import load_base_model
    from assistant.home import set_home
    from longnet import Memory
    from longnet.device import cpu_has_bf16
    from longnet.reader import add_reader
    from longnet.training import turn_loss

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    args = parser.parse_args(argv)
    if not (args.home / "memory" / "memory.json").exists():
        print(f"no built memory in {args.home}: run `memex memory build` there first",
              file=sys.stderr)
        return 1
    set_home(args.home)
    started, load = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    engine = Engine(args.home)
    model = load_base_model(engine.config, device="cpu")
    params = add_reader(model, rank=8, alpha=16.0)
    memory = Memory.load(args.home / "memory", model)
    engine.use_longnet(model, memory)
    sentences, _ = note_sentences(engine.store, memory.stream_offset, rows=memory.rows)
    if not sentences:
        print("the memory holds no sentence to make turns of", file=sys.stderr)
        return 1
    rng = np.random.default_rng(0)
    turns = [make_turn(engine, sentences[int(rng.integers(len(sentences)))],
                       TURN_KINDS[i % len(TURN_KINDS)]) for i in range(args.steps)]
    optimizer = torch.optim.AdamW(params.values(), lr=1e-4)
    rows = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        seconds, losses = [], []
        for turn in turns:
            t0 = time.perf_counter()
            loss = turn_loss(memory, turn, dtype=dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
        median = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
        turn_tokens = statistics.median(len(t.prompt) + len(t.answer) for t in turns)
        recalled = statistics.median(sum(b - a for a, b in (t.recall or [])) for t in turns)
        rows.append((name, turn_tokens, recalled, median, losses))
        print(f"{name}: {median:.2f} s per example", file=sys.stderr)
    features = "AVX512-BF16" if cpu_has_bf16() else "no native bf16"
    lines = [(f"# bench/reader.py --home {args.home.name}, {started}; {cpu_name()} ({features}), "
              f"{os.cpu_count()} cores, load average {load:.1f} at start; memory of "
              f"{memory.stream_offset:,} tokens; {sum(p.numel() for p in params.values()):,} "
              "reader parameters"),
             ("| compute dtype | turn tokens (median) | recalled rows (median) "
              "| s / example (median) | examples / s | loss first → last |"),
             "|---|---:|---:|---:|---:|---:|"]
    for name, turn_tokens, recalled, median, losses in rows:
        lines.append(f"| {name} | {turn_tokens:.0f} | {recalled:.0f} | {median:.2f} | "
                     f"{1 / median:.2f} | {losses[0]:.2f} → {losses[-1]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(REPO / "bench" / "results" / "reader-cpu.txt", "a") as out:  # runs side by side
        out.write(text + "\n")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
