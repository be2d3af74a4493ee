"""What one step of the reader's training costs on this machine (issue 18).

    .venv/bin/python bench/reader.py [--tokens 4096] [--steps 12] [--dtypes float32,bfloat16]

The default model (SmolLM2-135M as LongNet) reads the first ``--tokens`` tokens of the
example journal's stream into a memory with its frozen weights; a reader (LoRA rank 8 on
every projection, gate offsets) is put on it, and ``--steps`` training steps are timed, one
turn each: "How does this sentence I wrote on <date> go on: “<first half>”" → its second half,
from an entry inside the memory (the turns `memex train --reader` learns from;
``longnet.training.turn_loss`` + backward + AdamW). Each
compute dtype runs on the same memory, one after the other; the table gives the median
seconds per example and examples per second (appended to bench/results/reader-cpu.txt).
The losses are of one random turn each, not a learning curve. Uses the data home
bench/answers.py made (~/.cache/memex-bench/answers/examples; run it first).
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

    import ingest
    from assistant.home import model_cache_dir, set_home
    from longnet import LongNetLM
    from longnet.reader import add_reader, reader_parameters
    from longnet.training import turn_loss
    from longnet.weights import load_tokenizer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memex-bench" / "answers"
    parser.add_argument("--home", type=Path, default=cache / "examples")
    args = parser.parse_args(argv)
    if not (args.home / "memex.db").exists():
        print(f"no data home at {args.home}: run bench/answers.py --sets examples first",
              file=sys.stderr)
        return 1
    set_home(args.home)
    started, load = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    store = ingest.open_store(args.home)
    tokenizer = load_tokenizer(None, model_cache_dir())
    tokens = min(args.tokens, len(store.stream))
    stream = np.asarray(store.stream.read(0, tokens))
    from assistant.engine.reader_training import recall_turns

    turns, _ = recall_turns(store, tokenizer, tokens)  # the turns `memex train --reader` reads
    store.close()
    if not turns:
        print("no entry lies inside the memory's tokens: raise --tokens", file=sys.stderr)
        return 1
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    has_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    rows = []
    for name in args.dtypes.split(","):
        dtype = getattr(torch, name)
        model = LongNetLM.from_pretrained(None, cache_dir=model_cache_dir(), device="cpu")
        t0 = time.perf_counter()
        memory = model.memory(dtype=dtype)
        memory.append(stream, return_logits=False)
        build = time.perf_counter() - t0
        params = add_reader(model, rank=8, alpha=16.0)
        optimizer = torch.optim.AdamW(params.values(), lr=1e-4)
        seconds, losses = [], []
        rng = np.random.default_rng(0)
        for _ in range(args.steps):
            turn = turns[int(rng.integers(len(turns)))]
            t0 = time.perf_counter()
            loss = turn_loss(memory, turn)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seconds.append(time.perf_counter() - t0)
            losses.append(float(loss.detach()))
        median = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
        turn_tokens = statistics.median(len(t.prompt) + len(t.answer) for t in turns)
        rows.append((name, tokens, build, len(reader_parameters(model)),
                     sum(p.numel() for p in params.values()), turn_tokens, median, losses))
        print(f"{name}: memory of {tokens} tokens in {build:.1f} s; {median:.2f} s per example",
              file=sys.stderr)
    features = "AVX512-BF16" if has_bf16 else "no bf16 instructions"
    lines = [(f"# bench/reader.py, {started}; {cpu_name()} ({features}), "
              f"{os.cpu_count()} cores, load average {load:.1f} at start"),
             ("| compute dtype | memory tokens | memory build s | reader parameters "
              "| turn tokens (median) | s / example (median) | examples / s | loss first → last |"),
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, tokens, build, _, count, turn_tokens, median, losses in rows:
        lines.append(f"| {name} | {tokens:,} | {build:.1f} | {count:,} | {turn_tokens:.0f} | "
                     f"{median:.2f} | {1 / median:.2f} | {losses[0]:.2f} → {losses[-1]:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    with open(REPO / "bench" / "results" / "reader-cpu.txt", "a") as out:  # runs side by side
        out.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
