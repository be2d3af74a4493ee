"""Benchmark `memex train`: training throughput of dilated vs dense attention per sequence
length, and the before/after figures of a short real training run.

    .venv/bin/python bench/train.py --device cpu --sizes 4096,8192,16384
    python3 bench/train.py --device cuda --sizes 4096,8192,16384,32768,65536,131072
    .venv/bin/python bench/train.py --device cpu --no-throughput --journal-run \\
        --train-steps 6 --train-seq-len 8192        # real SmolLM2 on examples/journal

Throughput: one training step = forward + backward of one window with LoRA (rank 16,
q/k/v/o) + level gates trainable, per-block gradient checkpointing and the chunked loss,
exactly as `memex train` runs it, on the SmolLM2-135M shape with RANDOM weights (the
speed does not depend on the values). "dense" is the same model with every layer's
attention replaced by causal SDPA over the whole window (RoPE at absolute positions), as
a dense long-context fine-tune would run. Each cell runs in its own process (its own
peak memory: CUDA peak allocated, or the CPU process's peak RSS); the median of
``--timed`` steps after ``--warmup``. A cell is skipped, and the table says so, when the
previous length's time predicts more than ``--max-step-s`` (dense grows ~quadratically,
dilated ~linearly), or it ran out of memory.

Journal run: ingests examples/journal into a data home (kept under ~/.cache between
runs, resumable), trains the real default model with `memex train`'s code path for
``--train-steps`` and records validation perplexity on the held-out tail before and
after, the wall time and tokens/s. Memory-only accuracy needs the trained adapter wired
into the engine and a memory build of the whole journal; see the notes it prints.
Results go to bench/results/train-<device>.txt (the table is rewritten from the JSON
lines kept in bench/results/train-<device>.jsonl.tmp, so a rerun adds cells).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
RESULTS = REPO / "bench" / "results"

SMOLLM2 = {  # config.json of SmolLM2-135M-Instruct: the shape, no weights needed
    "model_type": "llama", "vocab_size": 49152, "hidden_size": 576, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
    "head_dim": 64, "rope_theta": 100000.0, "rms_norm_eps": 1e-5, "tie_word_embeddings": True,
    "max_position_embeddings": 8192, "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
}


def machine(device: str) -> str:
    import torch

    if device == "cuda":
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    sys.path.append(str(REPO / "bench"))  # after the repo: bench/ingest.py is no package
    from _machine import cpu_name

    load = os.getloadavg()[0]
    return (f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, "
            f"load average {load:.1f} at start, torch {torch.__version__}")


def smollm2_config(layers: int | None = None):
    from longnet import model as model_mod

    overrides = {}
    if hasattr(model_mod, "pretrained_defaults"):  # the schedule a pretrained model loads with
        overrides = model_mod.pretrained_defaults(SMOLLM2, {})
    if layers:
        overrides["num_layers"] = layers
    return model_mod.LongNetConfig.from_hf(SMOLLM2, **overrides)


def dense_attend(model, length: int, device):
    """Per-layer causal SDPA over the whole window, RoPE at absolute positions."""
    import torch
    import torch.nn.functional as F

    positions = torch.arange(length, device=device)

    def attend_for_layer(_index):
        def attend(q, k, v):
            q, k = model.rotary(q, positions), model.rotary(k, positions)
            return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)

        return attend

    return attend_for_layer


# --------------------------------------------------------------------------- one cell


def run_cell(args) -> dict:
    """Time training steps for one (length, attention) in this process; a JSON-able dict."""
    import torch

    from longnet.model import LongNetLM, autocast
    from longnet.training import (
        CheckpointedBlocks,
        TrainConfig,
        keep_heap_small,
        prepare_model,
        window_loss,
    )

    device = torch.device(args.device)
    if device.type == "cpu":
        keep_heap_small()  # as `memex train` does
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    length, attention = args.cell_length, args.cell_attention
    torch.manual_seed(0)
    config = smollm2_config(args.layers)
    model = LongNetLM(config).to(device)
    settings = TrainConfig(steps=1, seq_len=length, lora_rank=16, device=args.device).resolve()
    trainable = prepare_model(model, settings)
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-4)
    ids = torch.randint(0, config.vocab_size, (length + 1,), device=device)
    mask = torch.ones(length, dtype=torch.bool, device=device)
    attend = dense_attend(model, length, device) if attention == "dense" else None
    times = []
    model.train()
    with CheckpointedBlocks(model, True):
        # One short window first: one-time costs (lazy imports, kernel set-up) stay
        # out of the timed steps even without a full warm-up step.
        short = min(length, 256)
        with autocast(device, dtype):
            loss = window_loss(model, ids[:short], ids[1:short + 1], mask[:short], 4096, True,
                               dense_attend(model, short, device) if attend else None)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for step in range(args.warmup + args.timed):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, dtype):
                loss = window_loss(model, ids[:-1], ids[1:], mask, 4096, True, attend) / length
            loss.backward()
            optimizer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if step >= args.warmup:
                times.append(time.perf_counter() - began)
    seconds = statistics.median(times)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"length": length, "attention": attention, "step_s": round(seconds, 3),
            "tokens_per_s": round(length / seconds, 1), "peak_bytes": peak,
            "steps_timed": len(times), "layers": config.num_layers,
            "levels": [list(config.segment_lengths), list(config.dilation_rates)],
            "local_window": getattr(config, "local_window", None), "dtype": args.dtype,
            "device": args.device}


def cell_in_subprocess(args, length: int, attention: str) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--cell-length", str(length),
               "--cell-attention", attention, "--device", args.device, "--dtype", args.dtype,
               "--warmup", str(args.warmup), "--timed", str(args.timed)]
    if args.layers:
        command += ["--layers", str(args.layers)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    timeout = args.max_step_s * (args.warmup + args.timed) * 3 + 120
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                             check=False)
    except subprocess.TimeoutExpired:
        return {"length": length, "attention": attention, "skipped": f"timed out ({timeout} s)"}
    lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
    if run.returncode == 0 and lines:
        return json.loads(lines[-1])
    tail = (run.stderr or run.stdout).strip().splitlines()[-1:] or ["?"]
    out_of_memory = "out of memory" in run.stderr.lower() or run.returncode in (-9, 137)
    return {"length": length, "attention": attention,
            "skipped": "out of memory" if out_of_memory else f"failed: {tail[0][:120]}"}


# --------------------------------------------------------------------------- the table


def throughput(args, records: Path, out: Path, header: str) -> None:
    done = _read_records(records)
    for attention in args.attention.split(","):
        previous = None
        for length in sorted(int(s) for s in args.sizes.split(",")):
            key = (length, attention)
            if key in done and not args.fresh:
                previous = done[key]
                print(f"{attention:>8} {length:>7}: kept from an earlier run", flush=True)
                continue
            result = None
            if previous is not None and "step_s" in previous:
                power = 2 if attention == "dense" else 1
                estimate = previous["step_s"] * (length / previous["length"]) ** power
                if estimate > args.max_step_s:
                    result = {"length": length, "attention": attention,
                              "skipped": f"out of time: est. {estimate:,.0f} s/step > "
                                         f"{args.max_step_s:,.0f}"}
            elif previous is not None:
                result = {"length": length, "attention": attention,
                          "skipped": f"not run ({previous['skipped'].split(':')[0]} at "
                                     f"{previous['length']:,})"}
            if result is None:
                print(f"{attention:>8} {length:>7}: running …", flush=True)
                result = cell_in_subprocess(args, length, attention)
            print(f"{attention:>8} {length:>7}: {json.dumps(result)}", flush=True)
            _append_record(records, result)
            out.write_text(write_table(args, records, header))  # a cut-off run keeps its rows
            done[key] = result
            previous = result


def _read_records(path: Path) -> dict:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if "length" in record:
                    done[(record["length"], record["attention"])] = record
    return done


def _append_record(path: Path, record: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def write_table(args, records: Path, header: str) -> str:
    done = _read_records(records)
    lengths = sorted({length for length, _ in done})
    lines = [f"# memex train throughput, {args.device}: {header}",
             "# one step = forward + backward of one window, LoRA r16 (q,k,v,o) + level gates,",
             "# per-block checkpointing, chunked loss; SmolLM2-135M shape with RANDOM weights",
             (f"# ({args.dtype}); median of {args.timed} step(s) after {args.warmup} warm-up; "
             "produced by bench/train.py"), "",
             ("| tokens | dilated tok/s | dilated s/step | dilated peak | dense tok/s | "
             "dense s/step | dense peak | dilated/dense |"),
             "|---|---|---|---|---|---|---|---|"]
    for length in lengths:
        row = [f"{length:,}"]
        rates = {}
        for attention in ("dilated", "dense"):
            r = done.get((length, attention))
            if r is None:
                row += ["", "", ""]
            elif "skipped" in r:
                row += [r["skipped"], "", ""]
            else:
                rates[attention] = r["tokens_per_s"]
                row += [f"{r['tokens_per_s']:,.0f}", f"{r['step_s']:,.2f}", _gib(r["peak_bytes"])]
        ratio = (f"{rates['dilated'] / rates['dense']:.2f}x" if len(rates) == 2 else "")
        lines.append("| " + " | ".join(row + [ratio]) + " |")
    any_record = next((r for r in done.values() if "levels" in r), None)
    if any_record:
        lines += ["", (f"levels (w, r): {any_record['levels']}, local_window "
                      f"{any_record['local_window']}, {any_record['layers']} layers")]
    peak_kind = "peak allocated (torch.cuda)" if args.device == "cuda" else \
        "peak RSS of the process (weights, optimizer and activations)"
    lines.append(f"peak = {peak_kind}")
    table = "\n".join(lines) + "\n"
    return table


# --------------------------------------------------------------------------- journal run


def journal_run(args) -> str:
    """Train the real default model on examples/journal; the before/after figures."""
    import ingest
    from assistant.engine.training import run_training
    from assistant.config import set_value
    from assistant.home import model_cache_dir, set_home
    from longnet.training import TrainConfig, TrainingInterrupted
    from longnet.weights import load_tokenizer

    home = args.home
    set_home(home)
    store = ingest.open_store(home)
    if not store.sources():
        ingest.add_source(store, args.journal)
    tokenizer = load_tokenizer(None, model_cache_dir())
    ingest.run(store, tokenizer, embed=False)
    stream_tokens = len(store.stream)
    store.close()
    set_value(home, "today", "2025-01-01")
    settings = TrainConfig(steps=args.train_steps, seq_len=args.train_seq_len,
                           checkpoint_every=1, device=args.device,
                           dtype=None if args.dtype == "auto" else args.dtype)

    def progress(p):
        if p.phase == "train":
            print(f"step {p.step}/{p.steps} loss {p.loss:.4f} {p.tokens_per_s or 0:,.0f} tok/s "
                  f"(ETA {p.eta_s or 0:,.0f} s)", flush=True)
        else:
            print(p.phase, flush=True)

    began = time.perf_counter()
    try:
        meta = run_training(home, settings, recall=not args.no_recall, resume=True, say=print,
                            progress=progress)
    except TrainingInterrupted as stop:
        raise SystemExit(f"stopped at step {stop.step}; run the same command to go on") from None
    session = time.perf_counter() - began
    losses = _checkpoint_losses(home)
    lines = ["", (f"## Journal run: real SmolLM2-135M-Instruct on examples/journal "
                 f"({stream_tokens:,} stream tokens), {args.device}"),
             (f"- {meta['steps']} steps x {meta['settings']['seq_len']:,}-token windows "
             f"(accumulate {meta['settings']['accumulate']}), LoRA r{meta['settings']['lora_rank']}"
             f" + gates, lr {meta['settings']['lr']:g} (gates {meta['settings']['gate_lr']:g}), "
             f"recall share {meta['recall_ratio']:.0%} ({meta['recall_windows']} recall windows)"),
             (f"- trained on {meta['stream']['train_tokens']:,} tokens; validation = last "
             f"{meta['stream']['validation_tokens']:,} tokens, one window from position 0"),
             (f"- validation perplexity: {meta['ppl_before']:.3f} before -> "
             f"{meta['ppl_after']:.3f} after"),
             (f"- wall time {meta['wall_time_s']:,.0f} s (this session {session:,.0f} s), "
             f"{meta['train_tokens_per_s'] or 0:,.0f} training tokens/s, forward-only "
             f"{meta['forward_tokens_per_s'] or 0:,.0f} tokens/s"),
             f"- loss per step: {', '.join(f'{x:.3f}' for x in losses)}",
             "- memory-only accuracy on examples/questions.jsonl: NOT measured here. It needs the",
             "  trained adapter wired into the engine (assistant.engine.trained.apply_trained_reader)",
             "  and a memory build of the whole journal with the trained model; on this shared",
             "  CPU the build ran at ~8 tokens/s (bench/results/qa.txt), i.e. ~2 h for 50K tokens.",
             "  Run: bench/qa.py --modes memory --home <this home> once both are in place."]
    return "\n".join(lines) + "\n"


def _checkpoint_losses(home) -> list[float]:
    from assistant.engine.trained import train_dir
    from longnet.training import read_checkpoint

    saved = read_checkpoint(train_dir(home))
    return list(saved["state"]["losses"]) if saved else []


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"))
    parser.add_argument("--sizes", default="4096,8192,16384,32768,65536")
    parser.add_argument("--attention", default="dilated,dense")
    parser.add_argument("--warmup", type=int, default=None, help="default 1 (CUDA), 0 (CPU)")
    parser.add_argument("--timed", type=int, default=None, help="default 3 (CUDA), 1 (CPU)")
    parser.add_argument("--max-step-s", type=float, default=None,
                        help="skip a cell predicted slower than this (default 60 CUDA, 600 CPU)")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers (smoke tests)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--fresh", action="store_true", help="rerun cells kept from earlier runs")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--journal-run", action="store_true",
                        help="train the real model on examples/journal (before/after figures)")
    parser.add_argument("--journal", type=Path, default=REPO / "examples" / "journal")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    parser.add_argument("--home", type=Path, default=cache / "memex-bench" / "train")
    parser.add_argument("--train-steps", type=int, default=6)
    parser.add_argument("--train-seq-len", type=int, default=8192)
    parser.add_argument("--no-recall", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--cell-length", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cell-attention", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if args.dtype == "auto":
        args.dtype = "bfloat16" if cuda else "float32"
    args.warmup = args.warmup if args.warmup is not None else (1 if cuda else 0)
    args.timed = args.timed if args.timed is not None else (3 if cuda else 1)
    args.max_step_s = args.max_step_s or (60.0 if cuda else 600.0)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.cell_length is not None:
        print(json.dumps(run_cell(args)), flush=True)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"train-{args.device}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    records = out.with_suffix(".jsonl.tmp")
    header = machine(args.device)
    text = ""
    if not args.no_throughput:
        throughput(args, records, out, header)
        text = write_table(args, records, header)
    if args.journal_run:
        if not text:
            text = out.read_text() if out.is_file() else f"# memex train, {args.device}: {header}\n"
        text += journal_run(args)
    if text:
        out.write_text(text)
        print(text)


if __name__ == "__main__":
    main()
