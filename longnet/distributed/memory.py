"""A sequence-parallel memory build, and the broadcasts that start it.

``memory_append`` splits the tokens of one append across the ranks: each reads its
shard against the memory's state and the other ranks' rows, then the new rows are summed
into place over the ranks, so that every rank ends with the state one process appending
the same tokens holds. ``broadcast_memory`` and ``broadcast_tokens`` give every rank
rank 0's memory and tokens first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from longnet.distributed.attention import dilated_attention
from longnet.distributed.plan import _count, _first
from longnet.distributed.process import (
    ShardLayout,
    _active,
    _comm_device,
    _rank_and_size,
    split_lengths,
)
from longnet.distributed.training import _layer_bias

# --------------------------------------------------------------------------- the memory


def broadcast_tokens(token_ids, group=None, src: int = 0, device=None) -> torch.Tensor:
    """Every rank gets rank ``src``'s 1-D token ids (others pass None)."""
    rank, world = _rank_and_size(group)
    if world == 1:
        return torch.as_tensor(np.asarray(token_ids, dtype=np.int64))
    device = _comm_device(group, device)
    count = torch.zeros(1, dtype=torch.int64, device=device)
    if rank == src:
        ids = torch.as_tensor(np.asarray(token_ids, dtype=np.int64), device=device)
        count.fill_(ids.numel())
    source = dist.get_global_rank(group, src) if group is not None else src
    dist.broadcast(count, source, group=group)
    if rank != src:
        ids = torch.empty(int(count), dtype=torch.int64, device=device)
    dist.broadcast(ids, source, group=group)
    return ids.cpu()


def broadcast_memory(memory, group=None, src: int = 0) -> None:
    """Make every rank's ``memory`` (built on the same model) a copy of rank ``src``'s:
    counters, stream hash, level states, the sliding window's rows and the attention sinks
    (e.g. after rank 0 loaded it from disk)."""
    from longnet.memory.state import LevelState, LocalWindowState, StreamHash

    rank, world = _rank_and_size(group)
    if world == 1:
        return
    c = memory.config
    source = dist.get_global_rank(group, src) if group is not None else src
    meta = [None]
    if rank == src:
        meta = [{"tokens": memory.tokens, "stream_offset": memory.stream_offset,
                 "hash": memory._hash.state(), "starts": memory._level_starts(),
                 "local_first": memory._window_first(), "dtype": str(memory.dtype),
                 "sinks": 0 if memory.sinks[0] is None else int(memory.sinks[0].shape[2])}]
    dist.broadcast_object_list(meta, source, group=group)
    meta = meta[0]
    dtype = getattr(torch, meta["dtype"].removeprefix("torch."))
    if rank != src:
        memory.dtype = dtype
    tensors = memory.state_dict() if rank == src else {}
    device = _comm_device(group, memory.device)
    G = c.num_heads // c.num_kv_heads
    for layer in range(c.num_layers):
        # The attention sinks: the stream's first rows, keys rotated at their positions.
        n_sinks = meta["sinks"]
        if n_sinks:
            if rank == src:
                both = torch.stack([tensors[f"layers.{layer}.sinks.k"],
                                    tensors[f"layers.{layer}.sinks.v"]]).to(device)
            else:
                both = torch.empty((2, c.num_kv_heads, n_sinks, c.head_dim), dtype=dtype,
                                   device=device)
            dist.broadcast(both, source, group=group)
            if rank != src:
                memory.sinks[layer] = both.to(memory.device)
        elif rank != src:
            memory.sinks[layer] = None
        for level, start in enumerate(meta["starts"]):
            if start is None:
                if rank != src:
                    memory.states[layer][level] = None
                continue
            r = c.dilation_rates[level]
            blocks = math.ceil((meta["tokens"] - start) / r)
            shape = (2, c.num_kv_heads, min(r, G), blocks, c.head_dim)
            if rank == src:
                both = torch.stack([tensors[f"layers.{layer}.levels.{level}.k"],
                                    tensors[f"layers.{layer}.levels.{level}.v"]]).to(device)
            else:
                both = torch.empty(shape, dtype=dtype, device=device)
            dist.broadcast(both, source, group=group)
            if rank != src:
                memory.states[layer][level] = LevelState(int(start), both.to(memory.device))
        first = meta["local_first"]
        if first is None:
            if rank != src:
                memory.local[layer] = None
            continue
        # The rows a next token can still see, keys rotated relative to the first of them
        # (what Memory.state_dict and Memory.save hold).
        rows = meta["tokens"] - int(first)
        if rank == src:
            both = torch.stack([tensors[f"layers.{layer}.local.k"],
                                tensors[f"layers.{layer}.local.v"]]).to(device)
        else:
            both = torch.empty((2, c.num_kv_heads, rows, c.head_dim), dtype=dtype, device=device)
        dist.broadcast(both, source, group=group)
        if rank != src:
            memory.local[layer] = LocalWindowState(int(first), rows, both.to(memory.device))
    if rank != src:
        memory.tokens = int(meta["tokens"])
        memory.stream_offset = int(meta["stream_offset"])
        memory._hash = StreamHash(**meta["hash"])


@dataclass
class _StateRows:
    """Where this rank's rows go in the new state of one level (one round)."""

    start: int  # the level's current segment start after the round
    first_block: int  # first block that may hold a row of this round
    blocks: int  # blocks of the state after the round
    heads: torch.Tensor  # kv head, block (from first_block), slot of each of my rows
    block: torch.Tensor
    slot: torch.Tensor
    rows: torch.Tensor  # my local row of each
    positions: torch.Tensor  # "dilated" rotary position of each: (t % w) // r


def _state_rows(layout: ShardLayout, w: int, r: int, n_q: int, n_kv: int, device) -> _StateRows | None:
    end = layout.offset + layout.total
    if end % w == 0:
        return None  # the segment just ended: the level holds nothing
    start = (end // w) * w
    first_block = (max(start, layout.offset) - start) // r
    blocks = -(-(end - start) // r)
    group = n_q // n_kv
    slots = min(r, group)
    lo, hi = max(layout.start, start), layout.end
    heads, block, slot, rows = [], [], [], []
    for g in range(n_kv):
        for c in range(slots):
            off = (g * group + c) % r
            count = _count(lo, hi, start, off, r)
            if not count:
                continue
            t = _first(lo, start, off, r) + r * np.arange(count)
            heads.append(np.full(count, g))
            slot.append(np.full(count, c))
            block.append((t - start - off) // r - first_block)
            rows.append(t - layout.start)
    cat = (lambda parts: torch.as_tensor(np.concatenate(parts) if parts else np.zeros(0, np.int64),
                                         dtype=torch.long, device=device))
    rows_t = cat(rows)
    return _StateRows(start, first_block, blocks, cat(heads), cat(block), cat(slot), rows_t,
                      ((rows_t + layout.start) % w) // r)


@torch.inference_mode()
def memory_append(memory, token_ids, *, group=None, stream_offset: int | None = None,
                  align: int | None = None, return_logits: bool = False) -> torch.Tensor | None:
    """``memory.append(token_ids)`` with the tokens split across the ranks of ``group``.

    Every rank calls it with the same ``token_ids`` and the same memory (same model,
    same state: see ``broadcast_memory``); afterwards every rank holds the state one
    process appending the same tokens would hold. Each rank runs its shard through the
    layers against the state (``prefix``) and the other ranks' rows, then the rows of
    each level's current segment are summed into place over the ranks (one all-reduce
    per call, about (tokens / r) rows per level).

    With a sliding level 0 (``config.local_window`` W) each rank's queries read the
    previous W - 1 rows from the memory's window and the earlier ranks, and the last
    W - 1 rows after the append (the new window) are summed into place the same way.
    With attention sinks (``config.attention_sinks`` S) the queries also read the sinks
    they see: those already read from ``memory.sinks``, the others from the ranks holding
    them; the sinks read in this call (the stream's first S tokens) are summed into
    ``memory.sinks`` the same way, so every rank ends with one process's sinks.

    ``return_logits``: this rank's logits ``[n, V]`` (float32) for its shard, the tokens
    at ``split_lengths(len(token_ids), world, offset=memory.tokens, align=align)``[rank]
    (the same rows ``memory.append`` returns for them); else None."""
    from longnet.device import autocast
    from longnet.memory.state import LevelState, StreamHash

    if memory._local_turn_start is not None or memory._isolated:
        raise RuntimeError("memory_append reads into the long-term memory, not a fork")
    ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1)
    c = memory.config
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= c.vocab_size):
        raise ValueError(f"token ids must lie in [0, {c.vocab_size})")
    rank, world = _rank_and_size(group)
    before = memory.tokens
    window = c.local_window
    if align is None:  # cuts on level 0's segments keep it local (a window never is)
        align = c.segment_lengths[0] if c.dilation_rates[0] == 1 and not window else 1
    layout = ShardLayout(split_lengths(ids.numel(), world, offset=before, align=align), rank, before)
    local = ids[layout.start - before: layout.end - before].to(memory.device)
    positions = torch.arange(layout.start, layout.end, device=memory.device)
    plans = [None if window and level == 0 else
             _state_rows(layout, w, r, c.num_heads, c.num_kv_heads, memory.device)
             for level, (w, r) in enumerate(zip(c.segment_lengths, c.dilation_rates))]
    end = before + ids.numel()
    # The window after the append: positions [window_first, end); the new ones of them
    # from window_new on (the older ones every rank already holds).
    window_first = max(0, end - (window - 1)) if window else None
    window_new = max(before, window_first) if window else None
    # Attention sinks: positions [0, sinks); those from `before` on are read now.
    sinks = c.attention_sinks if window else 0
    new_sinks = max(0, min(sinks, end) - before)
    contributions: list[list[torch.Tensor | None]] = []

    def attend_for_layer(index):
        bias = _layer_bias(memory.model, index)
        prefix = [s if s is not None and s.start < before else None for s in memory.states[index]]
        window_prefix = _window_prefix(memory, index) if window else None
        sink_prefix = _sink_prefix(memory, index) if sinks else None

        def attend(q, k, v):
            rotary = memory.model.rotary
            if c.position_mode == "absolute":
                q, k, rotary = rotary(q, positions), rotary(k, positions), None
            out = dilated_attention(q, k, v, c.segment_lengths, c.dilation_rates, is_causal=True,
                                    group=group, rotary=rotary, level_bias=bias, layout=layout,
                                    prefix=prefix, local_window=window,
                                    window_prefix=window_prefix, attention_sinks=sinks,
                                    sink_prefix=sink_prefix)
            parts = [_contribution(plan, k[0], v[0], level, memory)
                     for level, plan in enumerate(plans)]
            if window:
                parts.append(_window_contribution(layout, window_first, window_new, k[0], v[0],
                                                  memory))
            if new_sinks:
                parts.append(_sink_contribution(layout, new_sinks, k[0], v[0], memory))
            contributions.append(parts)
            return out

        return attend

    logits = None
    with autocast(memory.device, memory.dtype):
        hidden = memory.model.run_layers(local[None], attend_for_layer, logits=False)
        if return_logits:
            logits = memory.model.lm_head(hidden)[0].float()

    dtype = next((t.dtype for layer in contributions for t in layer if t is not None), memory.dtype)
    flat = [t.to(dtype).reshape(-1) for layer in contributions for t in layer if t is not None]
    if flat and _active(group):
        buffer = torch.cat(flat)
        moved = buffer.to(_comm_device(group, buffer.device))
        dist.all_reduce(moved, group=group)
        buffer = moved.to(buffer.device)
        at, summed = 0, []
        for part in flat:
            summed.append(buffer[at: at + part.numel()])
            at += part.numel()
        summed = iter(summed)
        contributions = [[None if t is None else next(summed).view(t.shape) for t in layer]
                         for layer in contributions]

    G = c.num_heads // c.num_kv_heads
    new_states, new_windows, new_sink_rows = [], [], []
    for layer, parts in enumerate(contributions):
        if new_sinks:
            old_sinks = memory.sinks[layer]
            rows = parts[-1].to(memory.dtype)
            new_sink_rows.append(rows if old_sinks is None else torch.cat((old_sinks, rows), 2))
            parts = parts[:-1]
        if window:
            new_windows.append(_new_window(memory, layer, window_first, window_new, end,
                                           parts[-1]))
            parts = parts[:-1]
        layer_states = []
        for level, (plan, part) in enumerate(zip(plans, parts)):
            if plan is None:
                layer_states.append(None)
                continue
            r, w = c.dilation_rates[level], c.segment_lengths[level]
            slots = min(r, G)
            kv = torch.zeros((2, c.num_kv_heads, slots, plan.blocks, c.head_dim),
                             dtype=part.dtype, device=memory.device)
            old = memory.states[layer][level]
            if old is not None and old.start == plan.start and before > plan.start:
                # Rows read before this call: positions < before, as the state holds them.
                kept = min(-(-(before - plan.start) // r), old.kv.shape[3], plan.blocks)
                offsets = torch.as_tensor((np.arange(c.num_kv_heads)[:, None] * G
                                           + np.arange(slots)[None, :]) % r, device=memory.device)
                inner = offsets[:, :, None] + r * torch.arange(kept, device=memory.device)
                valid = ((plan.start + inner) < before) & (inner < w)
                kv[:, :, :, :kept] = torch.where(valid[None, ..., None],
                                                 old.kv[:, :, :, :kept].to(kv.dtype),
                                                 torch.zeros((), dtype=kv.dtype, device=kv.device))
            kv[:, :, :, plan.first_block:] += part
            layer_states.append(LevelState(plan.start, kv))
        new_states.append(layer_states)
    # Swap everything in at once: an interrupt before here leaves the previous state whole.
    hash_after = StreamHash(**memory._hash.state())
    hash_after.update(ids.tolist())
    offset_after = memory.stream_offset + ids.numel() if stream_offset is None else int(stream_offset)
    memory.states, memory._hash, memory.tokens, memory.stream_offset = \
        new_states, hash_after, before + ids.numel(), offset_after
    if window:
        memory.local = new_windows
    if new_sinks:
        memory.sinks = new_sink_rows
    return logits


def _sink_prefix(memory, layer: int):
    """The memory's sink rows of one layer for ``dilated_attention``'s ``sink_prefix``:
    ``(k, v [Hkv, n, D])``, n = ``min(attention_sinks, memory.tokens)``, or None when it
    has read nothing."""
    rows = memory.sinks[layer]
    expected = min(memory.config.attention_sinks, memory.tokens)
    if (0 if rows is None else rows.shape[2]) != expected:
        raise RuntimeError(f"the memory has read {memory.tokens} tokens but holds "
                           f"{0 if rows is None else rows.shape[2]} attention sinks, not {expected}")
    return None if rows is None else (rows[0], rows[1])


def _sink_contribution(layout: ShardLayout, new_sinks: int, k, v, memory) -> torch.Tensor:
    """This rank's rows of the sinks read in this call (positions ``layout.offset ..
    + new_sinks``), zeros elsewhere: ``[2, Hkv, new_sinks, D]``; keys as the memory stores
    them: rotated at their own position ("dilated"), or already at it ("absolute")."""
    buffer = torch.zeros((2, k.shape[0], new_sinks, k.shape[-1]), dtype=k.dtype, device=k.device)
    hi = min(layout.end, layout.offset + new_sinks)
    if layout.start < hi:
        count = hi - layout.start
        keys = k[:, :count]
        if memory.config.position_mode == "dilated":
            rotary = memory.model.rotary
            cos, sin = rotary.cos_sin(torch.arange(layout.start, hi, device=k.device))
            keys = rotary.rotate(keys, cos, sin)
        rows = slice(layout.start - layout.offset, hi - layout.offset)
        buffer[0, :, rows] = keys.to(buffer.dtype)
        buffer[1, :, rows] = v[:, :count].to(buffer.dtype)
    return buffer


def _window_prefix(memory, layer: int):
    """The memory's window rows of one layer for ``dilated_attention``'s
    ``window_prefix``: ``(k, v [Hkv, n, D], first)`` (n = 0 for an empty memory)."""
    state = memory.local[layer]
    if state is None:
        if memory.tokens:
            raise RuntimeError("the memory has read tokens but holds no sliding-window rows")
        c = memory.config
        empty = torch.zeros((c.num_kv_heads, 0, c.head_dim), dtype=memory.dtype,
                            device=memory.device)
        return empty, empty, memory.tokens
    if state.first + state.rows != memory.tokens:
        raise RuntimeError("the sliding window's rows do not end at the memory's tokens")
    return state.kv[0, :, :state.rows], state.kv[1, :, :state.rows], state.first


def _window_contribution(layout: ShardLayout, window_first: int, window_new: int, k, v,
                         memory) -> torch.Tensor:
    """This rank's rows of the new window (positions ``window_new ..`` the end), zeros
    elsewhere: ``[2, Hkv, end - window_new, D]``. Keys as the memory stores them: rotated
    at ``position - window_first`` ("dilated"), or already at their absolute position."""
    end = layout.offset + layout.total
    buffer = torch.zeros((2, k.shape[0], end - window_new, k.shape[-1]), dtype=k.dtype,
                         device=k.device)
    lo = max(layout.start, window_new)
    if lo < layout.end:
        keys = k[:, lo - layout.start:]
        if memory.config.position_mode == "dilated":
            keys = memory.model.rotary(keys, torch.arange(lo - window_first,
                                                          layout.end - window_first,
                                                          device=k.device))
        rows = slice(lo - window_new, layout.end - window_new)
        buffer[0, :, rows] = keys.to(buffer.dtype)
        buffer[1, :, rows] = v[:, lo - layout.start:].to(buffer.dtype)
    return buffer


def _new_window(memory, layer: int, window_first: int, window_new: int, end: int, part):
    """One layer's window after the append: the old rows still in it (re-rotated to the
    new first position) and the new rows summed over the ranks."""
    from longnet.memory.state import LocalWindowState

    if end == 0:
        return None
    c = memory.config
    kv = torch.zeros((2, c.num_kv_heads, end - window_first, c.head_dim), dtype=memory.dtype,
                     device=memory.device)
    kept = window_new - window_first
    if kept:
        old = memory.local[layer]
        rows = old.kv[:, :, window_first - old.first: window_new - old.first]
        kv[:, :, :kept] = rows
        if c.position_mode == "dilated" and old.first != window_first:
            rotary = memory.model.rotary
            cos, sin = rotary.cos_sin(torch.tensor([old.first - window_first], device=kv.device))
            kv[0, :, :kept] = rotary.rotate(rows[0], cos, sin).to(kv.dtype)
    kv[:, :, kept:] = part.to(kv.dtype)
    return LocalWindowState(window_first, end - window_first, kv)


def _contribution(plan: _StateRows | None, k, v, level: int, memory) -> torch.Tensor | None:
    """This rank's rows of one level's new state, in the state's layout (zeros elsewhere):
    ``[2, Hkv, slots, blocks - first_block, D]``. Keys as the memory stores them: rotated
    at their "dilated" position (or already at their absolute one)."""
    if plan is None:
        return None
    c = memory.config
    slots = min(c.dilation_rates[level], c.num_heads // c.num_kv_heads)
    buffer = torch.zeros((2, c.num_kv_heads, slots, plan.blocks - plan.first_block, c.head_dim),
                         dtype=k.dtype, device=k.device)
    if plan.rows.numel():
        keys = k[plan.heads, plan.rows]
        if c.position_mode == "dilated":
            keys = memory.model.rotary(keys, plan.positions)
        buffer[0, plan.heads, plan.slot, plan.block] = keys.to(buffer.dtype)
        buffer[1, plan.heads, plan.slot, plan.block] = v[plan.heads, plan.rows].to(buffer.dtype)
    return buffer
