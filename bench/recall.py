"""Can the memory give back what was written far back? Recall by distance (issue 18).

    .venv/bin/python bench/recall.py --home HOME [--probes 25] [--label NAME]
                                     [--reader none|generic|trained]

HOME is a data home whose memory was built (``memex memory build``) with rows kept (the
default). A probe is a place in one of the notes: the 16 tokens before it are the prompt,
and the next 4 tokens are the answer the model must give back, word for word (each token
its most likely next token, teacher-forced). Probes are drawn at random from entries at
several distances from the end of the history (``--probes`` per bucket: in the window, 8–16K,
16–32K, 32–64K, 64K+ tokens back). Nothing is trained on them. Each probe is read:

- ``window``: after the memory as it is (the history's last 8K tokens in the window, the
  far levels at their gates): what memory mode read before rows;
- ``levels open``: the same with the far levels' gates at 0 (eq. 10's plain softmax);
- ``rows, its entry``: the stored rows of the probe's own entry recalled into the window
  (``Memory.recall_fork``): can the model read rows it did not have to find;
- ``rows, searched``: the rows of what search finds for the prompt's words (BM25 and
  embeddings, ``Engine.recall_spans``, 1,024 tokens): what memory answers now do;
- ``text, searched``: the same passages' text read again as a prompt (no rows): the
  baseline the rows must match, with the seconds it costs to read them.

``--reader`` chooses which reader reads the probes (on the probe's tokens only: the memory
is the base weights'); the last row gives the perplexity of the probes' answer tokens read
after the memory as it is (``window``), the figure a reader must never make worse.

Prints a table (appended to bench/results/recall.txt) with the CPU named.
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
RESULTS = REPO / "bench" / "results"

BUCKETS = [(0, 8_000, "< 8K (window)"), (8_000, 16_000, "8–16K"), (16_000, 32_000, "16–32K"),
           (32_000, 64_000, "32–64K"), (64_000, 10**12, "64K+")]
PROMPT, ANSWER = 16, 4
VARIANTS = ["window", "levels open", "rows, its entry", "rows, searched", "text, searched"]


def draw_probes(store, tokens: int, per_bucket: int, rng):
    """(position, entry span, prompt ids, answer ids) per bucket: a random point inside a
    random live entry of the bucket, past its heading."""
    import numpy as np

    spans = store.db.execute(
        "select token_start, token_end from spans where status = 'live' "
        "and token_end - token_start >= 64 and token_end <= ? order by token_start",
        (tokens,)).fetchall()
    probes = {label: [] for _, _, label in BUCKETS}
    for low, high, label in BUCKETS:
        inside = [s for s in spans if low <= tokens - s[1] < high]
        if not inside:
            continue
        for index in rng.permutation(len(inside))[:per_bucket]:
            start, end = inside[int(index)]
            at = int(rng.integers(start + 32, end - ANSWER + 1))
            ids = np.asarray(store.stream.read(at - PROMPT, at + ANSWER), dtype=np.int64)
            probes[label].append((at, (start, end), ids[:PROMPT], ids[PROMPT:]))
    return probes


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    import torch

    from assistant.engine import Engine
    from assistant.home import set_home

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--probes", type=int, default=25, help="probes per distance bucket")
    parser.add_argument("--label", default=None, help="the journal's name in the table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--reader", default="none", choices=("none", "generic", "trained"))
    args = parser.parse_args(argv)
    set_home(args.home)
    engine = Engine(args.home)
    engine.config.reader = args.reader
    memory = engine.load_memory()
    if memory.rows is None or memory.rows.start > 0:
        print(f"the memory in {args.home} keeps no rows for its whole history: rebuild it "
              "(`memex memory rebuild`) with memory_rows on", file=sys.stderr)
        return 1
    started, load = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    model = engine.longnet_model
    rng = np.random.default_rng(args.seed)
    probes = draw_probes(engine.store, memory.tokens, args.probes, rng)
    budget = engine.recall_tokens

    def searched(prompt):
        text = engine.tokenizer.decode(prompt.tolist())
        passages = list(engine.search(text, None, engine.config.passages))
        return [(p["start"], p["end"]) for p in engine.recall_spans(passages, [], budget)]

    table = {label: {v: [] for v in VARIANTS} for label in probes}
    seconds = {v: [] for v in VARIANTS}
    found = {label: [] for label in probes}
    losses = []  # the window's negative log-likelihood of every answer token
    with torch.inference_mode():
        for label, items in probes.items():
            for at, entry, prompt, answer in items:
                spans = searched(prompt)
                found[label].append(any(a <= at < b for a, b in spans))
                text_ids = np.concatenate(
                    [np.asarray(engine.store.stream.read(a, b), np.int64) for a, b in spans]
                    + [prompt])
                for variant in VARIANTS:
                    t0 = time.perf_counter()
                    right, nll = read(variant, model, memory, prompt, answer, entry, spans,
                                      text_ids)
                    table[label][variant].append(right)
                    if variant == "window":
                        losses.extend(nll)
                    seconds[variant].append(time.perf_counter() - t0)
            print(label, {v: f"{sum(r)}/{len(r)}" for v, r in table[label].items()},
                  f"search found it {sum(found[label])}/{len(found[label])}", flush=True)

    name = args.label or args.home.name
    lines = [(f"# {name}, reader {args.reader}: {memory.tokens:,} tokens of history; {started}; "
              f"{cpu_name()}, "
              f"{torch.get_num_threads()} threads, load {load:.1f} at start; "
              f"{args.probes} probes per bucket, seed {args.seed}"),
             (f"# a probe: {PROMPT} tokens of a note → its next {ANSWER}, word for word; "
              f"rows (float16): {memory.rows.nbytes / 1e9:.2f} GB on disk; memory computes in "
              f"{str(memory.dtype).removeprefix('torch.')}"),
             "", "| tokens back | n | " + " | ".join(VARIANTS) + " | search found the entry |",
             "|---|---:|" + "---:|" * (len(VARIANTS) + 1)]
    for label, results in table.items():
        n = len(found[label])
        if not n:
            continue
        cells = [f"{100 * sum(r) / n:.0f}%" for r in results.values()]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) +
                     f" | {100 * sum(found[label]) / n:.0f}% |")
    lines.append("| median s / probe | | " + " | ".join(
        f"{statistics.median(seconds[v]):.2f}" if seconds[v] else "–" for v in VARIANTS) + " | |")
    if losses:
        lines.append(f"| perplexity of the answers (window) | {len(losses)} tokens | "
                     f"{np.exp(np.mean(losses)):.2f} |" + " |" * len(VARIANTS))
    text = "\n".join(lines)
    print(text)
    RESULTS.mkdir(exist_ok=True)
    with (RESULTS / "recall.txt").open("a") as out:
        out.write(text + "\n\n")
    return 0


def read(variant, model, memory, prompt, answer, entry, spans, text_ids):
    """One probe read one way (see the module's docstring): (right, the answer tokens'
    negative log-likelihoods)."""
    reserve = PROMPT + ANSWER
    if variant == "window":
        return right_at(memory.fork(), prompt, answer)
    if variant == "levels open":
        with model.far_gates_at(0.0):
            return right_at(memory.fork(), prompt, answer)
    if variant == "text, searched":
        return right_at(memory.fork(isolate_window=True), text_ids, answer)
    recalled = [entry] if variant == "rows, its entry" else spans
    with model.far_levels_shut():  # as memory answers read rows: untrained far levels shut
        return right_at(memory.recall_fork(recalled, reserve_tokens=reserve), prompt, answer)


def right_at(fork, ids, answer):
    """Whether the answer's tokens are the most likely after ``ids`` (the prompt's last
    tokens), and their negative log-likelihoods."""
    import numpy as np
    import torch

    full = torch.as_tensor(np.concatenate([ids, answer]))
    logits = fork._step(full, logits=True)[len(ids) - 1:-1].float()
    target = torch.as_tensor(answer)
    nll = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    return bool((logits.argmax(-1) == target).all()), nll.tolist()


if __name__ == "__main__":
    raise SystemExit(main())
