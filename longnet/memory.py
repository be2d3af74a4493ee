"""The bounded memory of an ever-growing token stream, read by a LongNet model.

Why it is bounded. Segments are absolute (position t lies in segment t // w of a
level), so once a segment of a level is complete no later token attends into it at
that level. What later tokens need is, per layer and level, only the rows of the
current segment that the heads' offsets select: query head h keeps rows with
(t mod w) mod r == h mod r, so the G heads sharing a kv head need at most
min(G, r) offsets × ceil(w / r) rows. That is the whole state, whatever the
history's length; it grows by about one level each time the history doubles.

Layout. Per layer and level, keys and values are kept as ``kv [2, Hkv, slots, blocks,
D]``: block j of the current segment starts at ``start + j·r`` and slot s of kv head g
holds the row at offset ``(g·G + s) mod r`` in that block (the offsets of g's heads,
``slots = min(G, r)``). Query head h reads only slot ``(h mod G) mod slots``, and the
blocks of one slot are a dense sequence (segment length ceil(w/r)) at exactly the
sparsified indices the level gives them. So attention against the state never copies
it: new rows are written in place after the valid ones, a long chunk goes through
``level_attention`` with the slots in the batch dimension (heads of a slot as its
query heads), and a few tokens (a question, decoding) take one masked matmul per
level and one softmax over every level's keys (eq. 10 is exactly that softmax).

Generation reads the memory through ``fork()``: the fork shares the state tensors
but only ever writes rows at positions the memory has not reached, so the memory's
own state is left exactly as it was (a chat turn stays out of the long-term memory
unless asked).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from longnet.attention import (
    level_attention,
    merge_levels,
    sink_attention,
    sink_visibility,
    sliding_window_attention,
)
from longnet.model import SHUT_GATE, LongNetConfig, autocast, choose_dtype

FORMAT_VERSION = 2  # 2: the sliding local window's rows (local_first, layers.N.local.k/v)
METADATA_FILE = "memory.json"
HASH_BLOCK = 1024  # tokens per block of the stream hash chain


class MemoryMismatchError(ValueError):
    """A saved memory was made by another model or configuration, or is damaged."""


# --------------------------------------------------------------------------- stream hash


class StreamHash:
    """SHA-256 chain over fixed blocks of token ids: the same digest however the
    stream was cut into appends, and resumable from a few hundred bytes of state."""

    def __init__(self, chain: str | None = None, tail: list[int] | None = None):
        self.chain = bytes.fromhex(chain) if chain else b"\0" * 32
        self.tail = list(tail or [])

    def update(self, token_ids) -> None:
        self.tail.extend(int(t) for t in token_ids)
        while len(self.tail) >= HASH_BLOCK:
            block = np.asarray(self.tail[:HASH_BLOCK], dtype="<i8").tobytes()
            self.chain = hashlib.sha256(self.chain + block).digest()
            del self.tail[:HASH_BLOCK]

    def hexdigest(self) -> str:
        tail = np.asarray(self.tail, dtype="<i8").tobytes()
        return hashlib.sha256(self.chain + tail).hexdigest()

    def state(self) -> dict:
        return {"chain": self.chain.hex(), "tail": list(self.tail)}


def token_stream_hash(token_ids) -> str:
    """The ``stream_hash`` a memory that consumed exactly ``token_ids`` records."""
    digest = StreamHash()
    digest.update(token_ids)
    return digest.hexdigest()


# --------------------------------------------------------------------------- levels


@dataclass
class LevelState:
    """One layer's keys and values for one level: ``kv [2, Hkv, slots, blocks, D]``,
    rows of the segment starting at ``start`` (block j of slot s of kv head g holds
    position ``start + j·r + (g·G + s) mod r``)."""

    start: int
    kv: torch.Tensor


@dataclass
class LocalWindowState:
    """One layer's sliding local window: ``kv [2, Hkv, capacity, D]`` whose first
    ``rows`` rows hold positions ``first, first + 1, ...`` (the memory's most recent
    tokens). Keys are stored rotated at ``position - first`` in "dilated" position mode
    (rotary is relative, so an origin near the rows keeps the angles precise) and at
    their absolute positions in "absolute" mode. Rows past ``rows`` are free: a fork
    writes there without touching what the memory holds."""

    first: int
    rows: int
    kv: torch.Tensor


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


# --------------------------------------------------------------------------- memory


class Memory:
    """What a LongNet model keeps of a token stream: bounded, appendable, saveable.

    ``append(token_ids)`` runs only the new tokens against the state and extends it;
    in any chunking it gives the logits of one full forward pass over the stream.
    """

    # Up to this many new tokens, attention against the state is computed here: one
    # masked matmul per level and one softmax over every level's keys (eq. 10 is one
    # softmax over the union of the levels' keys). Longer chunks go through
    # ``level_attention``, whose per-call set-up dominates for a handful of queries but
    # which never holds a [heads, queries, keys] score tensor: measured on a 2-thread Xeon
    # (bench/memory.py --few-queries), a 50-token question after 1M tokens took 1.21 s
    # with this at 64 and 0.44 s at 8; decoding (one query) was the same.
    few_queries = 8

    def __init__(self, model, dtype: str | torch.dtype | None = None, chunk_size: int = 4096):
        self.model = model
        self.config: LongNetConfig = model.config
        self.device = model.device
        self.dtype = choose_dtype(dtype, self.device)
        self.chunk_size = chunk_size
        self.tokens = 0
        self.stream_offset = 0
        self._hash = StreamHash()
        # states[layer][level] -> LevelState | None
        self.states: list[list[LevelState | None]] = [
            [None] * self.config.num_levels for _ in range(self.config.num_layers)]
        # With a sliding level 0 (config.local_window): its rows, per layer.
        self.local: list[LocalWindowState | None] = [None] * self.config.num_layers
        # The stream's first attention_sinks rows ``[2, Hkv, s, D]``, per layer.
        self.sinks: list[torch.Tensor | None] = [None] * self.config.num_layers
        self._local_turn_start: int | None = None  # set in a fork reading a chat turn
        self._sink_origin = 0  # the turn's start in a fork whose turn reads no window of the
        # history: its first tokens are its sinks, as for a plain model reading it alone
        self._isolated = False
        self._scratch = False  # a fork: thrown away after one turn
        self._skipped_levels: set[int] = set()  # levels a scratch turn never stored

    # -- reading the stream

    @torch.inference_mode()
    def append(self, token_ids, return_logits: bool = True,
               stream_offset: int | None = None) -> torch.Tensor | None:
        """Read ``token_ids [T]`` into the memory; logits ``[T, V]`` (float32) or None.

        ``stream_offset``: where the caller's stream stands after these tokens (default:
        the previous offset + T).
        """
        ids = torch.as_tensor(token_ids, dtype=torch.long).reshape(-1).to(self.device)
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        pieces = []
        with autocast(self.device, self.dtype):  # one context: weight casts are cached
            for begin in range(0, ids.numel(), self.chunk_size):
                out = self._step(ids[begin:begin + self.chunk_size], logits=return_logits)
                if return_logits:
                    pieces.append(out.float())
        self._hash.update(ids.tolist())
        self.stream_offset = self.stream_offset + ids.numel() if stream_offset is None \
            else int(stream_offset)
        if not return_logits:
            return None
        if not pieces:
            return torch.empty(0, self.config.vocab_size, device=self.device)
        return torch.cat(pieces)

    def _step(self, ids: torch.Tensor, logits: bool = True, last_only: bool = False):
        """Run one chunk through the layers against the state; advance ``tokens``."""
        c = self.config
        rotary = self.model.rotary if c.position_mode == "dilated" else None
        few = ids.numel() <= self.few_queries
        shut = self._shut_levels()
        plans = [None] if c.local_window else []  # a sliding level 0 is planned apart
        for level in range(len(plans), c.num_levels):
            if level in self._skipped_levels and level not in shut:
                raise RuntimeError("this turn was read with the far levels shut and lacks "
                                   "their rows: read it again in a new fork")
            if level in shut and self._scratch:  # a turn's rows there would never be read
                self._skipped_levels.add(level)
                plans.append(None)
                continue
            unbounded = level == 0 and self._local_turn_start is not None
            plans.append(plan_level(c, level, self.tokens, ids.numel(),
                                    self._state_start(level, unbounded), self.device,
                                    rotary=rotary, unbounded_segment=unbounded,
                                    few_queries=few))
        positions = torch.arange(self.tokens, self.tokens + ids.numel(), device=self.device)
        absolute = None
        if c.position_mode == "absolute":
            absolute = self.model.rotary.cos_sin(positions)
        window = self._plan_window(ids.numel(), few) if c.local_window else None
        with autocast(self.device, self.dtype):
            hidden = self.model.run_layers(
                ids[None], lambda layer: self._attention(layer, plans, absolute, few, window),
                logits=False)
            if last_only:
                hidden = hidden[:, -1:]
            out = self.model.lm_head(hidden)[0] if logits else None
        self.tokens += ids.numel()
        self._drop_finished_segments()
        return out

    def _state_start(self, level: int, unbounded: bool) -> int | None:
        if unbounded:
            return self._local_turn_start
        for layer_states in self.states:
            if layer_states[level] is not None:
                return layer_states[level].start
        return None

    def _shut_levels(self) -> frozenset[int]:
        """The far levels whose gate is shut (``SHUT_GATE``) in every layer and head: in
        eq. 10 their weight is exp(-1e4 + score) = 0 exactly, so attending to them is
        skipped (``LongNetLM.far_levels_shut`` during a hybrid turn)."""
        biases = [getattr(layer.self_attn, "level_bias", None) for layer in self.model.layers]
        if not biases or any(bias is None for bias in biases):
            return frozenset()
        shut = (torch.stack([bias.detach() for bias in biases]) <= SHUT_GATE / 2)
        shut = shut.flatten(0, 1).all(dim=0)
        return frozenset(level for level in range(1, shut.numel()) if bool(shut[level]))

    def _drop_finished_segments(self) -> None:
        """The state of a level whose segment ended is never read again: free it."""
        for level, w in enumerate(self.config.segment_lengths):
            if level == 0 and (self._local_turn_start is not None or self.config.local_window):
                continue
            current = (self.tokens // w) * w
            for layer_states in self.states:
                state = layer_states[level]
                if state is not None and state.start != current:
                    layer_states[level] = None

    def _attention(self, layer: int, plans: list[LevelPlan | None], absolute, few: bool,
                   window: WindowPlan | None = None, shut: frozenset[int] = frozenset()):
        bias = getattr(self.model.layers[layer].self_attn, "level_bias", None)
        rotate = self.model.rotary.rotate

        def attend(q, k, v):
            q, k, v = q[0], k[0], v[0]  # the memory reads one stream: batch 1
            q = q * (q.shape[-1] ** -0.5)
            q_raw = q
            if absolute is not None:
                q, k = rotate(q, *absolute), rotate(k, *absolute)
            levels = []
            for plan in plans:
                if plan is None:
                    continue
                q_level, k_level = q, k
                if plan.cos is not None:
                    q_level, k_level = rotate(q, plan.cos, plan.sin), rotate(k, plan.cos, plan.sin)
                rows = self._store(layer, plan, k_level, v)
                if plan.level not in shut:  # a shut level's rows are kept, not read
                    levels.append((plan, q_level, rows))
            active = [plan for plan, _, _ in levels]
            columns = ([0] if window is not None else []) + [p.level for p in active]
            level_bias = None if bias is None else bias[:, columns]
            local = None
            if window is not None:
                q_local, k_local = q, k
                if window.cos is not None:
                    q_local = rotate(q, window.cos, window.sin)
                    k_local = rotate(k, window.cos, window.sin)
                local = (q_local, self._store_window(layer, window, k_local, v), window)
            sink_rows = None
            if window is not None and self.config.attention_sinks:
                sink_rows = self._sink_rows(layer, window, q_raw, k, v, absolute is not None)
            if few:  # the sinks' scores join level 0's in the one softmax, with its bias
                out = _attend_few(levels, level_bias, self.config.dilation_rates[0] == 1, local,
                                  sinks=sink_rows)
            else:
                sink = None if sink_rows is None else sink_attention(*sink_rows, scale=1.0)
                outs, lses = [], []
                if sink is not None:
                    outs.append(sink[0])
                    lses.append(sink[1])
                    columns = [0] + columns
                    level_bias = None if bias is None else bias[:, columns]
                if local is not None:
                    q_local, kv, _ = local
                    o, l = sliding_window_attention(q_local[None], kv[0][None], kv[1][None],
                                                    self.config.local_window, scale=1.0)
                    outs.append(o[0])
                    lses.append(l[0])
                for plan, q_level, kv in levels:
                    o, l = _attend_compact(plan, q_level, kv)
                    outs.append(o)
                    lses.append(l)
                out, _ = merge_levels([o[None] for o in outs], [x[None] for x in lses],
                                      level_bias=level_bias)
                out = out[0]
            return out[None].to(v.dtype)

        return attend

    # -- the sliding local window (config.local_window)

    def _plan_window(self, count: int, few: bool) -> WindowPlan:
        """Where this step's new rows go in every layer's window, which rows it reads,
        and the re-basing of the kept rows when their buffer is renewed (the same for
        every layer: all layers hold the same positions)."""
        c = self.config
        W = c.local_window
        state = next((s for s in self.local if s is not None), None)
        first, rows, capacity = (state.first, state.rows, state.kv.shape[2]) if state \
            else (self.tokens, 0, 0)
        if first + rows != self.tokens:
            raise RuntimeError("the sliding window's rows do not end at the memory's tokens")
        read_from = max(0, self.tokens - W + 1)  # the oldest row the first new token sees
        keep_from = max(0, read_from - first)  # rows before this are out of every window
        renew = rows + count > capacity
        if renew:  # a new buffer: the rows still needed, the new ones, room to grow
            new_first, keep = first + keep_from, rows - keep_from
            capacity = keep + count + max(W, count)
        else:
            new_first, keep = first, rows
        reads_from = max(0, read_from - new_first)
        cos = sin = shift_cos = shift_sin = None
        if c.position_mode == "dilated":
            rotary = self.model.rotary
            positions = torch.arange(self.tokens, self.tokens + count, device=self.device)
            cos, sin = rotary.cos_sin(positions - new_first)
            if renew and new_first != first:
                shift = torch.tensor([first - new_first], device=self.device)
                shift_cos, shift_sin = rotary.cos_sin(shift)
        mask = None
        if few:
            # New token t (position tokens + t) sees rows whose positions lie in (pos - W, pos].
            key_pos = new_first + reads_from + torch.arange(keep - reads_from + count,
                                                            device=self.device)
            query_pos = torch.arange(self.tokens, self.tokens + count, device=self.device)
            visible = (key_pos[None, :] <= query_pos[:, None]) & \
                      (key_pos[None, :] > query_pos[:, None] - W)
            mask = torch.where(visible, 0.0, float("-inf"))
        return WindowPlan(first=first, keep_from=keep_from if renew else 0, keep=keep,
                          renew=renew, new_first=new_first, capacity=capacity,
                          reads_from=reads_from, count=count, cos=cos, sin=sin,
                          shift_cos=shift_cos, shift_sin=shift_sin, mask=mask)

    def _store_window(self, layer: int, plan: WindowPlan, k_new, v_new) -> torch.Tensor:
        """Write the new rows into the layer's window; return the rows this step reads,
        ``kv [2, Hkv, n, D]``."""
        state = self.local[layer]
        if plan.renew:
            Hkv, D = k_new.shape[0], k_new.shape[-1]
            kv = torch.zeros((2, Hkv, plan.capacity, D), dtype=self.dtype, device=self.device)
            if state is not None and plan.keep:
                kept = state.kv[:, :, plan.keep_from:plan.keep_from + plan.keep]
                kv[:, :, :plan.keep] = kept
                if plan.shift_cos is not None:  # re-base the kept keys' rotation
                    kv[0, :, :plan.keep] = self.model.rotary.rotate(
                        kept[0], plan.shift_cos, plan.shift_sin).to(kv.dtype)
        else:
            kv = state.kv
        end = plan.keep + plan.count
        kv[0, :, plan.keep:end] = k_new.to(kv.dtype)
        kv[1, :, plan.keep:end] = v_new.to(kv.dtype)
        self.local[layer] = LocalWindowState(plan.new_first, end, kv)
        return kv[:, :, plan.reads_from:end]

    def _store(self, layer: int, plan: LevelPlan, k_new, v_new) -> torch.Tensor:
        """Write the level's new rows into its state; return the rows of this step's
        blocks, ``kv [2, Hkv, slots, total_blocks, D]``."""
        Hkv, D = k_new.shape[0], k_new.shape[-1]
        state = self.states[layer][plan.level]
        if state is not None and state.start != plan.start:
            state = None
        kv = self._workspace(state, plan, Hkv, D, k_new.dtype)
        g, s, b = plan.write_index
        if b.numel():
            src = plan.write_source
            kv[0, g, s, b] = k_new[g, src].to(kv.dtype)
            kv[1, g, s, b] = v_new[g, src].to(kv.dtype)
        step_rows = kv[:, :, :, :plan.total_blocks]
        if plan.keep_from_block:
            kept = kv[:, :, :, plan.keep_from_block:plan.total_blocks].clone()
            start = plan.start + (plan.keep_from_block // plan.blocks_per_segment) * plan.segment
            self.states[layer][plan.level] = LevelState(start, kept)
        else:
            self.states[layer][plan.level] = LevelState(plan.start, kv)
        return step_rows

    def _workspace(self, state: LevelState | None, plan: LevelPlan, Hkv: int, D: int, dtype):
        """A buffer holding the state's blocks with room for all of this step's blocks."""
        need = plan.total_blocks
        if state is not None and state.kv.shape[3] >= need:
            return state.kv
        capacity = need
        if plan.keep_from_block == 0 and state is not None:
            # Grow geometrically (up to the segment's size) so decoding rarely copies.
            limit = 2 * state.kv.shape[3] if plan.unbounded else plan.blocks_per_segment
            capacity = max(need, min(2 * state.kv.shape[3], limit))
        kv = torch.zeros((2, Hkv, plan.slots, capacity, D), dtype=dtype, device=self.device)
        if state is not None and plan.old_blocks:
            kv[:, :, :, :plan.old_blocks] = state.kv[:, :, :, :plan.old_blocks]
        return kv

    def _sink_rows(self, layer: int, window: WindowPlan, q_raw, k, v, absolute: bool):
        """Store the stream's first ``attention_sinks`` rows (keys rotated at their own
        positions); what the new tokens attend to among them — ``(q [Hq, T, D], keys
        [Hkv, S, D], values [Hkv, S, D], visible [T, S])``, the sinks their window has moved
        past — or None when none is visible yet."""
        c = self.config
        S, W = c.attention_sinks, c.local_window
        rotary = self.model.rotary
        count = k.shape[1]
        here = self.tokens - self._sink_origin  # sinks count from the origin
        new = max(0, min(S, here + count) - here)  # new tokens that are sinks
        if new:
            k_new = k[:, :new]
            if not absolute:  # "dilated": rotate at the sink's own position
                cos, sin = rotary.cos_sin(torch.arange(here, here + new, device=self.device))
                k_new = rotary.rotate(k_new, cos, sin)
            rows = torch.stack((k_new, v[:, :new])).to(self.dtype)
            old = self.sinks[layer]
            # A new tensor, never written in place: forks share the memory's rows.
            self.sinks[layer] = rows if old is None else torch.cat((old, rows), dim=2)
        stored = self.sinks[layer]
        if stored is None:
            return None
        positions = torch.arange(self.tokens, self.tokens + count, device=self.device)
        visible = sink_visibility(positions - self._sink_origin, stored.shape[2], W)
        if not bool(visible.any()):
            return None
        q_sink = q_raw
        if absolute:  # q already rotated at its true position
            cos, sin = rotary.cos_sin(positions)
            q_sink = rotary.rotate(q_raw, cos, sin)
        else:  # the sinks sit just before the window's oldest key
            cos, sin = rotary.cos_sin(torch.full((1,), W + S, device=self.device))
            q_sink = rotary.rotate(q_raw, cos, sin)
        return q_sink, stored[0], stored[1], visible

    # -- what is held

    @property
    def nbytes(self) -> int:
        """Bytes held by the state tensors."""
        levels = sum(s.kv.numel() * s.kv.element_size()
                     for layer in self.states for s in layer if s is not None)
        window = sum(s.kv.numel() * s.kv.element_size() for s in self.local if s is not None)
        return levels + window + sum(t.numel() * t.element_size() for t in self.sinks
                                     if t is not None)

    @property
    def stream_hash(self) -> str:
        return self._hash.hexdigest()

    def valid_blocks(self, level: int, start: int) -> int:
        return math.ceil((self.tokens - start) / self.config.dilation_rates[level])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state's rows ``[Hkv, slots, blocks, D]`` by layer and level, rows that hold
        no position of the stream (yet) zeroed."""
        c = self.config
        G = c.num_heads // c.num_kv_heads
        result = {}
        for layer, layer_states in enumerate(self.states):
            for level, state in enumerate(layer_states):
                if state is None:
                    continue
                r, w = c.dilation_rates[level], c.segment_lengths[level]
                blocks = self.valid_blocks(level, state.start)
                offsets = torch.as_tensor(_slot_offsets(r, G, c.num_kv_heads), device=self.device)
                inner = offsets[:, :, None] + r * torch.arange(blocks, device=self.device)
                valid = (state.start + inner) < self.tokens
                if self._local_turn_start is None or level:
                    valid &= inner < w
                rows = torch.where(valid[None, ..., None], state.kv[:, :, :, :blocks],
                                   torch.zeros((), dtype=state.kv.dtype, device=self.device))
                result[f"layers.{layer}.levels.{level}.k"] = rows[0].contiguous()
                result[f"layers.{layer}.levels.{level}.v"] = rows[1].contiguous()
        for layer, window in enumerate(self.local):
            if window is None:
                continue
            k, v = self._window_rows(window)
            result[f"layers.{layer}.local.k"] = k
            result[f"layers.{layer}.local.v"] = v
        for layer, rows in enumerate(self.sinks):
            if rows is not None:
                result[f"layers.{layer}.sinks.k"] = rows[0].contiguous()
                result[f"layers.{layer}.sinks.v"] = rows[1].contiguous()
        return result

    def _window_rows(self, window: LocalWindowState) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows a next token can still see (the last ``local_window - 1``), keys
        rotated relative to the first of them: ``k, v [Hkv, n, D]``."""
        skip = max(0, window.rows - (self.config.local_window - 1))
        k = window.kv[0, :, skip:window.rows]
        v = window.kv[1, :, skip:window.rows]
        if skip and self.config.position_mode == "dilated":
            cos, sin = self.model.rotary.cos_sin(torch.tensor([-skip], device=self.device))
            k = self.model.rotary.rotate(k, cos, sin).to(window.kv.dtype)
        return k.contiguous(), v.contiguous()

    def _window_first(self) -> int | None:
        window = next((s for s in self.local if s is not None), None)
        if window is None:
            return None
        return window.first + max(0, window.rows - (self.config.local_window - 1))

    # -- generation

    def reserve(self, tokens: int, window: bool = True,
                skip_levels: frozenset[int] = frozenset()) -> None:
        """Room in every buffer (but those of ``skip_levels``) for ``tokens`` more rows
        without a copy (the rows held do not change). A fork writes its turn past the
        memory's rows, in place, when there is room; without it, its first step copies the
        whole state (at a 1M-token history that copy cost as much as the question itself)."""
        c = self.config
        for layer in range(c.num_layers):
            for level, state in enumerate(self.states[layer]):
                if state is None or level in skip_levels:
                    continue
                rate = c.dilation_rates[level]
                valid = self.valid_blocks(level, state.start)
                want = min(math.ceil(c.segment_lengths[level] / rate),
                           valid + math.ceil(tokens / rate) + 1)
                if (self._local_turn_start is not None and level == 0) or \
                        state.kv.shape[3] >= want:
                    continue  # a fork's growing local level manages its own room
                kv = state.kv.new_zeros(state.kv.shape[:3] + (want, state.kv.shape[4]))
                kv[:, :, :, :valid] = state.kv[:, :, :, :valid]
                self.states[layer][level] = LevelState(state.start, kv)
            rows = self.local[layer] if window else None
            if rows is not None and rows.kv.shape[2] < rows.rows + tokens:
                _, kv_heads, _, dim = rows.kv.shape
                kv = rows.kv.new_zeros((2, kv_heads, rows.rows + tokens, dim))
                kv[:, :, :rows.rows] = rows.kv[:, :, :rows.rows]
                self.local[layer] = LocalWindowState(rows.first, rows.rows, kv)

    def fork(self, dense_local: bool = True, isolate_window: bool = False,
             reserve_tokens: int = 0) -> Memory:
        """A scratch continuation of this memory: appending to it reads this memory's
        state but never changes it. With ``dense_local`` (and a dense first level), the
        fork's first level keeps every row from the current local segment's start
        densely instead of cutting at the next segment boundary, so a chat turn always
        sees itself whole. With ``isolate_window`` (sliding level 0 only), the turn's
        window starts empty and its own first tokens are its sinks: the turn reads
        itself as a plain model would and reaches the history only through the far
        levels (as their gates allow), so text in the turn (retrieved passages) is not
        crowded by the raw tail of the history. ``reserve_tokens``: the turn's expected
        length; this memory's buffers get room for it first (``reserve``), once, so the
        turn does not copy the state. A fork is a scratch for one turn: it writes into
        the memory's free rows, so use it before the memory appends again (the engine
        runs answers and memory updates under one lock), never beside an append."""
        isolate_window = isolate_window and bool(self.config.local_window)
        if reserve_tokens > 0:  # an isolated turn starts a window of its own; the fork
            # will not store rows of shut levels, so they need no room
            self.reserve(reserve_tokens, window=not isolate_window,
                         skip_levels=self._shut_levels())
        fork = Memory.__new__(Memory)
        fork.__dict__.update(self.__dict__)
        fork._hash = StreamHash(**self._hash.state())
        fork._scratch = True
        fork._skipped_levels = set(self._skipped_levels)
        fork.states = [[None if s is None else LevelState(s.start, s.kv) for s in layer]
                       for layer in self.states]
        # The fork renews or writes past the memory's rows, never over them.
        fork.local = list(self.local)
        fork.sinks = list(self.sinks)
        if isolate_window:
            fork.local = [None] * self.config.num_layers
            fork.sinks = [None] * self.config.num_layers
            fork._sink_origin = self.tokens
            fork._isolated = True
        if (dense_local and self.config.dilation_rates[0] == 1 and fork._local_turn_start is None
                and not self.config.local_window):
            w = self.config.segment_lengths[0]
            fork._local_turn_start = (self.tokens // w) * w
        return fork

    def generate(self, prompt_ids, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, stop_ids=None, on_token=None, seed: int | None = None,
                 remember: bool = False, isolate_window: bool = False,
                 choose=None, decode_weights: str = "float32") -> list[int]:
        """Answer ``prompt_ids`` with the whole history in view; see ``longnet.generate``."""
        from longnet.generate import generate

        return generate(self, prompt_ids, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                        on_token=on_token, seed=seed, remember=remember,
                        isolate_window=isolate_window, choose=choose,
                        decode_weights=decode_weights)

    # -- persistence

    def metadata(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "tokens": self.tokens,
            "model_id": self.model.model_id,
            "weights_hash": self.model.weights_hash,
            "config": self.config.to_dict(),
            "stream_offset": self.stream_offset,
            "stream_hash": self.stream_hash,
            "stream_hash_state": self._hash.state(),
            "dtype": str(self.dtype).removeprefix("torch."),
            "nbytes": self.nbytes,
            "level_starts": self._level_starts(),
            "local_first": self._window_first(),
        }

    def _level_starts(self) -> list[int | None]:
        starts = [self._state_start(level, False) for level in range(self.config.num_levels)]
        if self.config.local_window:
            starts[0] = None  # the sliding level's rows are saved apart ("local_first")
        return starts

    def save(self, directory) -> Path:
        """Write the memory to ``directory`` atomically.

        The tensors go to a new uniquely named file, are fsynced, and then
        ``memory.json`` (which names that file) is replaced with a temp-file + fsync +
        rename. A crash at any point leaves the previous save intact and loadable.
        """
        from safetensors.torch import save_file

        if self._local_turn_start is not None or self._isolated:
            raise RuntimeError("a fork holds a chat turn, not the long-term memory: "
                               "save the memory it was forked from")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        name = f"state-{self.tokens}-{secrets.token_hex(4)}.safetensors"
        temp = directory / f".{name}.tmp"
        tensors = {k: v.cpu() for k, v in self.state_dict().items()}
        meta = self.metadata()
        meta["state_file"] = name
        save_file(tensors, str(temp), metadata={"format_version": str(FORMAT_VERSION)})
        _fsync_file(temp)
        os.replace(temp, directory / name)
        meta_temp = directory / f".{METADATA_FILE}.{secrets.token_hex(4)}.tmp"
        meta_temp.write_text(json.dumps(meta, indent=2))
        _fsync_file(meta_temp)
        os.replace(meta_temp, directory / METADATA_FILE)
        _fsync_dir(directory)
        for old in directory.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)
        for stale in directory.glob(".*.tmp"):
            stale.unlink(missing_ok=True)
        return directory

    @classmethod
    def load(cls, directory, model, dtype: str | torch.dtype | None = None) -> Memory:
        """Load a saved memory for ``model``; refuses one made by another model or config."""
        from safetensors.torch import load_file

        directory = Path(directory)
        meta_path = directory / METADATA_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(f"no saved memory in {directory} (no {METADATA_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as error:
            raise MemoryMismatchError(f"{meta_path} is damaged: {error}") from error
        if meta.get("format_version") != FORMAT_VERSION:
            raise MemoryMismatchError(
                f"{directory} holds memory format {meta.get('format_version')!r}; this "
                f"version reads format {FORMAT_VERSION}: rebuild the memory")
        if meta.get("weights_hash") != model.weights_hash:
            raise MemoryMismatchError(
                f"the memory in {directory} was built by model {meta.get('model_id')!r} "
                f"(weights {str(meta.get('weights_hash'))[:12]}), not by the loaded model "
                f"{model.model_id!r} (weights {model.weights_hash[:12]}): rebuild it or "
                f"load the model it was made with")
        saved_config = meta.get("config", {})
        current = model.config.to_dict()
        differing = sorted(k for k in set(saved_config) | set(current)
                           if saved_config.get(k) != current.get(k))
        if differing:
            raise MemoryMismatchError(
                f"the memory in {directory} was built with another model configuration "
                f"(different {', '.join(differing)}): rebuild it or load it with that "
                f"configuration")
        memory = cls(model, dtype=dtype or meta.get("dtype"))
        memory.tokens = int(meta["tokens"])
        memory.stream_offset = int(meta["stream_offset"])
        memory._hash = StreamHash(**meta["stream_hash_state"])
        if memory._hash.hexdigest() != meta["stream_hash"]:
            raise MemoryMismatchError(f"{meta_path} is inconsistent (stream hash)")
        state_path = directory / meta["state_file"]
        if not state_path.is_file():
            raise MemoryMismatchError(f"{state_path} named by {meta_path} is missing")
        tensors = load_file(str(state_path), device=str(memory.device))

        def read(prefix: str, expected: tuple) -> torch.Tensor:
            """``kv [2, ...]`` from ``<prefix>.k`` and ``.v``, refused unless ``expected``."""
            try:
                k, v = tensors[f"{prefix}.k"], tensors[f"{prefix}.v"]
            except KeyError as error:
                raise MemoryMismatchError(f"{state_path} lacks {error}") from error
            if tuple(k.shape) != expected or tuple(v.shape) != expected:
                raise MemoryMismatchError(f"{state_path}: {prefix} has shape "
                                          f"{tuple(k.shape)}, expected {expected}")
            return torch.stack((k, v)).to(memory.dtype)

        c = memory.config
        G = c.num_heads // c.num_kv_heads
        for level, start in enumerate(meta["level_starts"]):
            if start is None:
                continue
            blocks = memory.valid_blocks(level, start)
            slots = min(c.dilation_rates[level], G)
            expected = (c.num_kv_heads, slots, blocks, c.head_dim)
            for layer in range(c.num_layers):
                kv = read(f"layers.{layer}.levels.{level}", expected)
                memory.states[layer][level] = LevelState(start, kv)
        local_first = meta.get("local_first")
        if c.local_window and memory.tokens:
            if local_first is None:
                raise MemoryMismatchError(f"{meta_path} lacks the sliding window's rows")
            rows = memory.tokens - int(local_first)
            expected = (c.num_kv_heads, rows, c.head_dim)
            for layer in range(c.num_layers):
                kv = read(f"layers.{layer}.local", expected)
                memory.local[layer] = LocalWindowState(int(local_first), rows, kv)
        n_sinks = min(c.attention_sinks, memory.tokens) if c.local_window else 0
        for layer in range(c.num_layers if n_sinks else 0):
            memory.sinks[layer] = read(f"layers.{layer}.sinks",
                                       (c.num_kv_heads, n_sinks, c.head_dim))
        return memory

    def __repr__(self) -> str:
        return (f"Memory(tokens={self.tokens}, levels={self.config.num_levels}, "
                f"nbytes={self.nbytes:,}, dtype={str(self.dtype).removeprefix('torch.')})")


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- attention


def _attend_few(levels, level_bias, first_level_dense: bool, local=None, sinks=None):
    """A few new tokens against every level at once: ``[Hq, T, D]``.

    Each level's scores are one masked batched matmul of the heads against the slot
    they read; eq. 10 mixing is one softmax over all levels' scores together. ``local``
    = (q, kv ``[2, Hkv, n, D]``, WindowPlan): the sliding window, bias column 0.
    ``sinks`` = (q, keys, values, visible) from ``Memory._sink_rows``: attention sinks,
    part of level 0 (its bias, its softmax)."""
    scores, values = [], []
    local_columns = 0  # the window's and the sinks' columns, before the levels'
    if local is not None:
        q_local, kv_local, window = local
        Hq, T, D = q_local.shape
        Hkv, n = kv_local.shape[1], kv_local.shape[2]
        grouped = q_local.reshape(Hkv, (Hq // Hkv) * T, D).to(kv_local.dtype)
        local_scores = torch.bmm(grouped, kv_local[0].transpose(1, 2)).reshape(Hq, T, n)
        local_scores = local_scores.float() + window.mask
        bias0 = None if level_bias is None else level_bias[:, 0, None, None].float()
        if bias0 is not None:
            local_scores = local_scores + bias0
            level_bias = level_bias[:, 1:]
        scores.append(local_scores)
        local_columns = n
        if sinks is not None:
            q_sink, k_sink, v_sink, visible = sinks
            S = k_sink.shape[1]
            grouped = q_sink.reshape(Hkv, (Hq // Hkv) * T, D).to(k_sink.dtype)
            sink_scores = torch.bmm(grouped, k_sink.transpose(1, 2)).reshape(Hq, T, S).float()
            sink_scores = sink_scores.masked_fill(~visible, float("-inf"))
            if bias0 is not None:
                sink_scores = sink_scores + bias0
            scores.append(sink_scores)
            local_columns = n + S
    _Hq, T, D = (levels[0][1] if levels else local[0]).shape
    for index, (plan, q, kv) in enumerate(levels):
        groups = plan.groups
        Hkv, slots, blocks = kv.shape[1], kv.shape[2], kv.shape[3]
        keys = kv[0].reshape(Hkv * slots, blocks, D)
        q_grouped = q if groups.identity else q[groups.head_of_grouped]
        q_grouped = q_grouped.reshape(Hkv * slots, groups.per_slot * T, D).to(keys.dtype)
        level_scores = torch.baddbmm(plan.key_bias, q_grouped, keys.transpose(1, 2))
        level_scores = level_scores.reshape(-1, T, blocks)
        if not groups.identity:
            level_scores = level_scores[groups.grouped_of_head]
        if level_bias is not None:
            level_scores = level_scores + level_bias[:, index, None, None]
        scores.append(level_scores.float())
        values.append(kv[1].reshape(Hkv * slots, blocks, D))
    joint = torch.cat(scores, dim=-1)
    weights = torch.softmax(joint, dim=-1)
    if not first_level_dense:  # a row no level keeps reads nothing
        weights = weights.nan_to_num(0.0)
    out = None
    begin = 0
    if local is not None:
        n = scores[0].shape[-1]
        w = weights[..., :n].reshape(Hkv, (Hq // Hkv) * T, n)
        out = torch.bmm(w.to(kv_local.dtype), kv_local[1]).reshape(Hq, T, D).float()
        if sinks is not None:
            w = weights[..., n:local_columns].reshape(Hkv, (Hq // Hkv) * T, local_columns - n)
            out = out + torch.bmm(w.to(v_sink.dtype), v_sink).reshape(Hq, T, D).float()
        begin = local_columns
        scores = scores[2:] if sinks is not None else scores[1:]
    for (plan, _, _), value, level_scores in zip(levels, values, scores):
        groups = plan.groups
        blocks = level_scores.shape[-1]
        w = weights[..., begin:begin + blocks]
        begin += blocks
        if groups.identity:
            w = w.reshape(value.shape[0], groups.per_slot * T, blocks)
        else:
            padded = w.new_zeros(groups.head_of_grouped.numel(), T, blocks)
            padded[groups.grouped_of_head] = w
            w = padded.reshape(value.shape[0], groups.per_slot * T, blocks)
        level_out = torch.bmm(w.to(value.dtype), value).reshape(-1, T, D)
        if not groups.identity:
            level_out = level_out[groups.grouped_of_head]
        out = level_out.float() if out is None else out + level_out
    return out


def _attend_compact(plan: LevelPlan, q, kv):
    """The new tokens of one level through ``level_attention``: each slot's blocks are a
    dense sequence (segment length ceil(w/r)) read by the heads of that slot."""
    Hq, T, D = q.shape
    groups = plan.groups
    Hkv, slots, blocks = kv.shape[1], kv.shape[2], kv.shape[3]
    q_grouped = q if groups.identity else q[groups.head_of_grouped]
    rows = plan.query_source.shape[1]
    q_rows = q_grouped.gather(1, plan.query_source[..., None].expand(-1, -1, D))
    q_rows = q_rows.reshape(Hkv * slots, groups.per_slot, rows, D).to(kv.dtype)
    keys = kv[0].reshape(Hkv * slots, 1, blocks, D)
    values = kv[1].reshape(Hkv * slots, 1, blocks, D)
    out, lse = level_attention(q_rows, keys, values, plan.blocks_per_segment, 1,
                               is_causal=True, scale=1.0)  # q arrives scaled
    out = out.reshape(-1, D)[plan.out_index.reshape(-1)].reshape(Hq, T, D)
    lse = lse.reshape(-1)[plan.out_index.reshape(-1)].reshape(Hq, T)
    out = torch.where(plan.out_mask[..., None], out, torch.zeros((), dtype=out.dtype,
                                                                  device=out.device))
    lse = torch.where(plan.out_mask, lse.float(), float("-inf"))
    return out, lse
