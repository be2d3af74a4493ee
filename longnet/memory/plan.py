"""The index arithmetic of one append, worked out once and used by every layer.

Per level, ``plan_level`` says into which (kv head, slot, block) of the state each new
token's key and value go, which rows each head's queries read and where their outputs
land (``LevelPlan``; ``HeadGroups`` arranges the query heads by the slot they read).
``WindowPlan`` is the same for the sliding window (``Memory._plan_window`` makes it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from longnet.config import LongNetConfig


@dataclass
class HeadGroups:
    """Query heads arranged by the slot they read: ``[Hkv·slots, per_slot]``.

    Local head hl of kv head g reads slot ``hl mod slots``; the heads reading one slot
    are batched against it (``per_slot = ceil(G / slots)``, padded with dummy heads
    when slots does not divide G)."""

    per_slot: int
    identity: bool  # the grouped order is the plain head order (no padding)
    head_of_grouped: torch.Tensor  # [Hkv·slots·per_slot] head feeding each grouped row
    grouped_of_head: torch.Tensor  # [Hq] grouped row of each head


def _head_groups(Hq: int, Hkv: int, slots: int, device) -> HeadGroups:
    G = Hq // Hkv
    per_slot = math.ceil(G / slots)
    grouped = np.arange(Hkv * slots * per_slot)
    g, s, i = grouped // (slots * per_slot), (grouped // per_slot) % slots, grouped % per_slot
    local = s + i * slots
    head_of_grouped = np.where(local < G, g * G + local, 0)
    head = np.arange(Hq)
    hl = head % G
    grouped_of_head = (head // G) * slots * per_slot + (hl % slots) * per_slot + hl // slots
    return HeadGroups(per_slot, slots == 1 or slots == G,
                      torch.as_tensor(head_of_grouped, device=device),
                      torch.as_tensor(grouped_of_head, device=device))


@dataclass
class LevelPlan:
    """Index arithmetic for one level and one append; computed once, used by every layer.

    The blocks of the step run over segments ``start, start + w, ...`` up to the
    chunk's end, ``blocks_per_segment`` blocks per segment."""

    level: int
    start: int  # a segment start: the first block's position
    segment: int  # w (or a length past the end for a fork's growing local level)
    rate: int
    slots: int
    blocks_per_segment: int
    total_blocks: int
    first_block: int  # the first block holding a new row
    keep_from_block: int  # blocks before this belong to segments that are now finished
    old_blocks: int  # blocks already in the state
    groups: HeadGroups
    write_index: tuple  # (g, s, block) of each new row kept
    write_source: torch.Tensor  # the new token each kept row comes from
    query_source: torch.Tensor  # [Hkv·slots·per_slot, first_block..total_blocks] token index
    out_index: torch.Tensor  # [Hq, T] flat grouped row holding head h's output for token t
    out_mask: torch.Tensor  # [Hq, T] head h keeps token t at this level
    cos: torch.Tensor | None  # rotary of each new token at its index in this level's segment
    sin: torch.Tensor | None
    unbounded: bool = False
    key_bias: torch.Tensor | None = None  # few-query path: [Hkv·slots, per_slot·T, blocks]


def _slot_offsets(level_rate: int, group_size: int, kv_heads: int) -> np.ndarray:
    """[Hkv, slots]: the offset inside a block that slot s of kv head g holds."""
    slots = min(level_rate, group_size)
    g = np.arange(kv_heads)[:, None]
    s = np.arange(slots)[None, :]
    return (g * group_size + s) % level_rate


def plan_level(config: LongNetConfig, level: int, tokens: int, count: int,
               state_start: int | None, device, rotary=None, unbounded_segment: bool = False,
               few_queries: bool = False) -> LevelPlan | None:
    """Plan level ``level`` for ``count`` new tokens after ``tokens``; None when no head
    keeps any of them (then the level has nothing to read or store)."""
    w, r = config.segment_lengths[level], config.dilation_rates[level]
    Hq, Hkv = config.num_heads, config.num_kv_heads
    G = Hq // Hkv
    end = tokens + count
    if unbounded_segment:
        start = state_start
        w = max(end - start, 1)
    else:
        start = (tokens // w) * w
    slots = min(r, G)
    per_segment = math.ceil(w / r)
    offsets = _slot_offsets(r, G, Hkv)  # [Hkv, slots]

    new_pos = np.arange(tokens, end)
    t_seg, t_in = (new_pos - start) // w, (new_pos - start) % w
    if not ((t_in % r) < min(Hq, r)).any():
        return None

    last_segment = (end - 1 - start) // w
    total_blocks = last_segment * per_segment + math.ceil((end - start - last_segment * w) / r)
    first_block = t_seg[0] * per_segment + t_in[0] // r
    old_blocks = math.ceil((tokens - start) / r) if state_start == start else 0

    # Every (kv head, slot, block) from the first new block on: which token it holds.
    block = np.arange(first_block, total_blocks)
    inner = (block % per_segment)[None, None, :] * r + offsets[:, :, None]  # [Hkv, S, blocks]
    position = start + (block // per_segment)[None, None, :] * w + inner
    is_new = (inner < w) & (position < end) & (position >= tokens)
    source = np.where(is_new, position - tokens, 0)
    g_idx, s_idx, b_idx = np.nonzero(is_new)

    groups = _head_groups(Hq, Hkv, slots, device)
    per_slot = groups.per_slot
    query_source = np.repeat(source.reshape(Hkv * slots, 1, -1), per_slot, axis=1)

    head = np.arange(Hq)[:, None]
    out_mask = (t_in[None, :] % r) == (head % r)
    row = (t_seg * per_segment + t_in // r)[None, :] - first_block
    grouped_of_head = groups.grouped_of_head.cpu().numpy()[:, None]
    out_index = np.where(out_mask, grouped_of_head * (total_blocks - first_block) + row, 0)

    key_bias = None
    if few_queries:
        # Block b of the slot head h reads: may token t see it? Same segment, not after t,
        # and h keeps t at this level.
        b = np.arange(total_blocks)
        head_offset = offsets[head[:, 0] // G, (head[:, 0] % G) % slots]  # [Hq]
        k_inner = (b % per_segment)[None, :] * r + head_offset[:, None]
        k_pos = start + (b // per_segment)[None, :] * w + k_inner
        visible = ((k_inner < w)[:, None, :]
                   & ((b // per_segment)[None, None, :] == t_seg[None, :, None])
                   & (k_pos[:, None, :] <= new_pos[None, :, None]) & out_mask[:, :, None])
        bias = np.where(visible, 0.0, -np.inf).astype(np.float32)  # [Hq, T, blocks]
        grouped_bias = np.zeros((Hkv * slots * per_slot, count, total_blocks), np.float32)
        grouped_bias[grouped_of_head[:, 0]] = bias
        key_bias = torch.as_tensor(grouped_bias.reshape(Hkv * slots, per_slot * count, -1),
                                   device=device)

    cos = sin = None
    if rotary is not None:
        cos, sin = rotary.cos_sin(torch.as_tensor(t_in // r, device=device))
    as_tensor = lambda a: torch.as_tensor(a, device=device)
    return LevelPlan(
        level=level, start=start, segment=w, rate=r, slots=slots,
        blocks_per_segment=per_segment, total_blocks=total_blocks, first_block=first_block,
        keep_from_block=last_segment * per_segment, old_blocks=old_blocks, groups=groups,
        write_index=(as_tensor(g_idx), as_tensor(s_idx), as_tensor(b_idx + first_block)),
        write_source=as_tensor(source[g_idx, s_idx, b_idx]),
        query_source=as_tensor(query_source.reshape(Hkv * slots * per_slot, -1)),
        out_index=as_tensor(out_index), out_mask=as_tensor(out_mask), cos=cos, sin=sin,
        unbounded=unbounded_segment, key_bias=key_bias,
    )


@dataclass
class WindowPlan:
    """The sliding local window's part of one append (see ``Memory._plan_window``)."""

    first: int  # position of the window's row 0 before the step
    keep_from: int  # renewing: the first old row still needed
    keep: int  # rows kept before the new ones
    renew: bool  # copy the kept rows into a new, larger buffer
    new_first: int  # position of row 0 after the step
    capacity: int  # rows of a renewed buffer
    reads_from: int  # the first row (after the step) the new tokens read
    count: int  # new tokens
    cos: torch.Tensor | None  # rotary of the new rows at position - new_first ("dilated")
    sin: torch.Tensor | None
    shift_cos: torch.Tensor | None  # re-basing rotation of the kept keys, when renewed
    shift_sin: torch.Tensor | None
    mask: torch.Tensor | None  # few-query path: [count, rows read] additive window mask
