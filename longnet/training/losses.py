"""The loss of one window and what keeps it affordable.

``window_loss`` takes the next-token loss of one window a chunk of rows at a time (the
logits of a 64K window would take 12 GB), ``perplexity`` reads held-out text with it;
``CheckpointedBlocks`` recomputes each block's activations in the backward pass and
``keep_heap_small`` keeps the CPU heap from holding freed activations.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from longnet.device import autocast
from longnet.model import LongNetLM

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
