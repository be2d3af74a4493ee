"""The settings of a training run (``TrainConfig``, with its defaults per device) and
the two ways a run ends early (``TrainingError``, ``TrainingInterrupted``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch

from longnet.device import choose_device


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
