"""``train()``: the training loop.

AdamW with linear warmup and cosine decay, gradient accumulation, checkpoints (trainable
weights, optimizer, scheduler, RNG, data position) written atomically that resume
exactly after Ctrl-C or a kill, the signal guard that keeps an optimizer update whole,
validation perplexity before and after, and the progress it reports.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

import vault
from longnet.device import autocast
from longnet.memory.state import _fsync_dir, _fsync_file
from longnet.model import LongNetLM
from longnet.training.adapters import GATE_PARAMETER, prepare_model, trainable_state
from longnet.training.config import (
    _RUN_DEFINING,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
)
from longnet.training.curriculum import RecallSource, WindowPlan, holdout_tokens, stream_digest
from longnet.training.losses import CheckpointedBlocks, keep_heap_small, perplexity, window_loss

CHECKPOINT_FILE = "checkpoint.pt"


# --------------------------------------------------------------------------- schedule


def lr_factor(step: int, warmup: int, total: int, floor: float = 0.1) -> float:
    """Linear warmup to 1, then cosine decay to ``floor`` at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, trainable: dict[str, nn.Parameter], config: TrainConfig):
    gates = [p for n, p in trainable.items() if n.rsplit(".", 1)[-1] == GATE_PARAMETER]
    no_decay = [p for n, p in trainable.items()
                if n.rsplit(".", 1)[-1] != GATE_PARAMETER and (p.ndim < 2 or "norm" in n)]
    decay = [p for n, p in trainable.items()
             if n.rsplit(".", 1)[-1] != GATE_PARAMETER and not (p.ndim < 2 or "norm" in n)]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0},
              {"params": gates, "weight_decay": 0.0, "lr": config.gate_lr}]
    groups = [g for g in groups if g["params"]]
    for g in groups:
        g.setdefault("lr", config.lr)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.95), eps=1e-8)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, config.warmup_steps, config.steps))
    return optimizer, scheduler


# --------------------------------------------------------------------------- checkpoints


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temp file, fsync, rename over ``path``, fsync the folder: a kill
    at any moment leaves the previous file whole."""
    path = Path(path)
    files = vault.files_for(path)
    if files.encrypted:
        files.save_torch(obj, path)  # (the same steps, through the vault)
        return
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, temp)
    _fsync_file(temp)
    os.replace(temp, path)
    _fsync_dir(path.parent)


def load_torch_file(path: Path):
    """``torch.load`` of a file written by ``atomic_torch_save`` (on the CPU)."""
    files = vault.files_for(path)
    if files.encrypted:
        return files.load_torch(path)
    return torch.load(path, map_location="cpu", weights_only=False)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(out_dir) -> dict | None:
    """The checkpoint in ``out_dir`` (on the CPU), or None."""
    path = Path(out_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        return load_torch_file(path)
    except vault.VaultError:
        raise
    except Exception as error:  # noqa: BLE001 (any unreadable file is the same problem)
        raise TrainingError(f"{path} is damaged ({error}); start again with a fresh run") from None


# --------------------------------------------------------------------------- the loop


@dataclass
class TrainProgress:
    phase: str  # "validate-before" | "train" | "validate-after" | "done"
    step: int
    steps: int
    loss: float | None = None
    lr: float | None = None
    tokens_per_s: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    kind: str | None = None  # what the last window was: "text", "entry", "passkey"


@dataclass
class TrainResult:
    config: TrainConfig
    steps: int
    train_tokens: int  # the training part of the stream
    validation_tokens: int
    tokens_seen: int  # window tokens read by the optimizer steps
    seconds: float  # wall time of the whole run, over every resume
    ppl_before: float | None
    ppl_after: float | None
    losses: list[float] = field(default_factory=list)
    recall_windows: int = 0
    stream_sha256: str = ""
    base_weights_hash: str = ""
    forward_tokens_per_s: float | None = None  # of the validation pass (no grad)
    resumed_from: int = 0


class _StopGuard:
    """Turns SIGINT/SIGTERM into KeyboardInterrupt, except inside the optimizer update,
    where it is held until the update is whole (a half-updated model is never saved)."""

    def __init__(self):
        self.critical = False
        self.pending = False
        self.previous = {}

    def _handler(self, signum, frame):
        if self.critical:
            self.pending = True
        else:
            raise KeyboardInterrupt

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handler)
        except ValueError:  # not the main thread: signals stay as they are
            self.previous = {}
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def begin_update(self):
        self.critical = True

    def end_update(self):
        self.critical = False
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt


def train(model: LongNetLM, tokens, config: TrainConfig, out_dir, *,
          recall: RecallSource | None = None, resume: bool = True,
          progress: Callable[[TrainProgress], None] | None = None) -> TrainResult:
    """Train ``model`` (in place) on ``tokens`` (1-D ids; a memmap is fine).

    The last ``validation_tokens`` are held out for perplexity. ``out_dir`` holds the
    checkpoint; with ``resume`` a checkpoint of the same run (settings, data, base
    weights) is continued, one of another run is an error. Ctrl-C / SIGTERM write a
    checkpoint at the last whole step and raise ``TrainingInterrupted``.
    """
    config = config.resolve()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device, dtype = torch.device(config.device), config.torch_dtype
    tokens_total = len(tokens)
    vocab = model.config.vocab_size
    if tokens_total < 16:
        raise TrainingError(f"the stream holds {tokens_total} tokens: too little to train on")
    if tokens_total and int(np.max(tokens)) >= vocab:
        raise TrainingError(f"the stream holds token ids >= the model's vocabulary ({vocab}): "
                            "it was made with another tokenizer")
    validation = holdout_tokens(tokens_total, config)
    train_end = tokens_total - validation
    seq_len = min(config.seq_len, train_end - 1)
    config.seq_len = seq_len  # shorter than asked for a short stream: one window is all of it
    if seq_len < 8:
        raise TrainingError(f"only {train_end} tokens to train on after holding out "
                            f"{validation} for validation")

    base_hash = model.weights_hash
    fingerprint = {"config": {k: getattr(config, k) for k in _RUN_DEFINING},
                   "stream_tokens": tokens_total, "train_tokens": train_end, "validation_tokens": validation,
                   "stream_sha256": stream_digest(tokens, tokens_total),
                   "base_weights_hash": base_hash, "full": config.full,
                   "recall": recall is not None}

    if device.type == "cpu":
        keep_heap_small()
    model.to(device)
    trainable = prepare_model(model, config)
    if not trainable:
        raise TrainingError("nothing to train: the model has no level gates and LoRA is off")
    optimizer, scheduler = make_optimizer(model, trainable, config)
    plan = WindowPlan(tokens, train_end, seq_len, config.seed, recall, config.recall_ratio)
    validation_part = tokens[train_end:]

    saved = read_checkpoint(out_dir) if resume else None
    if saved is not None and saved.get("fingerprint") != fingerprint:
        differing = sorted(k for k in fingerprint if saved.get("fingerprint", {}).get(k)
                           != fingerprint[k])
        raise TrainingError(f"the checkpoint in {out_dir} belongs to another run (different "
                            f"{', '.join(differing)}): resume with the same settings, or start "
                            "a fresh run")
    notify = progress or (lambda _p: None)
    if saved is not None:
        missing = set(trainable) - set(saved["trainable"])
        if missing:
            raise TrainingError(f"the checkpoint lacks {sorted(missing)[:3]}: start a fresh run")
        with torch.no_grad():
            for name, p in trainable.items():
                p.copy_(saved["trainable"][name].to(p.device, p.dtype))
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"])
        state = saved["state"]
    else:
        torch.manual_seed(config.seed)
        state = {"step": 0, "seconds": 0.0, "tokens_seen": 0, "losses": [], "recall_windows": 0,
                 "ppl_before": None, "ppl_after": None, "forward_tokens_per_s": None,
                 "done": False}
    resumed_from = state["step"]

    def save(rng):
        atomic_torch_save({"fingerprint": fingerprint, "trainable": trainable_state(model),
                           "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "rng": rng, "state": state,
                           "config": asdict(config)}, out_dir / CHECKPOINT_FILE)

    session_start = time.perf_counter()
    seconds_before = state["seconds"]

    def elapsed():
        return seconds_before + time.perf_counter() - session_start

    model.train()
    step_rng = _rng_state()
    with _StopGuard() as guard, CheckpointedBlocks(model, config.gradient_checkpointing):
        try:
            if state["step"] == 0 and state["ppl_before"] is None and validation > 1:
                notify(TrainProgress("validate-before", 0, config.steps, elapsed_s=elapsed()))
                began = time.perf_counter()
                state["ppl_before"] = perplexity(model, validation_part, seq_len, device, dtype,
                                                 config.loss_chunk)
                spent = time.perf_counter() - began
                state["forward_tokens_per_s"] = validation / spent if spent > 0 else None
                state["seconds"] = elapsed()
                save(_rng_state())

            session_tokens, session_steps_start = 0, state["step"]
            loop_start = time.perf_counter()
            while state["step"] < config.steps:
                optimizer.zero_grad(set_to_none=True)
                step_loss, kind, recall_windows = 0.0, None, 0
                for micro in range(state["step"] * config.accumulate,
                                   (state["step"] + 1) * config.accumulate):
                    window = plan.window(micro)
                    kind = window.kind
                    ids = torch.as_tensor(window.input_ids, device=device)
                    targets = torch.as_tensor(window.targets, device=device)
                    mask = torch.as_tensor(window.mask, device=device)
                    count = max(1, int(mask.sum()))
                    with autocast(device, dtype):
                        loss = window_loss(model, ids, targets, mask, config.loss_chunk,
                                           config.gradient_checkpointing) / count
                    (loss / config.accumulate).backward()
                    step_loss += float(loss.detach()) / config.accumulate
                    session_tokens += len(ids)
                    recall_windows += kind != "text"
                guard.begin_update()
                if config.grad_clip:
                    torch.nn.utils.clip_grad_norm_(trainable.values(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                state["step"] += 1
                state["tokens_seen"] += config.accumulate * seq_len
                state["losses"].append(round(step_loss, 5))
                state["recall_windows"] += recall_windows
                state["seconds"] = elapsed()
                step_rng = _rng_state()  # where the next step begins
                guard.end_update()
                spent = time.perf_counter() - loop_start
                rate = session_tokens / spent if spent > 0 else None
                per_step = spent / max(1, state["step"] - session_steps_start)
                notify(TrainProgress("train", state["step"], config.steps, step_loss,
                                     scheduler.get_last_lr()[0], rate, elapsed(),
                                     per_step * (config.steps - state["step"]), kind))
                if state["step"] % config.checkpoint_every == 0 or state["step"] == config.steps:
                    save(_rng_state())
        except KeyboardInterrupt:
            # Parameters and optimizer are those of the last whole step; its data and RNG
            # are where that step began.
            guard.critical = True  # a second Ctrl-C must not cut the save short
            state["seconds"] = elapsed()
            if state["step"] > resumed_from or saved is None:
                save(step_rng if state["step"] < config.steps else _rng_state())
            raise TrainingInterrupted(state["step"], config.steps) from None

        if not state["done"]:
            if validation > 1:
                notify(TrainProgress("validate-after", config.steps, config.steps,
                                     elapsed_s=elapsed()))
                state["ppl_after"] = perplexity(model, validation_part, seq_len, device, dtype,
                                                config.loss_chunk)
            state["done"] = True
            state["seconds"] = elapsed()
            save(_rng_state())
    model.eval()
    notify(TrainProgress("done", config.steps, config.steps, elapsed_s=state["seconds"]))
    return TrainResult(config=config, steps=state["step"], train_tokens=train_end,
                       validation_tokens=validation, tokens_seen=state["tokens_seen"],
                       seconds=round(state["seconds"], 2), ppl_before=state["ppl_before"],
                       ppl_after=state["ppl_after"], losses=list(state["losses"]),
                       recall_windows=state["recall_windows"],
                       stream_sha256=fingerprint["stream_sha256"], base_weights_hash=base_hash,
                       forward_tokens_per_s=state["forward_tokens_per_s"],
                       resumed_from=resumed_from)
