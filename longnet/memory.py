"""The bounded memory of an ever-growing token stream, read by a LongNet model.

Why it is bounded. Segments are absolute (position t lies in segment t // w of a
level), so once a segment of a level is complete no later token attends into it at
that level. What later tokens need is, per layer and level, only the rows of the
current segment that the heads' offsets select: query head h keeps rows with
(t mod w) mod r == h mod r, so the G heads sharing a kv head need at most
min(G, r) offsets × ceil(w / r) rows. That is the whole state, whatever the
history's length; it grows by about one level each time the history doubles.

Layout. Per layer and level, keys and values are kept as ``[Hkv, blocks, slots, D]``:
block j of the current segment starts at ``start + j·r`` and slot s of kv head g
holds the row at offset ``(g·G + s) mod r`` in that block (the offsets of g's
heads). Seen as one sequence ``[Hkv, blocks·slots, D]`` with segment length
``ceil(w/r)·slots`` and dilation rate ``slots``, local head s of group g selects
exactly slot ``s mod slots``, i.e. the rows the real head selects, in the same
order and at the same sparsified index. So attention against the state is one
``level_attention`` call on that compact sequence, kv heads in the batch dimension,
with no copy of the state: new rows are written in place after the valid ones.

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

from longnet.attention import level_attention, merge_levels
from longnet.model import LongNetConfig, autocast, choose_dtype

FORMAT_VERSION = 1
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
    """One layer's keys/values for one level: rows of the segment starting at ``start``."""

    start: int
    k: torch.Tensor  # [Hkv, capacity_blocks, slots, D]
    v: torch.Tensor


@dataclass
class LevelPlan:
    """Index arithmetic for one level and one append; computed once, used by every layer.

    The compact sequence covers segments start, start + w, ... up to the chunk's end;
    ``blocks_per_segment`` blocks of ``slots`` rows each per segment.
    """

    level: int
    start: int  # first position of the compact sequence (a segment start)
    segment: int  # w (or a length past the end for an unbounded local turn window)
    rate: int
    slots: int
    blocks_per_segment: int
    total_blocks: int  # blocks of the compact sequence
    first_block: int  # first block holding a new row: queries start there
    keep_from_block: int  # blocks before this belong to finished segments
    old_blocks: int  # valid blocks already in the state
    new_source: torch.Tensor  # [Hkv, M] index of the new token feeding each query-region row
    new_mask: torch.Tensor  # [Hkv, M] row is a new token
    old_mask: torch.Tensor  # [Hkv, M] row is an existing state row
    out_index: torch.Tensor  # [Hq, T] query-region row holding head h's output for token t
    out_mask: torch.Tensor  # [Hq, T] head h selects token t at this level
    positions: torch.Tensor  # [T] each new token's index in its sparsified segment
    unbounded: bool = False  # a fork's local level: one segment that keeps growing
    # Few-query path only: which block of its slot each head may read for each new token.
    key_mask: torch.Tensor | None = None  # [Hq, T, total_blocks]
    head_slots: torch.Tensor | None = None  # [G] slot read by each local head

    @property
    def query_rows(self) -> int:
        return (self.total_blocks - self.first_block) * self.slots


def _slot_offsets(level_rate: int, group_size: int, kv_heads: int) -> np.ndarray:
    """[Hkv, slots]: the offset inside a block that slot s of kv head g holds."""
    slots = min(level_rate, group_size)
    g = np.arange(kv_heads)[:, None]
    s = np.arange(slots)[None, :]
    return (g * group_size + s) % level_rate


def plan_level(config: LongNetConfig, level: int, tokens: int, count: int,
               state_start: int | None, device, unbounded_segment: bool = False,
               few_queries: bool = False) -> LevelPlan | None:
    """Plan level ``level`` for ``count`` new tokens after ``tokens``; None if no head
    selects any of them and no row needs keeping (the state only drops finished rows)."""
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
    blocks_per_segment = math.ceil(w / r)
    offsets = _slot_offsets(r, G, Hkv)  # [Hkv, slots]

    new_pos = np.arange(tokens, end)
    in_segment = (new_pos - start) % w
    selected = (in_segment % r) < min(Hq, r)  # some head keeps this row
    if not selected.any():
        return None

    last_segment = (end - 1 - start) // w
    last_blocks = math.ceil((end - (start + last_segment * w)) / r)
    total_blocks = last_segment * blocks_per_segment + last_blocks
    first_block = ((tokens - start) // w) * blocks_per_segment + ((tokens - start) % w) // r
    old_blocks = math.ceil((tokens - start) / r) if state_start == start else 0

    # Rows of the query region (from first_block to the end), per kv head.
    block = np.arange(first_block, total_blocks)
    seg, j = block // blocks_per_segment, block % blocks_per_segment
    inner = j[None, :, None] * r + offsets[:, None, :]  # [Hkv, blocks, slots]
    position = start + seg[None, :, None] * w + inner
    exists = (inner < w) & (position < end)
    new_mask = exists & (position >= tokens)
    old_mask = exists & (position < tokens) & (state_start == start)
    new_source = np.where(new_mask, position - tokens, 0)

    # Where head h finds its output for new token t.
    t_seg, t_in = (new_pos - start) // w, (new_pos - start) % w
    head = np.arange(Hq)[:, None]
    head_slot = (head % G) % slots
    out_mask = (t_in[None, :] % r) == (head % r)
    row = ((t_seg * blocks_per_segment + t_in // r)[None, :] - first_block) * slots + head_slot
    out_index = np.where(out_mask, row, 0)

    as_tensor = lambda a: torch.as_tensor(a, device=device)  # noqa: E731
    key_mask = head_slots = None
    if few_queries:
        # Key block b of head h's slot: its position, and whether token t may read it
        # (same segment, not after t, and h keeps t at this level).
        b = np.arange(total_blocks)
        b_seg, b_j = b // blocks_per_segment, b % blocks_per_segment
        head_offset = offsets[head[:, 0] // G, head_slot[:, 0]]  # [Hq]
        k_inner = b_j[None, :] * r + head_offset[:, None]  # [Hq, blocks]
        k_pos = start + b_seg[None, :] * w + k_inner
        key_mask = ((k_inner < w)[:, None, :] & (b_seg[None, None, :] == t_seg[None, :, None])
                    & (k_pos[:, None, :] <= new_pos[None, :, None]) & out_mask[:, :, None])
        key_mask = as_tensor(key_mask)
        head_slots = as_tensor(np.arange(G) % slots)
    return LevelPlan(
        level=level, start=start, segment=w, rate=r, slots=slots,
        blocks_per_segment=blocks_per_segment, total_blocks=total_blocks,
        first_block=first_block, keep_from_block=last_segment * blocks_per_segment,
        old_blocks=old_blocks,
        new_source=as_tensor(new_source.reshape(Hkv, -1)),
        new_mask=as_tensor(new_mask.reshape(Hkv, -1)),
        old_mask=as_tensor(old_mask.reshape(Hkv, -1)),
        out_index=as_tensor(out_index), out_mask=as_tensor(out_mask),
        positions=as_tensor(in_segment // r), unbounded=unbounded_segment,
        key_mask=key_mask, head_slots=head_slots,
    )


# --------------------------------------------------------------------------- memory


class Memory:
    """What a LongNet model keeps of a token stream: bounded, appendable, saveable.

    ``append(token_ids)`` runs only the new tokens against the state and extends it;
    in any chunking it gives the logits of one full forward pass over the stream.
    """

    # Up to this many new tokens, attention against the state is computed here with
    # one masked matmul per level (decoding, questions); longer chunks go through
    # ``level_attention``, whose per-call set-up dominates for a handful of queries.
    few_queries = 64

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
        self._local_turn_start: int | None = None  # set in a fork reading a chat turn

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
        for begin in range(0, ids.numel(), self.chunk_size):
            chunk = ids[begin:begin + self.chunk_size]
            out = self._step(chunk, logits=return_logits)
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
        plans = []
        for level in range(c.num_levels):
            unbounded = level == 0 and self._local_turn_start is not None
            state_start = self._state_start(level, unbounded)
            plans.append(plan_level(c, level, self.tokens, ids.numel(), state_start,
                                    self.device, unbounded_segment=unbounded,
                                    few_queries=ids.numel() <= self.few_queries))
        positions = torch.arange(self.tokens, self.tokens + ids.numel(), device=self.device)
        with autocast(self.device, self.dtype):
            hidden = self.model.run_layers(
                ids[None], lambda layer: self._attention(layer, plans, positions),
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

    def _drop_finished_segments(self) -> None:
        """The state of a level whose segment ended is never read again: free it."""
        for level, w in enumerate(self.config.segment_lengths):
            if level == 0 and self._local_turn_start is not None:
                continue
            current = (self.tokens // w) * w
            for layer_states in self.states:
                state = layer_states[level]
                if state is not None and state.start != current:
                    layer_states[level] = None

    def _attention(self, layer: int, plans: list[LevelPlan | None], positions: torch.Tensor):
        c = self.config
        rotary = self.model.rotary
        bias = getattr(self.model.layers[layer].self_attn, "level_bias", None)

        def attend(q, k, v):
            q, k, v = q[0], k[0], v[0]  # the memory reads one stream: batch 1
            if c.position_mode == "absolute":
                q, k = rotary(q, positions), rotary(k, positions)
            outs, lses, used = [], [], []
            for plan in plans:
                if plan is None:
                    continue
                q_level, k_level = q, k
                if c.position_mode == "dilated":
                    q_level, k_level = rotary(q, plan.positions), rotary(k, plan.positions)
                out, lse = self._attend_level(layer, plan, q_level, k_level, v)
                outs.append(out[None])
                lses.append(lse[None])
                used.append(plan.level)
            level_bias = None if bias is None else bias[:, used]
            out, _ = merge_levels(outs, lses, level_bias=level_bias)
            return out

        return attend

    def _attend_level(self, layer: int, plan: LevelPlan, q, k_new, v_new):
        """Write the new rows into the level's state and attend against it."""
        Hkv, D = k_new.shape[0], k_new.shape[-1]
        state = self.states[layer][plan.level]
        if state is not None and state.start != plan.start:
            state = None
        k_buf, v_buf = self._workspace(state, plan, Hkv, D, k_new.dtype)
        rows_from = plan.first_block * plan.slots
        rows_to = plan.total_blocks * plan.slots
        index = plan.new_source[..., None].expand(Hkv, -1, D)
        new_mask, old_mask = plan.new_mask[..., None], plan.old_mask[..., None]
        for buf, new in ((k_buf, k_new), (v_buf, v_new)):
            flat = buf.view(Hkv, -1, D)
            region = flat[:, rows_from:rows_to]
            gathered = new.to(buf.dtype).gather(1, index)
            region.copy_(torch.where(new_mask, gathered,
                                     torch.where(old_mask, region, torch.zeros_like(region))))

        if plan.key_mask is not None:
            out, lse = self._attend_few(plan, q, k_buf, v_buf)
        else:
            out, lse = self._attend_compact(plan, q, k_buf, v_buf)

        # Keep only the rows of the segment the stream is now in.
        if plan.keep_from_block:
            keep = slice(plan.keep_from_block, plan.total_blocks)
            k_buf, v_buf = k_buf[:, keep].clone(), v_buf[:, keep].clone()
            start = plan.start + (plan.keep_from_block // plan.blocks_per_segment) * plan.segment
        else:
            start = plan.start
        self.states[layer][plan.level] = LevelState(start, k_buf, v_buf)
        return out, lse

    def _attend_few(self, plan: LevelPlan, q, k_buf, v_buf):
        """Each head against the blocks of its own slot, masked: ``[Hq, T, D]``, lse."""
        Hkv, _, slots, D = k_buf.shape
        Hq, T = q.shape[0], q.shape[1]
        G = Hq // Hkv
        keys = k_buf[:, :plan.total_blocks].transpose(1, 2)  # [Hkv, slots, blocks, D]
        values = v_buf[:, :plan.total_blocks].transpose(1, 2)
        if slots == 1:
            keys, values = keys.expand(Hkv, G, -1, D), values.expand(Hkv, G, -1, D)
        elif slots != G:
            keys, values = keys[:, plan.head_slots], values[:, plan.head_slots]
        scores = torch.matmul(q.reshape(Hkv, G, T, D).to(keys.dtype), keys.transpose(-1, -2))
        scores = scores.reshape(Hq, T, -1).float() * (D ** -0.5)
        scores = scores.masked_fill(~plan.key_mask, float("-inf"))
        lse = torch.logsumexp(scores, dim=-1)
        weights = torch.exp(scores - torch.where(torch.isfinite(lse), lse, 0.0)[..., None])
        out = torch.matmul(weights.reshape(Hkv, G, T, -1).to(values.dtype), values)
        return out.reshape(Hq, T, D), lse

    def _attend_compact(self, plan: LevelPlan, q, k_buf, v_buf):
        """The new tokens' rows through ``level_attention`` on the compact sequence."""
        Hkv, _, _, D = k_buf.shape
        Hq, T = q.shape[0], q.shape[1]
        G = Hq // Hkv
        rows_to = plan.total_blocks * plan.slots
        # Queries: the query region's rows, each head reading its group's new tokens.
        q_rows = q.reshape(Hkv, G, T, D).gather(
            2, plan.new_source[:, None, :, None].expand(Hkv, G, -1, D))
        keys = k_buf.view(Hkv, -1, D)[:, :rows_to].unsqueeze(1)
        values = v_buf.view(Hkv, -1, D)[:, :rows_to].unsqueeze(1)
        out, lse = level_attention(q_rows.to(keys.dtype), keys, values,
                                   plan.blocks_per_segment * plan.slots, plan.slots,
                                   is_causal=True)
        out = out.reshape(Hq, -1, D).gather(1, plan.out_index[..., None].expand(Hq, T, D))
        lse = lse.reshape(Hq, -1).gather(1, plan.out_index)
        out = torch.where(plan.out_mask[..., None], out, torch.zeros((), dtype=out.dtype,
                                                                      device=out.device))
        lse = torch.where(plan.out_mask, lse.float(), float("-inf"))
        return out, lse

    def _workspace(self, state: LevelState | None, plan: LevelPlan, Hkv: int, D: int, dtype):
        """Buffers holding the old blocks with room for all of this call's blocks."""
        need = plan.total_blocks
        if state is not None and state.k.shape[1] >= need:
            return state.k, state.v
        capacity = need
        if plan.keep_from_block == 0 and state is not None:
            # Grow geometrically (bounded by the segment) so decoding rarely copies.
            limit = 2 * state.k.shape[1] if plan.unbounded else plan.blocks_per_segment
            capacity = max(need, min(2 * state.k.shape[1], limit))
        shape = (Hkv, capacity, plan.slots, D)
        k = torch.zeros(shape, dtype=dtype, device=self.device)
        v = torch.zeros(shape, dtype=dtype, device=self.device)
        if state is not None and plan.old_blocks:
            k[:, :plan.old_blocks] = state.k[:, :plan.old_blocks]
            v[:, :plan.old_blocks] = state.v[:, :plan.old_blocks]
        return k, v

    # -- what is held

    @property
    def nbytes(self) -> int:
        """Bytes held by the state tensors."""
        return sum(t.numel() * t.element_size()
                   for layer in self.states for s in layer if s is not None for t in (s.k, s.v))

    @property
    def stream_hash(self) -> str:
        return self._hash.hexdigest()

    def valid_blocks(self, level: int, start: int) -> int:
        return math.ceil((self.tokens - start) / self.config.dilation_rates[level])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The state's valid rows (rows past the stream's end zeroed), by layer and level."""
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
                inner = torch.arange(blocks, device=self.device)[None, :, None] * r \
                    + offsets[:, None, :]
                valid = ((state.start + inner) < self.tokens)
                if self._local_turn_start is None or level:
                    valid &= inner < w
                for name, tensor in (("k", state.k), ("v", state.v)):
                    rows = tensor[:, :blocks]
                    result[f"layers.{layer}.levels.{level}.{name}"] = torch.where(
                        valid[..., None], rows, torch.zeros((), dtype=rows.dtype,
                                                            device=rows.device)).contiguous()
        return result

    # -- generation

    def fork(self, dense_local: bool = True) -> Memory:
        """A scratch continuation of this memory: appending to it reads this memory's
        state but never changes it. With ``dense_local`` (and a dense first level), the
        fork's first level keeps every row from the current local segment's start
        densely instead of cutting at the next segment boundary, so a chat turn always
        sees itself whole."""
        fork = Memory.__new__(Memory)
        fork.__dict__.update(self.__dict__)
        fork._hash = StreamHash(**self._hash.state())
        fork.states = [[None if s is None else LevelState(s.start, s.k, s.v) for s in layer]
                       for layer in self.states]
        if dense_local and self.config.dilation_rates[0] == 1 and fork._local_turn_start is None:
            w = self.config.segment_lengths[0]
            fork._local_turn_start = (self.tokens // w) * w
        return fork

    def generate(self, prompt_ids, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, stop_ids=None, on_token=None, seed: int | None = None,
                 remember: bool = False) -> list[int]:
        """Answer ``prompt_ids`` with the whole history in view; see ``longnet.generate``."""
        from longnet.generate import generate

        return generate(self, prompt_ids, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                        on_token=on_token, seed=seed, remember=remember)

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
        }

    def _level_starts(self) -> list[int | None]:
        return [self._state_start(level, False) for level in range(self.config.num_levels)]

    def save(self, directory) -> Path:
        """Write the memory to ``directory`` atomically.

        The tensors go to a new uniquely named file, are fsynced, and then
        ``memory.json`` (which names that file) is replaced with a temp-file + fsync +
        rename. A crash at any point leaves the previous save intact and loadable.
        """
        from safetensors.torch import save_file

        if self._local_turn_start is not None:
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
        c = memory.config
        G = c.num_heads // c.num_kv_heads
        for level, start in enumerate(meta["level_starts"]):
            if start is None:
                continue
            blocks = memory.valid_blocks(level, start)
            slots = min(c.dilation_rates[level], G)
            expected = (c.num_kv_heads, blocks, slots, c.head_dim)
            for layer in range(c.num_layers):
                try:
                    k = tensors[f"layers.{layer}.levels.{level}.k"]
                    v = tensors[f"layers.{layer}.levels.{level}.v"]
                except KeyError as error:
                    raise MemoryMismatchError(f"{state_path} lacks {error}") from error
                if tuple(k.shape) != expected or tuple(v.shape) != expected:
                    raise MemoryMismatchError(
                        f"{state_path}: layer {layer} level {level} has shape "
                        f"{tuple(k.shape)}, expected {expected}")
                memory.states[layer][level] = LevelState(start, k.to(memory.dtype),
                                                         v.to(memory.dtype))
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
