"""Fine-tuning a ``LongNetLM`` on one long token stream (a person's own notes).

Next-token training with the dilated model over long windows (default 16K tokens on
the CPU, 64K on a GPU), so that the far levels see real distances:

- LoRA adapters (peft) on the attention projections plus the level gates by default;
  ``full=True`` trains every weight instead.
- Per-block gradient checkpointing, a chunked loss (the logits of a 64K window would
  take 12 GB), bf16 autocast on CUDA (fp32 on the CPU: without native bf16 matmul it
  is slower there), gradient accumulation, AdamW with linear warmup + cosine decay.
- A recall curriculum: a stated share of the windows are synthetic long-range recall
  examples (a fact placed in the first half of the window, a question and its answer
  at the end, loss on the answer only), built from ``RecallItem``s the caller makes
  from the user's own entries and passkeys.
- A held-out tail of the stream for validation perplexity, before and after.
- Checkpoints every N steps (trainable weights, optimizer, scheduler, RNG, data
  position; written to a temp file, fsynced, renamed) that resume exactly after
  Ctrl-C or a kill: which window a micro-step reads is a pure function of (seed,
  micro-step), so a resumed run sees the data an uninterrupted one would.

The result is an adapter (``save_adapter`` / ``load_adapter``): the LoRA factors and
gates (or all weights for ``full``), merged into a fresh model at load time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from longnet.memory import _fsync_dir, _fsync_file
from longnet.model import LongNetLM, autocast, choose_device

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
CHECKPOINT_FILE = "checkpoint.pt"
ADAPTER_WEIGHTS = "adapter.safetensors"
ADAPTER_META = "adapter.json"
ADAPTER_FORMAT = 1
GATE_PARAMETER = "level_bias"


class TrainingError(RuntimeError):
    """Training cannot run as asked (too little data, a checkpoint of another run, ...)."""


class TrainingInterrupted(Exception):
    """Ctrl-C (or SIGTERM) stopped training; a checkpoint at ``step`` was written."""

    def __init__(self, step: int, steps: int):
        super().__init__(f"training stopped at step {step}/{steps}; checkpoint saved")
        self.step, self.steps = step, steps


# --------------------------------------------------------------------------- settings


def default_seq_len(device: torch.device) -> int:
    return 65536 if device.type == "cuda" else 16384


@dataclass
class TrainConfig:
    steps: int = 100
    seq_len: int | None = None  # default: 16,384 on the CPU, 65,536 on CUDA
    accumulate: int = 1  # micro-steps (windows) per optimizer step
    lr: float | None = None  # default 2e-4 for LoRA, 2e-5 for full
    # Gates of a pretrained model start at -8; Adam moves a parameter about lr per step, so
    # the default lets them travel ~8 over the run: max(0.05, 8 / steps).
    gate_lr: float | None = None
    warmup_steps: int | None = None  # default 5% of the steps (at least 1)
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    lora_rank: int = 16
    lora_alpha: float | None = None  # default 2 x rank
    lora_dropout: float = 0.0
    full: bool = False
    train_gates: bool = True
    recall_ratio: float = 0.25  # share of windows that are recall examples (with a source)
    validation_tokens: int | None = None  # default min(seq_len, 10% of the stream)
    checkpoint_every: int = 25
    gradient_checkpointing: bool = True
    loss_chunk: int = 4096  # rows of logits alive at once
    seed: int = 0
    device: str | None = None
    dtype: str | None = None  # default bf16 on CUDA, fp32 on the CPU

    def resolve(self) -> TrainConfig:
        """A copy with every default filled in for the chosen device."""
        device = choose_device(self.device)
        values = asdict(self)
        values["device"] = str(device)
        values["seq_len"] = int(self.seq_len or default_seq_len(device))
        values["lr"] = float(self.lr if self.lr is not None else (2e-5 if self.full else 2e-4))
        values["lora_alpha"] = float(self.lora_alpha or 2 * self.lora_rank)
        values["gate_lr"] = float(self.gate_lr if self.gate_lr is not None
                                  else max(0.05, 8.0 / self.steps))
        values["warmup_steps"] = int(self.warmup_steps if self.warmup_steps is not None
                                     else max(1, round(0.05 * self.steps)))
        if self.dtype in (None, "auto"):
            values["dtype"] = "bfloat16" if device.type == "cuda" else "float32"
        resolved = TrainConfig(**values)
        resolved.check()
        return resolved

    def check(self) -> None:
        problems = []
        if self.steps < 1:
            problems.append("steps must be >= 1")
        if self.seq_len is not None and self.seq_len < 8:
            problems.append("seq_len must be >= 8")
        if self.accumulate < 1:
            problems.append("accumulate must be >= 1")
        if self.checkpoint_every < 1:
            problems.append("checkpoint_every must be >= 1")
        if not 0.0 <= self.recall_ratio <= 1.0:
            problems.append("recall_ratio must lie in [0, 1]")
        if self.lora_rank < 1:
            problems.append("lora_rank must be >= 1")
        if self.dtype not in (None, "auto", "float32", "bfloat16", "float16"):
            problems.append(f"dtype must be float32, bfloat16 or float16, not {self.dtype!r}")
        if problems:
            raise TrainingError("invalid training settings: " + "; ".join(problems))

    @property
    def torch_dtype(self) -> torch.dtype:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16,
                "float16": torch.float16}[self.dtype or "float32"]

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Settings that change what an optimizer step computes: a checkpoint made with other
# values cannot be resumed into this run.
_RUN_DEFINING = ("steps", "seq_len", "accumulate", "lr", "gate_lr", "warmup_steps",
                 "weight_decay", "grad_clip", "lora_rank", "lora_alpha", "lora_dropout", "full",
                 "train_gates", "recall_ratio", "validation_tokens", "seed", "dtype")


# --------------------------------------------------------------------------- the model


def gate_parameters(model: LongNetLM) -> dict[str, nn.Parameter]:
    """The level gates by parameter name (empty when the model has none)."""
    return {name: p for name, p in model.named_parameters()
            if name.rsplit(".", 1)[-1] == GATE_PARAMETER}


def add_lora(model: LongNetLM, rank: int, alpha: float, dropout: float = 0.0) -> LongNetLM:
    """Wrap every attention projection in a peft LoRA layer (in place). B starts at 0,
    so the model computes exactly what it did before."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        target_modules=list(LORA_TARGETS), bias="none")
    return inject_adapter_in_model(config, model)


def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA layer into its base weight and put the plain ``nn.Linear`` back,
    so the model is the original architecture again. Returns how many were merged."""
    from peft.tuners.lora import LoraLayer

    merged = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, LoraLayer):
            continue
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
        merged += 1
    return merged


def prepare_model(model: LongNetLM, config: TrainConfig) -> dict[str, nn.Parameter]:
    """Make exactly the parameters this run trains require grad; returns them by name."""
    if config.full:
        for p in model.parameters():
            p.requires_grad_(True)
        if not config.train_gates:
            for p in gate_parameters(model).values():
                p.requires_grad_(False)
    else:
        for p in model.parameters():
            p.requires_grad_(False)
        torch.manual_seed(config.seed)  # LoRA A's initialisation
        add_lora(model, config.lora_rank, config.lora_alpha, config.lora_dropout)
        for name, p in model.named_parameters():
            p.requires_grad_("lora_" in name)
        if config.train_gates:
            for p in gate_parameters(model).values():
                p.requires_grad_(True)
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the parameters that require grad (tied weights once)."""
    state, seen = {}, set()
    for name, p in model.named_parameters():
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            state[name] = p.detach().to("cpu", copy=True).contiguous()
    return state


_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
HEAP_BLOCK_LIMIT = 4 << 20  # bytes: blocks this big or bigger get a mapping of their own


def keep_heap_small(limit: int = HEAP_BLOCK_LIMIT) -> bool:
    """Have glibc serve every CPU allocation of ``limit`` bytes or more with a mapping of its
    own, given back to the system when freed. By default glibc raises that limit (up to
    32 MB) each time a big block is freed, after which a training step's 5-30 MB
    activations come from the heap, whose freed holes it keeps: an 8K-token step of
    SmolLM2-135M then peaked at 13.5 GiB of RSS against 3.9 GiB with this
    (``bench/results/train-cpu.txt``), in the same time. Not used for reading a memory:
    there the fresh mappings' page faults made a 16K-token build 54 % slower to save
    0.7 GiB. True if set; False where the C library is not glibc (nothing changes there)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        return bool(libc is not None and libc.mallopt(_M_MMAP_THRESHOLD, int(limit)))
    except (OSError, AttributeError):  # no C library found, or one without mallopt
        return False


class CheckpointedBlocks:
    """Recompute each block's activations in the backward pass instead of keeping them
    (per-block ``torch.utils.checkpoint``), without touching the model's code: the
    blocks' ``forward`` is wrapped for the duration."""

    def __init__(self, model: LongNetLM, enabled: bool):
        self.model, self.enabled = model, enabled

    def __enter__(self):
        if self.enabled:
            for block in self.model.layers:
                plain = type(block).forward.__get__(block)
                block.forward = (lambda x, attend, _f=plain:
                                 checkpoint(_f, x, attend, use_reentrant=False)
                                 if torch.is_grad_enabled() else _f(x, attend))
        return self

    def __exit__(self, *exc):
        if self.enabled:
            for block in self.model.layers:
                block.__dict__.pop("forward", None)


def hidden_states(model: LongNetLM, input_ids: torch.Tensor, attend_for_layer=None
                  ) -> torch.Tensor:
    """The last hidden states ``[B, T, H]`` of one window starting at position 0, read
    with the model's dilated attention unless ``attend_for_layer`` says otherwise."""
    if attend_for_layer is None:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        attend_for_layer = model.dilated_attend(positions)
    return model.run_layers(input_ids, attend_for_layer, logits=False)


def _chunk_loss(lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(lm_head(hidden).float(), targets, reduction="sum")


def window_loss(model: LongNetLM, input_ids: torch.Tensor, targets: torch.Tensor,
                mask: torch.Tensor, chunk: int = 4096, checkpointed: bool = True,
                attend_for_layer=None) -> torch.Tensor:
    """Summed next-token loss over the rows where ``mask`` is true (one window, B=1).

    Only masked rows go through the LM head, a chunk at a time; with ``checkpointed``
    each chunk's logits are recomputed in the backward pass rather than kept."""
    hidden = hidden_states(model, input_ids[None], attend_for_layer)[0]
    rows = mask.nonzero().squeeze(1)
    hidden, targets = hidden[rows], targets[rows]
    total = hidden.new_zeros((), dtype=torch.float32)
    for begin in range(0, rows.numel(), chunk):
        piece = (hidden[begin:begin + chunk], targets[begin:begin + chunk])
        if checkpointed and torch.is_grad_enabled():
            total = total + checkpoint(_chunk_loss, model.lm_head, *piece, use_reentrant=False)
        else:
            total = total + _chunk_loss(model.lm_head, *piece)
    return total


@torch.no_grad()
def perplexity(model: LongNetLM, tokens, seq_len: int, device=None,
               dtype: torch.dtype = torch.float32, chunk: int = 4096) -> float | None:
    """Perplexity of ``tokens`` read in consecutive windows of ``seq_len`` (each from
    position 0); None when there is nothing to score. Zero ids (forgotten text) are
    not scored."""
    device = torch.device(device) if device is not None else model.device
    was_training = model.training
    model.eval()  # no LoRA dropout while measuring
    total, count = 0.0, 0
    for begin in range(0, max(0, len(tokens) - 1), seq_len):
        window = torch.as_tensor(np.asarray(tokens[begin:begin + seq_len + 1], dtype=np.int64),
                                 device=device)
        if window.numel() < 2:
            break
        targets = window[1:]
        mask = targets != 0
        if not bool(mask.any()):
            continue
        with autocast(device, dtype):
            total += float(window_loss(model, window[:-1], targets, mask, chunk, False))
        count += int(mask.sum())
    model.train(was_training)
    return math.exp(total / count) if count else None


# --------------------------------------------------------------------------- data


@dataclass
class RecallItem:
    """One synthetic recall example: ``fact`` goes far back in the window, ``prompt``
    then ``answer`` close it; the loss is taken on ``answer`` alone."""

    fact: np.ndarray
    prompt: np.ndarray
    answer: np.ndarray
    kind: str = "entry"


RecallSource = Callable[[np.random.Generator], RecallItem]


@dataclass
class Window:
    input_ids: np.ndarray  # [T]
    targets: np.ndarray  # [T]
    mask: np.ndarray  # [T] bool: rows that count in the loss
    kind: str  # "text" or the recall item's kind


def _ids(values) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def recall_window(item: RecallItem, filler: np.ndarray, seq_len: int,
                  rng: np.random.Generator) -> Window:
    """Filler text with the fact spliced into the window's first half and the question
    and answer at the end (the window holds ``seq_len + 1`` tokens)."""
    fact, prompt, answer = _ids(item.fact), _ids(item.prompt), _ids(item.answer)
    tail = np.concatenate([prompt, answer])
    if not recall_fits(item, seq_len):
        raise TrainingError(f"a recall example ({len(fact)} + {len(tail)} tokens) does not fit "
                            f"a window of {seq_len} tokens")
    fact = fact[:(seq_len + 1) // 2]  # a short window keeps the fact's start
    room = seq_len + 1 - len(tail) - len(fact)
    place = int(rng.integers(0, room // 2 + 1))  # first half: far from the question
    filler = _ids(filler)[:room]
    if len(filler) < room:  # a stream shorter than the window: repeat it
        filler = np.resize(filler, room) if len(filler) else np.zeros(room, np.int64)
    sequence = np.concatenate([filler[:place], fact, filler[place:], tail])
    mask = np.zeros(seq_len, dtype=bool)
    mask[seq_len - len(answer):] = True
    return Window(sequence[:-1], sequence[1:], mask, item.kind)


def recall_fits(item: RecallItem, seq_len: int) -> bool:
    """Whether a window of ``seq_len`` holds the question and answer in its second half
    (the fact is cut to the first half when it is longer)."""
    return 0 < len(item.answer) and len(item.prompt) + len(item.answer) <= seq_len // 2


class WindowPlan:
    """Which window micro-step ``m`` trains on: a pure function of (seed, m).

    Text windows go through the training part in a shuffled order per epoch (a random
    offset per epoch, so window boundaries move); a share ``recall_ratio`` of the
    micro-steps are recall examples instead."""

    def __init__(self, tokens, train_end: int, seq_len: int, seed: int,
                 recall: RecallSource | None = None, recall_ratio: float = 0.0):
        self.tokens, self.train_end, self.seq_len, self.seed = tokens, train_end, seq_len, seed
        self.recall = recall
        self.recall_ratio = recall_ratio if recall is not None else 0.0
        self.windows = max(1, (train_end - 1) // seq_len)
        self.spare = max(0, train_end - 1 - self.windows * seq_len)

    def text_start(self, micro: int) -> int:
        epoch, index = divmod(micro, self.windows)
        rng = np.random.default_rng([self.seed, epoch, 1])
        order = rng.permutation(self.windows)
        offset = int(rng.integers(0, self.spare + 1))
        return offset + int(order[index]) * self.seq_len

    def window(self, micro: int) -> Window:
        rng = np.random.default_rng([self.seed, micro, 2])
        wants_recall = self.recall_ratio and rng.random() < self.recall_ratio
        item = self.recall(rng) if wants_recall else None
        if item is not None and recall_fits(item, self.seq_len):  # else: a text window
            start = int(rng.integers(0, max(1, self.train_end - self.seq_len)))
            filler = np.asarray(self.tokens[start:min(self.train_end, start + self.seq_len)])
            return recall_window(item, filler, self.seq_len, rng)
        start = self.text_start(micro)
        ids = _ids(self.tokens[start:start + self.seq_len + 1])
        targets = ids[1:]
        return Window(ids[:-1], targets, targets != 0, "text")  # 0 = forgotten text


def stream_digest(tokens, end: int | None = None) -> str:
    """sha256 of token ids [0, end) as little-endian uint32 (what a run trained on)."""
    digest = hashlib.sha256()
    end = len(tokens) if end is None else end
    for begin in range(0, end, 1 << 20):
        digest.update(np.asarray(tokens[begin:min(end, begin + (1 << 20))], dtype="<u4").tobytes())
    return digest.hexdigest()


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
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, temp)
    _fsync_file(temp)
    os.replace(temp, path)
    _fsync_dir(path.parent)


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
        return torch.load(path, map_location="cpu", weights_only=False)
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


def holdout_tokens(total: int, config: TrainConfig) -> int:
    """How many tokens at the end of a stream of ``total`` are held out for validation:
    ``validation_tokens``, by default one window capped at 10% of the stream."""
    config = config if config.seq_len else config.resolve()
    validation = config.validation_tokens
    if validation is None:
        validation = min(config.seq_len, total // 10)
    return max(0, min(int(validation), total // 2))


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


# --------------------------------------------------------------------------- adapters


def save_adapter(model: nn.Module, directory, config: TrainConfig, metadata: dict) -> Path:
    """Write what training changed (LoRA factors and gates, or every weight for a full
    run) to ``directory``: ``adapter.safetensors`` then ``adapter.json`` (each via a temp
    file, fsync and rename; the json, written last, names the weights' sha256)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = trainable_state(model)
    temp = directory / f".{ADAPTER_WEIGHTS}.{os.getpid()}.tmp"
    save_file(tensors, str(temp))
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    digest = _file_sha256(temp)
    os.replace(temp, directory / ADAPTER_WEIGHTS)
    meta = {"format": ADAPTER_FORMAT, "kind": "full" if config.full else "lora",
            "lora": None if config.full else {"rank": config.lora_rank,
                                              "alpha": config.lora_alpha,
                                              "dropout": config.lora_dropout,
                                              "targets": list(LORA_TARGETS)},
            "gates": sorted(n for n in tensors if n.rsplit(".", 1)[-1] == GATE_PARAMETER),
            "adapter_sha256": digest, **metadata}
    meta_temp = directory / f".{ADAPTER_META}.{os.getpid()}.tmp"
    meta_temp.write_text(json.dumps(meta, indent=2))
    with open(meta_temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(meta_temp, directory / ADAPTER_META)
    _fsync_dir(directory)
    return directory


def read_adapter_meta(directory) -> dict | None:
    path = Path(directory) / ADAPTER_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_adapter(model: LongNetLM, directory, merge: bool = True) -> dict:
    """Put a saved adapter onto ``model`` (freshly loaded base weights) in place and
    return its metadata. ``merge`` folds LoRA into the weights (plain architecture, no
    extra cost per token); otherwise the peft layers stay in the model."""
    from safetensors.torch import load_file

    directory = Path(directory)
    meta = read_adapter_meta(directory)
    if meta is None or meta.get("format") != ADAPTER_FORMAT:
        raise TrainingError(f"no readable adapter in {directory}")
    weights = directory / ADAPTER_WEIGHTS
    if not weights.is_file() or _file_sha256(weights) != meta.get("adapter_sha256"):
        raise TrainingError(f"{weights} is missing or does not match {ADAPTER_META}")
    tensors = load_file(str(weights), device=str(model.device))
    if meta["kind"] == "lora" and merge:
        _merge_lora_tensors(model, tensors, meta["lora"], directory)
    else:
        if meta["kind"] == "lora":
            lora = meta["lora"]
            add_lora(model, lora["rank"], lora["alpha"], 0.0)
        _copy_parameters(model, tensors, directory)
    for p in model.parameters():
        p.requires_grad_(False)
    return meta


def _copy_parameters(model: nn.Module, tensors: dict, directory) -> None:
    params = dict(model.named_parameters())
    unknown = sorted(set(tensors) - set(params))
    if unknown:
        raise TrainingError(f"the adapter in {directory} does not fit this model "
                            f"(unknown {unknown[:3]})")
    with torch.no_grad():
        for name, tensor in tensors.items():
            if params[name].shape != tensor.shape:
                raise TrainingError(f"the adapter's {name} has shape {tuple(tensor.shape)}, "
                                    f"the model's {tuple(params[name].shape)}")
            params[name].copy_(tensor.to(params[name].dtype))


def _merge_lora_tensors(model: nn.Module, tensors: dict, lora: dict, directory) -> None:
    """W += (alpha / r) · B A for each adapted projection, and the gates copied: what
    peft's merge computes for plain LoRA, without importing peft (~5 s) at every
    start of the assistant."""
    scale = float(lora["alpha"]) / int(lora["rank"])
    factors, others = {}, {}
    for name, tensor in tensors.items():
        if ".lora_A." in name or ".lora_B." in name:
            prefix, which = name.split(".lora_")[0], name.split(".lora_")[1][0]
            factors.setdefault(prefix, {})[which] = tensor
        else:
            others[name] = tensor
    updates = []
    for prefix, pair in sorted(factors.items()):
        try:
            module = model.get_submodule(prefix)
        except AttributeError:
            module = None
        if not isinstance(module, nn.Linear) or set(pair) != {"A", "B"}:
            raise TrainingError(f"the adapter in {directory} does not fit this model ({prefix})")
        delta = pair["B"].float() @ pair["A"].float()
        if delta.shape != module.weight.shape:
            raise TrainingError(f"the adapter's {prefix} update has shape {tuple(delta.shape)}, "
                                f"the model's weight {tuple(module.weight.shape)}")
        updates.append((module, delta))
    _copy_parameters(model, others, directory)  # checks the gates before anything changes
    with torch.no_grad():
        for module, delta in updates:
            module.weight += (scale * delta).to(module.weight.dtype)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


__all__ = [
    "LORA_TARGETS",
    "CheckpointedBlocks",
    "RecallItem",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "TrainingError",
    "TrainingInterrupted",
    "WindowPlan",
    "add_lora",
    "default_seq_len",
    "gate_parameters",
    "holdout_tokens",
    "load_adapter",
    "merge_lora",
    "perplexity",
    "prepare_model",
    "read_adapter_meta",
    "recall_window",
    "save_adapter",
    "stream_digest",
    "train",
    "trainable_state",
    "window_loss",
]
