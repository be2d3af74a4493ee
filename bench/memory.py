"""Benchmark the LongNet memory: prefill throughput, state size, time to first token and
decode speed against the length of the history, side by side with the dense model
restricted to its trained window (8K for SmolLM2).

    .venv/bin/python bench/memory.py                       # the default model, up to 1M
    .venv/bin/python bench/memory.py --max-tokens 131072   # a shorter run
    .venv/bin/python bench/memory.py --random-weights      # same shapes, no weights needed

One pass reads a synthetic stream (uniform random token ids) into one memory; at each
checkpoint it records the prefill rate over the second half of the history so far,
the state size, and (at 10K, 100K and 1M tokens) the time to first token of a 50-token
question and the decode rate of a 32-token answer, each in a fork that leaves the
memory unchanged. Medians of repeats. Timings are not a test: they print a table.
"""

from __future__ import annotations

import argparse
import json
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _machine import cpu_name

from longnet.generate import pick_token
from longnet.memory import Memory
from longnet.model import (
    LongNetConfig,
    LongNetLM,
    autocast,
    choose_device,
    choose_dtype,
    level_schedule,
    pretrained_defaults,
)

TTFT_HISTORIES = (10_000, 100_000, 1_000_000)
HYBRID_HISTORY = 100_000  # also timed as a hybrid answer reads it before training
QUESTION_TOKENS = 50


def machine_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = cpu_name()
    return f"{cpu}, {torch.get_num_threads()} threads"


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def load_model(args, device):
    if args.random_weights:
        from longnet.weights import resolve_model_dir

        overrides = {"position_mode": args.position_mode} if args.position_mode else {}
        try:
            import json

            folder = resolve_model_dir(args.model)
            hf = json.loads((folder / "config.json").read_text())
        except (OSError, RuntimeError, ValueError):  # no weights here: SmolLM2-135M's shapes
            hf = {"vocab_size": 49152, "hidden_size": 576, "num_hidden_layers": 30,
                  "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
                  "rope_theta": 100000.0, "max_position_embeddings": 8192, "eos_token_id": 2,
                  "tie_word_embeddings": True, "rms_norm_eps": 1e-5}
        # The levels a pretrained model loads with (sliding window, closed far gates).
        config = LongNetConfig.from_hf(hf, **pretrained_defaults(hf, overrides))
        torch.manual_seed(0)
        model = LongNetLM(config).to(device).eval()
        model.model_id = "random-init (SmolLM2-135M shapes)"
        return model
    overrides = {"position_mode": args.position_mode} if args.position_mode else {}
    return LongNetLM.from_pretrained(args.model, device=device, **overrides)


def time_turn(memory: Memory, question: torch.Tensor, decode_tokens: int, repeats: int,
              decode_weights=("float32",), isolated: bool = False):
    """(median TTFT s, {decode weights: median decode tokens/s}, first TTFT s) of answering
    ``question`` from ``memory``. ``isolated``: as a hybrid answer reads before training
    (the turn's own window, far levels shut)."""
    device = memory.device
    model = memory.model
    for kind in decode_weights:  # pack the copies before timing (once per model)
        model.pack_for_decoding(kind)
    ttfts, rates = [], {kind: [] for kind in decode_weights}
    shut = model.far_levels_shut() if isolated else contextlib.nullcontext()
    with shut:
        for _ in range(repeats):
            # As generate() does: the first turn gives the memory's buffers room for the
            # turn (one copy of the state, timed in that repeat), later turns write in place.
            room = len(question) + decode_tokens * len(decode_weights) + 1
            turn = memory.fork(isolate_window=isolated, reserve_tokens=room)
            with torch.inference_mode(), autocast(device, memory.dtype):
                sync(device)
                began = time.perf_counter()
                logits = turn._step(question, last_only=True)
                token = pick_token(logits[-1])
                sync(device)
                ttfts.append(time.perf_counter() - began)
                for kind in decode_weights:  # the turn goes on with each kind of weights
                    with model.packed_decoding(kind if memory.dtype == torch.float32
                                               else "float32"):
                        began = time.perf_counter()
                        for _ in range(decode_tokens):
                            logits = turn._step(torch.tensor([token], device=device),
                                                last_only=True)
                            token = pick_token(logits[-1])
                        sync(device)
                    rates[kind].append(decode_tokens / (time.perf_counter() - began))
    return (statistics.median(ttfts), {k: statistics.median(v) for k, v in rates.items()},
            ttfts[0])


def synthetic_memory(model, dtype, tokens: int) -> Memory:
    """A memory shaped exactly as after reading ``tokens`` tokens, random contents.

    Attention cost depends only on the state's shapes, so this times a question after
    a 1M-token history without reading 1M tokens first (where that takes hours)."""
    from longnet.memory import LevelState, LocalWindowState

    c = model.config
    group = c.num_heads // c.num_kv_heads
    memory = Memory(model, dtype=dtype)
    memory.tokens = memory.stream_offset = tokens
    generator = torch.Generator().manual_seed(tokens)
    if c.local_window:  # the sliding window: its last local_window - 1 rows
        rows = min(tokens, c.local_window - 1)
        for layer in range(c.num_layers):
            kv = torch.randn((2, c.num_kv_heads, rows, c.head_dim), generator=generator)
            memory.local[layer] = LocalWindowState(tokens - rows, rows,
                                                   kv.to(memory.device, memory.dtype))
            sinks = min(tokens, c.attention_sinks)
            if sinks:
                sink_rows = torch.randn((2, c.num_kv_heads, sinks, c.head_dim), generator=generator)
                memory.sinks[layer] = sink_rows.to(memory.device, memory.dtype)
    for level, (w, r) in enumerate(zip(c.segment_lengths, c.dilation_rates)):
        if level == 0 and c.local_window:
            continue
        start = (tokens // w) * w
        if start == tokens:
            continue
        blocks = -(-(tokens - start) // r)
        shape = (2, c.num_kv_heads, min(group, r), blocks, c.head_dim)
        for layer in range(c.num_layers):
            kv = torch.randn(shape, generator=generator).to(memory.device, memory.dtype)
            memory.states[layer][level] = LevelState(start, kv)
    return memory


def bench_memory(args, model, device, dtype, progress):
    checkpoints = sorted({n for n in TTFT_HISTORIES if n <= args.max_tokens}
                         | {16_384 * 2 ** i for i in range(20) if 16_384 * 2 ** i <= args.max_tokens}
                         | {args.max_tokens})
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    question = torch.randint(0, vocab, (QUESTION_TOKENS,), generator=generator).to(device)
    if args.turns_only:  # no reading: every history is a synthetic state
        checkpoints = []
    kinds = [k.strip() for k in args.decode_weights.split(",") if k.strip()]
    memory = Memory(model, dtype=dtype, chunk_size=args.chunk)
    task = progress.add_task("prefill", total=checkpoints[-1] if checkpoints else 1)
    rows, read_at = [], {}
    elapsed_total = 0.0
    for stop in checkpoints:
        while memory.tokens < stop:
            n = min(args.chunk, stop - memory.tokens)
            ids = torch.randint(0, vocab, (n,), generator=generator)
            sync(device)
            began = time.perf_counter()
            memory.append(ids.to(device), return_logits=False)
            sync(device)
            elapsed_total += time.perf_counter() - began
            read_at[memory.tokens] = elapsed_total
            progress.update(task, completed=memory.tokens)
        row = {"tokens": stop, "state_bf16_mb": state_bytes_bf16(memory) / 2 ** 20}
        half = max((t for t in read_at if t <= stop // 2), default=0)
        spent = elapsed_total - read_at.get(half, 0.0)
        row["prefill_tok_s"] = (stop - half) / spent if spent > 0 else float("nan")
        if stop in TTFT_HISTORIES:
            row["ttft_s"], row["decode"], row["first_ttft_s"] = time_turn(
                memory, question, args.decode_tokens, args.repeats, kinds)
        rows.append(row)
    # The synthetic state must have exactly the shapes that reading produced.
    if memory.tokens:
        shaped = synthetic_memory(model, dtype, memory.tokens)
        assert state_bytes_bf16(shaped) == state_bytes_bf16(memory), "synthetic state differs"
        del shaped
    for history in TTFT_HISTORIES:
        if history <= args.max_tokens and not args.turns_only:
            continue
        progress.update(task, description=f"question after {history:,} (synthetic state)")
        shaped = synthetic_memory(model, dtype, history)
        ttft, decode, first = time_turn(shaped, question, args.decode_tokens, args.repeats, kinds)
        rows.append({"tokens": history, "synthetic": True, "prefill_tok_s": float("nan"),
                     "state_bf16_mb": state_bytes_bf16(shaped) / 2 ** 20, "ttft_s": ttft,
                     "decode": decode, "first_ttft_s": first})
        del shaped
    # A hybrid answer before training reads its own window with the far levels shut.
    progress.update(task, description=f"hybrid turn after {HYBRID_HISTORY:,} (synthetic state)")
    shaped = synthetic_memory(model, dtype, HYBRID_HISTORY)
    ttft, decode, first = time_turn(shaped, question, args.decode_tokens, args.repeats, kinds,
                                    isolated=True)
    rows.append({"tokens": HYBRID_HISTORY, "synthetic": True, "hybrid": True,
                 "prefill_tok_s": float("nan"), "state_bf16_mb": state_bytes_bf16(shaped) / 2 ** 20,
                 "ttft_s": ttft, "decode": decode, "first_ttft_s": first})
    return rows


def state_bytes_bf16(memory: Memory) -> int:
    """Bytes of the state's rows stored in bfloat16 (2 bytes per element), as saved;
    buffers still growing inside a segment may hold up to twice that in memory."""
    total = 0
    for layer in memory.states:
        for level, state in enumerate(layer):
            if state is not None:
                _, kv_heads, slots, _, dim = state.kv.shape
                total += 2 * kv_heads * slots * memory.valid_blocks(level, state.start) * dim * 2
    for window in memory.local:  # saved: the last local_window - 1 rows
        if window is not None:
            _, kv_heads, _, dim = window.kv.shape
            rows = min(window.rows, memory.config.local_window - 1)
            total += 2 * kv_heads * rows * dim * 2
    for rows in memory.sinks:
        if rows is not None:
            total += rows.numel() * 2
    return total


def state_bound_bf16(config, history: int) -> int:
    """The most the state can hold (bf16) at any point of a history of ``history`` tokens:
    per layer and level, min(G, r) slots of ceil(min(w, history) / r) rows per kv head."""
    group = config.num_heads // config.num_kv_heads
    levels = list(zip(config.segment_lengths, config.dilation_rates))
    rows = 0
    if config.local_window:  # the sliding window keeps its last local_window - 1 rows
        rows += min(history, config.local_window - 1) + min(history, config.attention_sinks)
        levels = levels[1:]
    rows += sum(min(group, r) * -(-min(w, history) // r) for w, r in levels)
    return 2 * config.num_layers * config.num_kv_heads * rows * config.head_dim * 2


def read_rate(device, repeats: int = 5) -> float:
    """Bytes per second one reduction streams through 512 MB: the most any decode step
    that reads its whole state and weights from memory can hope for here."""
    x = torch.ones(128 * 2 ** 20, device=device)
    times = []
    for _ in range(repeats + 1):
        sync(device)
        began = time.perf_counter()
        x.sum()
        sync(device)
        times.append(time.perf_counter() - began)
    return x.numel() * x.element_size() / statistics.median(times[1:])


def weight_bytes(model, kind: str) -> int:
    """Bytes a one-token step reads from the projections with ``kind`` decode weights
    (the embedding lookup reads one row; norms are negligible)."""
    copies = model.pack_for_decoding(kind)
    if copies:
        return sum(copy.nbytes for copy in copies)
    return sum(p.numel() * p.element_size() for m in model.projections() for p in m.parameters())


def bench_bound(args, model, device, dtype) -> str:
    """Decode speed with the whole history read, against the ceiling the machine's read
    bandwidth puts on it: each token reads every state row of every layer and every weight
    once, so tokens/s <= read rate / (state bytes + weight bytes)."""
    rate = read_rate(device)
    kinds = [k.strip() for k in args.decode_weights.split(",") if k.strip()]
    generator = torch.Generator().manual_seed(0)
    question = torch.randint(0, model.config.vocab_size, (QUESTION_TOKENS,),
                             generator=generator).to(device)
    stored = torch.empty((), dtype=dtype).element_size()
    lines = [
        f"# bench/memory.py --bound — {machine_name(device)} ({device.type}), model "
        f"{model.model_id}, state stored in {str(dtype)[6:]}; decode {args.decode_tokens} "
        f"tokens, median of {args.repeats}",
        f"# read rate (one reduction over 512 MB, median of 5): {rate / 1e9:.1f} GB/s",
        "",
        "| history (tokens) | weights | state MB read / token | weights MB / token "
        "| ceiling tok/s | ceiling tok/s, state in 2 bytes | measured decode tok/s |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    weights_of = {kind: weight_bytes(model, kind if dtype == torch.float32 else "float32")
                  for kind in kinds}
    for history in TTFT_HISTORIES:
        shaped = synthetic_memory(model, dtype, history)
        state_2bytes = state_bytes_bf16(shaped)
        state = state_2bytes * stored // 2
        _, decode, _ = time_turn(shaped, question, args.decode_tokens, args.repeats, kinds)
        del shaped
        for kind in kinds:
            weights = weights_of[kind]
            lines.append(f"| {history:,} | {kind} | {state / 2 ** 20:,.1f} | "
                         f"{weights / 2 ** 20:,.1f} | {rate / (state + weights):.1f} | "
                         f"{rate / (state_2bytes + weights):.1f} | {decode[kind]:.1f} |")
    lines += ["", "ceiling = read rate / (state + weight bytes one token reads); the measured "
              "rate also pays for arithmetic, kernel calls and Python"]
    return "\n".join(lines) + "\n"


def bench_dense(args, device, dtype):
    """The dense model with its trained window: KV cache of the last 8K tokens."""
    import transformers

    from longnet.weights import resolve_model_dir

    if args.random_weights:
        try:
            import json

            hf_config = transformers.LlamaConfig(
                **json.loads((resolve_model_dir(args.model) / "config.json").read_text()))
        except (OSError, RuntimeError, ValueError):  # no weights here: SmolLM2-135M's shapes
            hf_config = transformers.LlamaConfig(
                vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                num_attention_heads=9, num_key_value_heads=3, max_position_embeddings=8192,
                rope_theta=100000.0, tie_word_embeddings=True)
        torch.manual_seed(0)
        hf = transformers.LlamaForCausalLM(hf_config).to(device).eval()
    else:
        from longnet.weights import load_hf_model

        hf = load_hf_model(args.model, attn_implementation="sdpa").to(device)
    if args.cast_weights:
        hf.to(dtype)
    window = min(hf.config.max_position_embeddings, 8192)
    vocab = hf.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    history = torch.randint(0, vocab, (1, window - QUESTION_TOKENS), generator=generator).to(device)
    question = torch.randint(0, vocab, (1, QUESTION_TOKENS), generator=generator).to(device)
    prefill, ttfts, rates = [], [], []
    with torch.inference_mode(), autocast(device, dtype):
        for _ in range(args.repeats):
            sync(device)
            began = time.perf_counter()
            cache = hf(history, use_cache=True).past_key_values
            sync(device)
            prefill.append(history.shape[1] / (time.perf_counter() - began))
            began = time.perf_counter()
            out = hf(question, past_key_values=cache, use_cache=True)
            token = pick_token(out.logits[0, -1])
            sync(device)
            ttfts.append(time.perf_counter() - began)
            cache = out.past_key_values
            began = time.perf_counter()
            for _ in range(args.decode_tokens):
                out = hf(torch.tensor([[token]], device=device), past_key_values=cache,
                         use_cache=True)
                cache = out.past_key_values
                token = pick_token(out.logits[0, -1])
            sync(device)
            rates.append(args.decode_tokens / (time.perf_counter() - began))
    kv_bytes = 2 * hf.config.num_hidden_layers * hf.config.num_key_value_heads * window \
        * (hf.config.hidden_size // hf.config.num_attention_heads) * 2
    return {"window": window, "prefill_tok_s": statistics.median(prefill),
            "ttft_s": statistics.median(ttfts), "decode_tok_s": statistics.median(rates),
            "first_ttft_s": ttfts[0],
            "state_bf16_mb": kv_bytes / 2 ** 20}


def describe_levels(config) -> str:
    c = config
    far = f"far levels w={c.segment_lengths[1]:,}·2^j r={c.dilation_rates[1]}·2^j" \
        if c.num_levels > 1 else "no far levels"
    if c.local_window:
        return (f"sliding window {c.local_window:,} + {far} ({c.num_levels} levels), "
                f"far gates {c.far_gate_init:g}")
    return f"w={c.segment_lengths[0]:,}·2^i r=2^i ({c.num_levels} levels)"


def format_report(args, device, dtype, model, rows, dense) -> str:
    kinds = [k.strip() for k in args.decode_weights.split(",") if k.strip()]
    lines = [
        (f"# bench/memory.py — {machine_name(device)} ({device.type}), compute {str(dtype)[6:]}, "
        f"model {model.model_id}, position_mode {model.config.position_mode}"),
        (f"# levels {describe_levels(model.config)}, chunk {args.chunk}, "
        f"question {QUESTION_TOKENS} tokens, decode {args.decode_tokens} tokens, "
        f"median of {args.repeats}, few_queries {Memory.few_queries}"
        + (f", weights stored in {str(dtype)[6:]}" if args.cast_weights else "")),
        "",
        ("| history (tokens) | prefill tok/s (2nd half) | state MB (bf16) | state bound MB (bf16)"
        " | TTFT s (50-token question) | first turn's TTFT s | "
        + " | ".join(f"decode tok/s, {kind} weights" for kind in kinds) + " |"),
        "|---:|---:|---:|---:|---:|---:|" + "---:|" * len(kinds),
    ]
    for row in rows:
        ttft = f"{row['ttft_s']:.3f}" if "ttft_s" in row else ""
        first = f"{row['first_ttft_s']:.3f}" if "first_ttft_s" in row else ""
        decode = " | ".join(f"{row['decode'][kind]:.1f}" if kind in row.get("decode", {})
                            else "" for kind in kinds)
        prefill = "(not read)" if row.get("synthetic") else f"{row['prefill_tok_s']:,.0f}"
        tokens = f"{row['tokens']:,}" + (" (synthetic state)" if row.get("synthetic") else "")
        if row.get("hybrid"):
            tokens = f"{row['tokens']:,}, hybrid turn (own window, far levels shut)"

        bound = state_bound_bf16(model.config, row["tokens"]) / 2 ** 20
        lines.append(f"| {tokens} | {prefill} | "
                     f"{row['state_bf16_mb']:,.1f} | {bound:,.1f} | {ttft} | {first} | {decode} |")
    if dense:
        lines.append(f"| dense, {dense['window']:,} window (KV cache) | "
                     f"{dense['prefill_tok_s']:,.0f} | {dense['state_bf16_mb']:,.1f} | "
                     f"{dense['state_bf16_mb']:,.1f} | "
                     f"{dense['ttft_s']:.3f} | {dense['first_ttft_s']:.3f} | "
                     f"{dense['decode_tok_s']:.1f} (float32) |" + " |" * (len(kinds) - 1))
    lines.append("")
    prefill = {r["tokens"]: r["prefill_tok_s"] for r in rows if not r.get("synthetic")}
    ttft = {r["tokens"]: r["ttft_s"] for r in rows if "ttft_s" in r and not r.get("hybrid")}
    if 16_384 in prefill and len(prefill) > 1:
        last = max(prefill)
        lines.append(f"prefill tok/s at {last:,} / at 16,384: "
                     f"{prefill[last] / prefill[16_384]:.2f} (target >= 0.70)")
    if 10_000 in ttft and len(ttft) > 1:
        last = max(ttft)
        lines.append(f"TTFT at {last:,} / at 10,000: {ttft[last] / ttft[10_000]:.2f} "
                     f"(target <= 1.5)")
    if args.turns_only:
        lines.append("turns only (--turns-only): nothing read; every history is a synthetic "
                     "state of exactly the shapes reading produces")
    elif args.max_tokens < 1_000_000:
        lines.append(f"scaled down: streams read up to {args.max_tokens:,} tokens (--max-tokens); "
                     "longer histories use a synthetic state of exactly the shapes reading "
                     "produces (checked against the real state at the longest read)")
    return "\n".join(lines) + "\n"


def journal_tokens(tokenizer, folder: Path) -> list[int]:
    """The example journal as one stream: files in path order, each followed by a blank line."""
    ids: list[int] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        text = path.read_text(errors="replace")
        ids.extend(tokenizer(f"{path.relative_to(folder)}\n{text}\n\n")["input_ids"])
    return ids


def bench_positions(args, device, dtype) -> str:
    """Held-out perplexity of the journal's tail under each position mode.

    The window is the first ``--ppl-window`` tokens of the journal stream; the last
    ``--ppl-scored`` are scored, everything before them in view. Beside the two LongNet
    position modes: the dense model on only the last 8,192 tokens (its trained window)
    and LongNet with its dense local level alone."""
    from longnet.weights import load_hf_model, load_tokenizer

    tokenizer = load_tokenizer(args.model)
    stream = journal_tokens(tokenizer, Path(args.journal))
    window, scored = args.ppl_window, args.ppl_scored
    if len(stream) < window:
        raise SystemExit(f"the journal has {len(stream):,} tokens, fewer than --ppl-window")
    if scored >= min(8192, window):
        raise SystemExit("--ppl-scored must be below the dense window (8,192) and --ppl-window")
    ids = torch.tensor(stream[:window], device=device)
    targets = ids[window - scored:]

    def perplexity(logits):  # logits predicting tokens window-scored .. window-1
        nll = torch.nn.functional.cross_entropy(logits.float(), targets)
        return float(torch.exp(nll))

    def memory_ppl(model):
        memory = Memory(model, dtype=dtype, chunk_size=args.chunk)
        memory.append(ids[:window - scored - 1], return_logits=False)
        return perplexity(memory.append(ids[window - scored - 1:window - 1]))

    results = []
    wanted = set(args.ppl_configs.split(","))
    if "default" in wanted:  # what from_pretrained gives: sliding window + closed far gates
        model = LongNetLM.from_pretrained(args.model, device=device)
        c = model.config
        name = (f"default: sliding window {c.local_window:,} + {c.attention_sinks} sinks + "
                f"{c.num_levels - 1} far levels, gates closed ({c.far_gate_init:g})")
        results.append((name, memory_ppl(model)))
        del model
    if "window+sinks" in wanted:  # the default's level 0 alone (= the default, far levels shut)
        import json

        from longnet.weights import resolve_model_dir

        hf = json.loads((resolve_model_dir(args.model) / "config.json").read_text())
        defaults = pretrained_defaults(hf, {})  # what from_pretrained would give
        local, sinks = defaults["local_window"], defaults["attention_sinks"]
        model = LongNetLM.from_pretrained(args.model, device=device, segment_lengths=(local,),
                                          dilation_rates=(1,), local_window=local,
                                          attention_sinks=sinks)
        results.append((f"sliding window {local:,} + {sinks} sinks, no far levels",
                        memory_ppl(model)))
        del model
    if "window" in wanted:  # the sliding window alone
        model = LongNetLM.from_pretrained(args.model, device=device, segment_lengths=(8192,),
                                          dilation_rates=(1,), local_window=8192)
        results.append(("sliding window 8,192 alone", memory_ppl(model)))
        del model
    for mode in ("absolute", "dilated"):
        if f"paper-{mode}" not in wanted:
            continue
        # The paper's levels: absolute segments from level 0, every gate open.
        segments, rates = level_schedule()
        model = LongNetLM.from_pretrained(args.model, device=device, position_mode=mode,
                                          segment_lengths=segments, dilation_rates=rates)
        results.append((f"LongNet levels w=2048·2^i r=2^i, position_mode={mode}",
                        memory_ppl(model)))
        del model
    if args.ppl_local:
        local = LongNetLM.from_pretrained(args.model, device=device, segment_lengths=(2048,),
                                          dilation_rates=(1,))
        results.append(("one level w=2048 r=1 (absolute segments, local only)", memory_ppl(local)))
        del local
    hf = load_hf_model(args.model, attn_implementation="sdpa").to(device)
    dense_window = min(8192, window)
    with torch.inference_mode(), autocast(device, dtype):
        logits = hf(ids[None, window - dense_window:window - 1]).logits[0, -scored:]
    results.append((f"dense, only the last {dense_window:,} tokens (trained window)",
                    perplexity(logits)))
    lines = [(f"# held-out perplexity, example journal: last {scored:,} of the first "
             f"{window:,} tokens; {machine_name(device)}, {str(dtype)[6:]}"), "",
             "| attention | ppl |", "|---|---:|"]
    lines += [f"| {name} | {ppl:.3f} |" for name, ppl in results]
    return "\n".join(lines) + "\n"


def self_check(device) -> str:
    """On ``device``: chunked appends equal one full forward pass (float32), bfloat16
    autocast stays close, and greedy generation matches the full forward's choices."""
    lines, failures = [], 0
    for mode in ("absolute", "dilated"):
        torch.manual_seed(0)
        config = LongNetConfig(vocab_size=97, hidden_size=64, num_layers=2, num_heads=6,
                               num_kv_heads=2, head_dim=16, intermediate_size=96,
                               segment_lengths=(16, 32, 64, 128), dilation_rates=(1, 2, 4, 8),
                               position_mode=mode)
        model = LongNetLM(config).to(device).eval()
        ids = torch.randint(0, 97, (300,), generator=torch.Generator().manual_seed(1)).to(device)
        with torch.inference_mode():
            full = model(ids[None])[0].float()
        memory = Memory(model, dtype=torch.float32)
        pieces, begin = [], 0
        for size in (37, 1, 50, 112, 3, 97):
            pieces.append(memory.append(ids[begin:begin + size]))
            begin += size
        chunked = (torch.cat(pieces) - full).abs().max().item()
        low = Memory(model, dtype=torch.bfloat16)
        bf16 = (low.append(ids) - full).abs().max().item()
        greedy, context = [], ids[:283].tolist()  # the turn stays in one local segment
        for _ in range(5):
            with torch.inference_mode():
                logits = model(torch.tensor([context + greedy], device=device))[0, -1]
            greedy.append(int(logits.argmax()))
        history = Memory(model, dtype=torch.float32)
        history.append(ids[:280])
        generated = history.generate(ids[280:283], max_new_tokens=5)
        ok = chunked < 1e-4 and bf16 < 0.25 and generated == greedy
        failures += not ok
        lines.append(f"{device} {mode}: chunked-vs-full max|d| {chunked:.2e}, bf16-vs-fp32 "
                     f"{bf16:.3f}, greedy generation {'matches' if generated == greedy else 'DIFFERS'}"
                     f" -> {'ok' if ok else 'FAIL'}")
    if failures:
        lines.append(f"{failures} check(s) failed")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- --build


def journal_tokens(folder: Path, tokenizer, limit: int) -> list[int]:
    """The first ``limit`` tokens of a journal's text files, read in path order."""
    ids: list[int] = []
    for path in sorted(p for p in folder.rglob("*") if p.suffix in (".md", ".txt", ".org")):
        ids += tokenizer(path.read_text(errors="replace") + "\n")["input_ids"]
        if len(ids) >= limit:
            break
    return ids[:limit]


def bench_build(args, model, device) -> str:
    """The memory build in float32 and in bfloat16, side by side on the same text: each
    chunk is read by both memories in turn (this machine is shared: alternating keeps the
    noise out of the ratio), with every token's rows kept as `memex memory build` keeps
    them. Then the bytes per token saved (state file + rows) in the old float32 format
    and in 16 bits, and the perplexity of the next tokens read against each saved
    memory loaded back as answers load it (float32)."""
    import tempfile

    from assistant.home import model_cache_dir
    from longnet.device import cpu_has_bf16
    from longnet.weights import load_tokenizer

    tokenizer = load_tokenizer(args.model, model_cache_dir(Path(tempfile.gettempdir())))
    chunk, held_out = args.build_chunk, args.build_scored
    texts = [Path(p) for p in args.build_journals.split(",")]
    lines = [f"Memory build, float32 vs bfloat16: {machine_name(device)}, bf16 "
             f"{'native (AVX512-BF16/AMX)' if cpu_has_bf16() else 'emulated (no AVX512-BF16/AMX)'}, "
             f"{model.model_id}, {args.build_tokens:,} tokens per journal read {chunk:,} at a "
             f"time, rows kept; perplexity of the next {held_out:,} tokens read against the "
             "saved memory loaded as float32. Tokens/s: median over the chunks.", "",
             "| journal | build | tokens/s | ×fp32 | state file B/token | + rows B/token "
             "| perplexity | Δ vs fp32 in RAM |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for folder in texts:
        ids = journal_tokens(folder, tokenizer, args.build_tokens + held_out)
        history, scored = ids[:args.build_tokens], torch.tensor(ids[args.build_tokens:])
        with tempfile.TemporaryDirectory() as tmp:
            memories, rates = {}, {}
            for name in ("float32", "bfloat16"):
                memories[name] = model.memory(dtype=name)
                memories[name].keep_rows(Path(tmp) / name)
                rates[name] = []
            for begin in range(0, len(history), chunk):
                piece = history[begin:begin + chunk]
                for name, memory in memories.items():
                    began = time.perf_counter()
                    memory.append(piece, return_logits=False)
                    rates[name].append(len(piece) / (time.perf_counter() - began))
                print(f"  {folder.parent.name}: {begin + len(piece):,} tokens", file=sys.stderr)

            def perplexity(memory) -> float:
                logits = memory.fork().append(scored[:-1])
                return float(torch.nn.functional.cross_entropy(logits.float(), scored[1:]).exp())

            reference = perplexity(memories["float32"])
            saves = [("float32", "float32 (before)", torch.float32), ("float32", "float32", None),
                     ("bfloat16", "bfloat16", None)]
            for name, label, stored in saves:
                memory = memories[name]
                folder_out = Path(tmp) / name
                memory.save(folder_out, stored_dtype=stored)
                meta = json.loads((folder_out / "memory.json").read_text())
                state = meta["stored_bytes"] / memory.tokens
                rows = memory.rows.nbytes / memory.tokens
                loaded = Memory.load(folder_out, model, dtype=torch.float32)
                ppl = perplexity(loaded)
                rate = statistics.median(rates[name])
                speedup = rate / statistics.median(rates["float32"])
                stored_as = "/".join(meta["stored_dtypes"])
                lines.append(f"| {folder.parent.name} | {label}, saved {stored_as} | {rate:,.0f} "
                             f"| {speedup:.2f} | {state:,.0f} | {state + rows:,.0f} | {ppl:.3f} "
                             f"| {100 * (ppl / reference - 1):+.2f}% |")
    lines += ["", "B/token: bytes on disk per token of history (it falls as the history grows "
              "past the window: the state is bounded, the rows are not)."]
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or path (default SmolLM2)")
    parser.add_argument("--random-weights", action="store_true",
                        help="random weights of the model's shapes (timings only)")
    parser.add_argument("--max-tokens", type=int, default=1_048_576)
    parser.add_argument("--chunk", type=int, default=8192, help="tokens per append")
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--decode-weights", default="float32,float16,int4",
                        help="comma-separated: the weights decoding reads (longnet.packed), "
                             "each timed in the same turn")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--position-mode", default=None, choices=("absolute", "dilated"))
    parser.add_argument("--no-dense", action="store_true", help="skip the dense baseline")
    parser.add_argument("--cast-weights", action="store_true",
                        help="store the weights in --dtype (both models) instead of autocast")
    parser.add_argument("--turns-only", action="store_true",
                        help="skip reading: time questions against synthetic states only")
    parser.add_argument("--few-queries", type=int, default=None,
                        help="Memory.few_queries: up to this many new tokens attend in one "
                             "masked matmul per level, more go through level_attention")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    parser.add_argument("--positions", action="store_true",
                        help="instead: held-out journal perplexity of the position modes")
    parser.add_argument("--journal", default=str(Path(__file__).resolve().parent.parent
                                                 / "examples" / "journal"))
    parser.add_argument("--ppl-window", type=int, default=16_384)
    parser.add_argument("--ppl-scored", type=int, default=4096)
    parser.add_argument("--ppl-configs", default="default,window,paper-absolute,paper-dilated",
                        help="comma-separated LongNet rows of the --positions table: default, "
                             "window+sinks, window, paper-absolute, paper-dilated")
    parser.add_argument("--ppl-local", action="store_true",
                        help="also the dense local level alone (one more pass)")
    parser.add_argument("--check", action="store_true",
                        help="instead: check correctness on --device (chunked = full, bf16)")
    parser.add_argument("--bound", action="store_true",
                        help="instead: decode with the whole history read against the ceiling "
                             "of this machine's read bandwidth")
    parser.add_argument("--build", action="store_true",
                        help="instead: the memory build in float32 vs bfloat16 on real text: "
                             "tokens/s, bytes per token on disk, perplexity")
    parser.add_argument("--build-journals", default=",".join(
        str(p) for p in (Path(__file__).resolve().parent.parent / "examples" / "journal",
                         Path(__file__).resolve().parents[2] / "shared" / "data"
                         / "real-journals" / "barbellion" / "journal")))
    parser.add_argument("--build-tokens", type=int, default=12_288)
    parser.add_argument("--build-chunk", type=int, default=2048)
    parser.add_argument("--build-scored", type=int, default=1024)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    device = choose_device(args.device)
    dtype = choose_dtype(args.dtype, device)
    if args.check or args.positions:
        report = self_check(device) if args.check else bench_positions(args, device, dtype)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report)
        return
    if args.few_queries is not None:
        Memory.few_queries = args.few_queries
    model = load_model(args, device)
    if args.cast_weights:  # weights stored in the compute dtype: no per-op casts
        model.to(dtype)
    if args.bound or args.build:
        report = bench_build(args, model, device) if args.build else \
            bench_bound(args, model, device, dtype)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report)
        return
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as progress:
        rows = bench_memory(args, model, device, dtype, progress)
    dense = None if args.no_dense else bench_dense(args, device, dtype)
    report = format_report(args, device, dtype, model, rows, dense)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)


if __name__ == "__main__":
    main()
