"""Next-token training of ``LongNetLM`` on sequences longer than one device holds.

Every step trains on one window of ``--seq-len`` tokens split across the ranks
(sequence parallelism, ``longnet.distributed``): each rank reads only its slice, runs
it through the model, the dilated attention exchanges the selected rows of the
segments that cross ranks, and the gradients of the replicated parameters are summed,
so each step equals one process training on the whole window.

Launch with torchrun (gloo on CPU, NCCL on GPUs, one process per GPU)::

    torchrun --nproc-per-node 4 -m longnet.distributed.train \\
        --tokens stream.npy --seq-len 131072 --steps 1000 --out runs/long
    # several machines: add torchrun's rendezvous flags on each, e.g.
    #   --nnodes 2 --rdzv-backend c10d --rdzv-endpoint HOST:29500 --rdzv-id run1
    # (--out must then be on a filesystem every machine sees)

``--tokens``: a ``.npy`` array of token ids, or a raw little-endian file (``--token-dtype``).
A memex stream can be exported with
``python -c "import ingest, numpy; s = ingest.open_store('HOME').stream; numpy.save('stream.npy', s.read(0, len(s)))"``.
``--model`` (default: the bundled SmolLM2-135M-Instruct) loads pretrained weights;
``--config tiny.json`` (``LongNetConfig`` fields) starts from random weights instead.

Resumable: ``--out`` holds ``checkpoint.pt`` (model, optimizer, step; written
atomically every ``--save-every`` steps, on Ctrl-C and at the end), ``log.jsonl`` and,
at the end, ``final/``: a Hugging Face style folder that ``LongNetLM.from_pretrained``
reads, with the LongNet fields (levels, positions, level gates, sliding window and its
attention sinks) in ``final/longnet.json``
to pass as overrides: ``LongNetLM.from_pretrained(folder, **json.loads((folder /
"longnet.json").read_text()))``. Running the same command again goes on from the
checkpoint with the same data order.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from longnet.config import LongNetConfig
from longnet.device import choose_dtype
from longnet.distributed.process import init_distributed
from longnet.distributed.training import next_token_shard, train_step
from longnet.model import LongNetLM


def parse_levels(text: str) -> tuple[list[int], list[int]]:
    """'2048:1,4096:2' -> ([2048, 4096], [1, 2])."""
    try:
        pairs = [part.split(":") for part in text.split(",")]
        return [int(w) for w, _ in pairs], [int(r) for _, r in pairs]
    except ValueError:
        raise SystemExit(f"--levels must look like '2048:1,4096:2', not {text!r}") from None


def load_tokens(path: Path, token_dtype: str) -> np.ndarray:
    """Token ids as a read-only memory map (nothing is read until a rank slices it)."""
    if not path.is_file():
        raise SystemExit(f"no token file at {path}")
    from vault import is_chunked

    if is_chunked(path):  # its bytes are ciphertext: read as ids they would be noise
        raise SystemExit(f"{path} is encrypted (an encrypted data home's stream): train "
                         "on a plain copy of the token ids")
    if path.suffix == ".npy":
        tokens = np.load(path, mmap_mode="r")
    else:
        tokens = np.memmap(path, dtype=np.dtype(token_dtype).newbyteorder("<"), mode="r")
    if tokens.ndim != 1:
        raise SystemExit(f"{path} must hold a 1-D array of token ids, not shape {tokens.shape}")
    return tokens


def window_start(step: int, seq_len: int, available: int) -> int:
    """Where step ``step`` reads: consecutive windows, wrapping, so a resumed run sees
    the data a continuous one would."""
    windows = max(1, (available - 1) // seq_len)
    return (step % windows) * seq_len


def learning_rate(step: int, peak: float, warmup: int, total: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def build_model(args, device) -> LongNetLM:
    overrides = {}
    if args.levels:
        overrides["segment_lengths"], overrides["dilation_rates"] = parse_levels(args.levels)
    if args.positions:
        overrides["position_mode"] = args.positions
    if args.config:
        data = json.loads(Path(args.config).read_text())
        data.update(overrides)
        torch.manual_seed(args.seed)
        model = LongNetLM(LongNetConfig.from_dict(data)).to(device)
    else:
        model = LongNetLM.from_pretrained(args.model, cache_dir=args.cache_dir, device=device,
                                          **overrides)
    for tensor in model.state_dict().values():  # every rank starts from rank 0's weights
        if dist.get_world_size() > 1:
            moved = tensor.to(_comm_device())
            dist.broadcast(moved, 0)
            tensor.copy_(moved)
    return model


def _comm_device():
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def save_checkpoint(path: Path, model, optimizer, step: int, args) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                "args": vars(args)}, temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(temp, path)


def save_hf_folder(model: LongNetLM, folder: Path) -> None:
    """Weights and a Llama ``config.json`` that ``LongNetLM.from_pretrained`` reads."""
    from safetensors.torch import save_file

    c = model.config
    folder.mkdir(parents=True, exist_ok=True)
    hf = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": c.vocab_size,
          "hidden_size": c.hidden_size, "num_hidden_layers": c.num_layers,
          "num_attention_heads": c.num_heads, "num_key_value_heads": c.num_kv_heads,
          "intermediate_size": c.intermediate_size, "head_dim": c.head_dim,
          "rope_theta": c.rope_theta, "rope_scaling": c.rope_scaling, "rms_norm_eps": c.rms_norm_eps,
          "tie_word_embeddings": c.tie_word_embeddings, "attention_bias": c.attention_bias,
          "max_position_embeddings": c.max_position_embeddings, "hidden_act": "silu",
          "bos_token_id": c.bos_token_id, "eos_token_id": c.eos_token_id}
    (folder / "config.json").write_text(json.dumps(hf, indent=2))
    (folder / "longnet.json").write_text(json.dumps(c.to_dict(), indent=2))
    state = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            if not c.tie_word_embeddings:
                state[name] = tensor.detach().float().cpu().contiguous()
            continue
        state[f"model.{name}"] = tensor.detach().float().cpu().contiguous()
    save_file(state, str(folder / "model.safetensors"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node K -m longnet.distributed.train",
        description="Next-token training of LongNetLM over long sequences split across ranks.")
    parser.add_argument("--tokens", type=Path, required=True, help=".npy or raw token id file")
    parser.add_argument("--token-dtype", default="uint32", help="dtype of a raw token file")
    parser.add_argument("--out", type=Path, required=True, help="run folder (checkpoint, log)")
    parser.add_argument("--model", default=None, help="pretrained model name or folder")
    parser.add_argument("--cache-dir", type=Path, default=None, help="converted model cache")
    parser.add_argument("--config", default=None, help="JSON of LongNetConfig fields: random init")
    parser.add_argument("--levels", default=None, help="level schedule, e.g. 2048:1,4096:2,8192:4")
    parser.add_argument("--positions", choices=("absolute", "dilated"), default=None)
    parser.add_argument("--seq-len", type=int, default=32768, help="tokens per step, all ranks")
    parser.add_argument("--batch", type=int, default=1, help="sequences per step")
    parser.add_argument("--steps", type=int, default=100, help="total optimizer steps")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--max-grad-norm", type=float, default=1.0)
    parser.add_argument("--dtype", default="auto", help="float32, bfloat16 (autocast) or auto")
    parser.add_argument("--save-every", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None)
    args = parser.parse_args(argv)
    tokens = load_tokens(args.tokens, args.token_dtype)  # bad input fails before any rendezvous
    span = args.seq_len * args.batch
    if len(tokens) < span + 1:
        raise SystemExit(f"{args.tokens} holds {len(tokens):,} tokens; a step needs "
                         f"--seq-len × --batch + 1 = {span + 1:,}")
    owns_group = not dist.is_initialized()
    init_distributed(args.backend)
    try:
        return train(args, tokens)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def train(args, tokens: np.ndarray) -> int:
    rank, world = dist.get_rank(), dist.get_world_size()
    device = _comm_device()
    dtype = choose_dtype(args.dtype, device)
    span = args.seq_len * args.batch
    model = build_model(args, device)
    if int(tokens.max(initial=0)) >= model.config.vocab_size:
        raise SystemExit(f"token ids reach {int(tokens.max())}, the model's vocabulary has "
                         f"{model.config.vocab_size}")
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)
    checkpoint = args.out / "checkpoint.pt"
    step = 0
    if checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        step = int(saved["step"])
    if rank == 0:
        args.out.mkdir(parents=True, exist_ok=True)
        if step:
            print(f"resuming at step {step} from {checkpoint}", file=sys.stderr)
    # Cuts on level 0's segments keep that level local; a sliding window always reads
    # the previous rows, so with one the shards are simply near-equal.
    c = model.config
    align = c.segment_lengths[0] if c.dilation_rates[0] == 1 and not c.local_window else 1

    progress = None
    if rank == 0 and sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        progress = Progress(TextColumn("[bold]train[/]"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeRemainingColumn())
        task = progress.add_task("train", total=args.steps, completed=step, status="")
        progress.start()
    try:
        while step < args.steps:
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(step, args.lr, args.warmup, args.steps)
            start = window_start(step, span, len(tokens))
            began = time.perf_counter()

            def read(a, b, start=start):
                rows = [np.asarray(tokens[start + i * args.seq_len + a: start + i * args.seq_len + b],
                                   dtype=np.int64) for i in range(args.batch)]
                return torch.as_tensor(np.stack(rows))

            inputs, targets, layout = next_token_shard(read, args.seq_len, align=align)
            result = train_step(model, optimizer, inputs.to(device), targets.to(device),
                                layout=layout, max_grad_norm=args.max_grad_norm,
                                autocast_dtype=dtype)
            step += 1
            seconds = time.perf_counter() - began
            if rank == 0:
                record = {"step": step, "loss": round(result["loss"], 5),
                          "lr": optimizer.param_groups[0]["lr"], "grad_norm": result["grad_norm"],
                          "tokens_per_s": round(span / seconds, 1), "ranks": world}
                with open(args.out / "log.jsonl", "a") as log:
                    log.write(json.dumps(record) + "\n")
                if progress is not None:
                    progress.update(task, completed=step,
                                    status=f"loss {result['loss']:.4f}  {span / seconds:,.0f} tok/s")
                elif step % 10 == 0 or step == args.steps:
                    print(json.dumps(record), file=sys.stderr)
            if step % args.save_every == 0 and rank == 0:
                save_checkpoint(checkpoint, model, optimizer, step, args)
    except KeyboardInterrupt:
        if rank == 0:
            print(f"\nstopped at step {step}: checkpoint saved; run the same command to go on",
                  file=sys.stderr)
        return 130
    finally:
        if progress is not None:
            progress.stop()
        if rank == 0:
            save_checkpoint(checkpoint, model, optimizer, step, args)
    if rank == 0:
        save_hf_folder(model, args.out / "final")
    return 0


if __name__ == "__main__":
    sys.exit(main())
