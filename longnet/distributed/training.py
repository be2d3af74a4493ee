"""``LongNetLM`` over a sequence split across ranks: the sharded forward, its
next-token loss, the sum of the replicated parameters' gradients, one training step, and
each rank's slice of the training data.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from longnet.distributed.attention import dilated_attention
from longnet.distributed.process import (
    ShardLayout,
    _active,
    _comm_device,
    _rank_and_size,
    shard_layout,
    split_lengths,
)

# --------------------------------------------------------------------------- the model


def _layer_bias(model, index: int):
    return getattr(model.layers[index].self_attn, "level_bias", None)


def sharded_forward(model, input_ids: torch.Tensor, *, layout: ShardLayout | None = None,
                    group=None, logits: bool = True) -> torch.Tensor:
    """``LongNetLM`` over a sequence split across ranks: this rank's ``input_ids [B, n]``
    (absolute positions ``layout.start ..``) → its logits ``[B, n, V]`` (or the final
    hidden states), equal to the rows of ``model(whole_sequence)``."""
    if layout is None:
        layout = shard_layout(input_ids.shape[1], group, device=input_ids.device)
    c = model.config
    positions = torch.arange(layout.start, layout.end, device=input_ids.device)

    def attend_for_layer(index):
        bias = _layer_bias(model, index)

        def attend(q, k, v):
            rotary = model.rotary
            if c.position_mode == "absolute":
                q, k, rotary = model.rotary(q, positions), model.rotary(k, positions), None
            return dilated_attention(q, k, v, c.segment_lengths, c.dilation_rates, is_causal=True,
                                     group=group, rotary=rotary, level_bias=bias, layout=layout,
                                     local_window=c.local_window,
                                     attention_sinks=c.attention_sinks)

        return attend

    return model.run_layers(input_ids, attend_for_layer, logits=logits)


def next_token_shard(read: Callable[[int, int], torch.Tensor], total: int, group=None, *,
                     align: int = 1) -> tuple[torch.Tensor, torch.Tensor, ShardLayout]:
    """This rank's part of next-token training on sequences of ``total + 1`` tokens:
    ``read(start, end)`` returns tokens [start, end) (``[T]`` or ``[B, T]``; each rank
    reads only its slice plus one token). Returns ``(inputs, targets, layout)``: inputs
    are tokens [a, b), targets tokens [a+1, b+1), the shards cut by
    ``split_lengths(total, world, align=align)``. No communication."""
    rank, world = _rank_and_size(group)
    layout = ShardLayout(split_lengths(total, world, align=align), rank)
    tokens = torch.as_tensor(read(layout.start, layout.end + 1), dtype=torch.long)
    if tokens.shape[-1] != layout.local_length + 1:
        raise ValueError(f"read({layout.start}, {layout.end + 1}) gave {tokens.shape[-1]} tokens")
    return tokens[..., :-1], tokens[..., 1:], layout


def sequence_parallel_loss(model, inputs: torch.Tensor, targets: torch.Tensor, *,
                           layout: ShardLayout | None = None, group=None,
                           ignore_index: int = -100) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token cross-entropy of a sequence split across ranks. ``inputs, targets``:
    this rank's ``[B, n]``. Returns ``(local_loss, mean_loss)``: backpropagate
    ``local_loss`` (this rank's summed loss over the global target count, so the sum
    over ranks is the mean); ``mean_loss`` is that global mean (detached, same on every
    rank)."""
    if inputs.dim() == 1:
        inputs, targets = inputs[None], targets[None]
    logits = sharded_forward(model, inputs, layout=layout, group=group)
    logits = logits if logits.dtype == torch.float64 else logits.float()
    summed = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                             ignore_index=ignore_index, reduction="sum")
    counts = torch.stack([(targets != ignore_index).sum().to(torch.float64),
                          summed.detach().to(torch.float64)])
    if _active(group):
        device = _comm_device(group, counts.device)
        moved = counts.to(device)
        dist.all_reduce(moved, group=group)
        counts = moved.to(counts.device)
    total = counts[0].clamp_min(1)
    return summed / total.to(summed.dtype), counts[1] / total


def all_reduce_gradients(parameters, group=None, bucket_elements: int = 1 << 24) -> None:
    """Sum the gradients of replicated parameters over the ranks (in buckets). A
    parameter without a gradient on this rank counts as zeros, so every rank makes the
    same calls."""
    if not _active(group):
        return
    params = [p for p in parameters if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    bucket, size = [], 0

    def flush():
        if not bucket:
            return
        flat = torch.cat([p.grad.reshape(-1) for p in bucket])
        device = _comm_device(group, flat.device)
        moved = flat.to(device)
        dist.all_reduce(moved, group=group)
        flat = moved.to(flat.device)
        at = 0
        for p in bucket:
            p.grad.copy_(flat[at: at + p.numel()].view_as(p.grad))
            at += p.numel()
        bucket.clear()

    seen = set()
    for p in params:
        if id(p) in seen:  # tied weights appear once
            continue
        seen.add(id(p))
        if bucket and (size + p.numel() > bucket_elements or bucket[0].grad.dtype != p.grad.dtype):
            flush()
            size = 0
        bucket.append(p)
        size += p.numel()
    flush()


def train_step(model, optimizer, inputs: torch.Tensor, targets: torch.Tensor, *,
               layout: ShardLayout | None = None, group=None, max_grad_norm: float | None = None,
               ignore_index: int = -100, autocast_dtype: torch.dtype | None = None) -> dict:
    """One optimizer step of next-token training on a sequence split across ranks.

    Parameters are replicated: every rank runs its shard forward and backward (the
    sharded attention exchanges rows and gradients), then the gradients are summed over
    the ranks, so every rank takes the same step as one process on the whole sequence.
    Returns ``{"loss": global mean loss, "tokens": targets counted, "grad_norm": ...}``."""
    from longnet.device import autocast

    model.train()
    optimizer.zero_grad(set_to_none=True)
    dtype = autocast_dtype or torch.float32
    with autocast(model.device, dtype):
        local_loss, mean_loss = sequence_parallel_loss(model, inputs, targets, layout=layout,
                                                       group=group, ignore_index=ignore_index)
    local_loss.backward()
    all_reduce_gradients(model.parameters(), group)
    grad_norm = None
    if max_grad_norm is not None:
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    optimizer.step()
    return {"loss": float(mean_loss), "grad_norm": grad_norm}
