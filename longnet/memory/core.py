"""``Memory``: the bounded memory of a token stream (see ``longnet.memory``).

``append`` runs each chunk through the model's layers with an attention that plans the
new rows (``longnet.memory.plan``), stores them in the level states, the sliding window
and the sinks, and attends to the state (``longnet.memory.attend``); segments that ended
are dropped. A fork reads a chat turn against the memory without changing it
(``generate``). What a memory holds and its file format: ``MemoryState``
(``longnet.memory.state``).
"""

from __future__ import annotations

import math

import torch

from longnet.attention import (
    merge_levels,
    sink_attention,
    sink_visibility,
    sliding_window_attention,
)
from longnet.config import SHUT_GATE, LongNetConfig
from longnet.device import autocast, choose_dtype
from longnet.memory.attend import _attend_compact, _attend_few
from longnet.memory.plan import LevelPlan, WindowPlan, plan_level
from longnet.memory.rows import RowStore
from longnet.memory.state import LevelState, LocalWindowState, MemoryState, StreamHash
from longnet.reader import gate_offset, reading_turn


class Memory(MemoryState):
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
        self._functional = False  # a training fork: rows joined, buffers never written
        self._window_split = None  # its window's (memory rows, turn rows, first position)
        self.rows: RowStore | None = None  # every token's rows on disk (``keep_rows``)
        self._row_pieces: list | None = None  # this step's (k, v) per layer, for ``rows``
        self.recalled: list[tuple[int, int]] = []  # spans a recall fork reads (``recall_fork``)

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
        """Run one chunk through the layers against the state; advance ``tokens``. A fork's
        tokens are a turn's: the model's reader (``longnet.reader``), if it has one, reads
        them; the memory's own tokens are always written by the frozen model."""
        with reading_turn(self.model, self._scratch):
            return self._run(ids, logits, last_only)

    def _run(self, ids: torch.Tensor, logits: bool, last_only: bool):
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
        self._row_pieces = [None] * c.num_layers if self._keeps_rows() else None
        with autocast(self.device, self.dtype):
            hidden = self.model.run_layers(
                ids[None], lambda layer: self._attention(layer, plans, absolute, few, window),
                logits=False)
        if self._row_pieces is not None:
            keys = torch.stack([k for k, _ in self._row_pieces])  # [L, Hkv, T, D]
            values = torch.stack([v for _, v in self._row_pieces])
            self.rows.append(torch.stack((keys, values), dim=1).permute(3, 0, 1, 2, 4))
            self._row_pieces = None
        with autocast(self.device, self.dtype):
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
        offsets = [gate_offset(self.model, index) for index in range(len(biases))]
        biases = [bias if offset is None else bias + offset
                  for bias, offset in zip(biases, offsets)]
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
        offset = gate_offset(self.model, layer)  # a reader reading a turn
        if bias is not None and offset is not None:
            bias = bias + offset
        rotate = self.model.rotary.rotate

        def attend(q, k, v):
            q, k, v = q[0], k[0], v[0]  # the memory reads one stream: batch 1
            if q.dtype != self.dtype and q.is_floating_point():
                # a turn run under another autocast dtype than the memory's (a bf16 reader
                # step over a float32 memory): its rows are read in the memory's dtype
                q, k, v = q.to(self.dtype), k.to(self.dtype), v.to(self.dtype)
            if self._row_pieces is not None:  # the key before any rotation, and the value
                self._row_pieces[layer] = (k, v)
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
                if local is not None and self._window_split is not None:
                    # A training turn: the memory's rows are constants (no gradient to
                    # compute for them), the turn's own rows are read causally; the two
                    # parts are merged as levels are, both under level 0's gate.
                    q_local, _, _ = local
                    old, new, old_first = self._window_split
                    o, l = sliding_window_attention(q_local[None], new[0][None], new[1][None],
                                                    self.config.local_window, scale=1.0)
                    outs.append(o[0])
                    lses.append(l[0])
                    o, l = _attend_constant_rows(q_local, old, old_first, self.tokens,
                                                 self.config.local_window)
                    outs.append(o)
                    lses.append(l)
                    at = columns.index(0)
                    columns = columns[:at + 1] + [0] + columns[at + 1:]
                    level_bias = None if bias is None else bias[:, columns]
                elif local is not None:
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
        if self._functional:  # a training turn: the rows joined, no buffer written
            new = torch.stack((k_new, v_new)).to(kv.dtype)
            self._window_split = (kv[:, :, plan.reads_from:plan.keep], new,
                                  plan.new_first + plan.reads_from)
            kv = torch.cat((kv[:, :, :plan.keep], new), dim=2)
        else:
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
            if self._functional and state is not None and kv is state.kv:
                # a training turn: a copy of the level's rows with its own, never the
                # memory's buffer (gradients reach the turn's rows only)
                kv = kv.index_put((torch.zeros_like(g), g, s, b), k_new[g, src].to(kv.dtype))
                kv = kv.index_put((torch.ones_like(g), g, s, b), v_new[g, src].to(kv.dtype))
            else:
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

    # -- every token's rows (``longnet.memory.rows``)

    def keep_rows(self, directory) -> RowStore:
        """From now on, also write every token's rows (all layers, float16) to
        ``directory``'s row file, starting at this memory's next token; a row file there
        from before is replaced. ``save`` into the same directory records it."""
        self.rows = RowStore.for_config(directory, self.config, start=self.tokens, fresh=True)
        return self.rows

    def _keeps_rows(self) -> bool:
        if self.rows is None or self._scratch:
            return False
        end = self.rows.end
        if end > self.tokens:  # rows of tokens read after the last save: read again now
            self.rows.truncate(self.tokens)
        elif end < self.tokens:  # rows missing (a write failed): the store cannot go on
            self.rows = None
            return False
        return True

    def recall_fork(self, spans, reserve_tokens: int = 0) -> Memory:
        """A fork whose sliding window holds, in place of the history's last tokens, the
        stored rows of ``spans`` (``[(start, end), ...]`` token positions of this memory,
        in the order given, the last nearest the turn), as if the turn came right after
        reading them: the model attends to what the writer computed for those tokens in
        their own context, and nothing of their text is run again. The sinks and the far
        levels are the memory's. Spans are cut to what fits the window beside the turn
        (``recalled`` says what was kept). Needs a sliding window and a row store."""
        c = self.config
        if not c.local_window:
            raise ValueError("recall_fork needs a memory with a sliding window")
        if self.rows is None:
            raise ValueError("this memory keeps no rows (Memory.keep_rows)")
        sinks = c.attention_sinks
        room = max(0, c.local_window - 1 - reserve_tokens - sinks)
        kept, total = [], 0
        for start, end in reversed([(int(a), int(b)) for a, b in spans]):
            start = max(start, end - (room - total))  # the span's end is kept, if cut
            if end <= start or not self.rows.covers(start, end):
                continue
            kept.append((start, end))
            total += end - start
            if total >= room:
                break
        kept.reverse()
        first_sinks = min(sinks, self.tokens)
        if sinks and self.tokens < c.local_window + sinks and (not kept or kept[0][0] != 0) \
                and self.rows.covers(0, first_sinks):
            # A short history's turn would find its sinks in the window: put them there.
            kept.insert(0, (0, first_sinks))
        fork = self.fork(dense_local=True, reserve_tokens=0)
        fork._isolated = True  # not the memory: never saved
        fork.recalled = kept
        rows = [self.rows.read(a, b) for a, b in kept]
        n = sum(b - a for a, b in kept)
        first = self.tokens - n  # the recalled rows stand where the window's last rows were
        if c.position_mode == "dilated":  # window keys are rotated from the window's first
            positions = torch.arange(n, device=self.device)
        else:
            positions = torch.arange(first, self.tokens, device=self.device)
        cos, sin = self.model.rotary.cos_sin(positions)
        local = []
        for layer in range(c.num_layers):
            kv = torch.zeros((2, c.num_kv_heads, n + max(reserve_tokens, 1), c.head_dim),
                             dtype=self.dtype, device=self.device)
            if n:
                layer_rows = torch.cat([r[layer] for r in rows], dim=2).to(self.device)
                keys = layer_rows[0].to(torch.float32)
                kv[0, :, :n] = self.model.rotary.rotate(keys, cos, sin).to(self.dtype)
                kv[1, :, :n] = layer_rows[1].to(self.dtype)
            local.append(LocalWindowState(first, n, kv))
        fork.local = local
        return fork

    def training_fork(self, isolate_window: bool = False, recall=None) -> Memory:
        """A fork for training a reader: its turn's rows are joined to the memory's rows
        in new tensors (``torch.cat``, an out-of-place ``index_put``), never written into
        the memory's buffers, so a turn's loss can be differentiated and the gradient
        reaches the turn's rows only; the memory's values are only read (its rows become
        ordinary tensors the first time: one copy for all the turns read after it).
        ``recall``: spans whose stored rows stand in the window (``recall_fork``)."""
        self._normal_tensors()
        if recall is not None:
            fork = self.recall_fork(recall)
        else:
            fork = self.fork(dense_local=True, isolate_window=isolate_window)
        fork._functional = True
        return fork

    def _normal_tensors(self) -> None:
        """Rows read in inference mode cannot be saved for a backward pass: copy them into
        ordinary tensors, once per memory (the same values; every later fork reuses them)."""

        def normal(t):
            return t.clone() if t is not None and t.is_inference() else t

        self.states = [[None if st is None else LevelState(st.start, normal(st.kv))
                        for st in layer] for layer in self.states]
        self.local = [None if w is None else LocalWindowState(w.first, w.rows, normal(w.kv))
                      for w in self.local]
        self.sinks = [normal(t) for t in self.sinks]

    def generate(self, prompt_ids, max_new_tokens: int = 256, temperature: float = 0.0,
                 top_p: float = 1.0, stop_ids=None, on_token=None, seed: int | None = None,
                 remember: bool = False, isolate_window: bool = False,
                 choose=None, decode_weights: str = "float32", recall=None) -> list[int]:
        """Answer ``prompt_ids`` with the whole history in view; see ``longnet.generate``."""
        from longnet.generate import generate

        return generate(self, prompt_ids, max_new_tokens=max_new_tokens,
                        temperature=temperature, top_p=top_p, stop_ids=stop_ids,
                        on_token=on_token, seed=seed, remember=remember,
                        isolate_window=isolate_window, choose=choose,
                        decode_weights=decode_weights, recall=recall)

    def __repr__(self) -> str:
        return (f"Memory(tokens={self.tokens}, levels={self.config.num_levels}, "
                f"nbytes={self.nbytes:,}, dtype={str(self.dtype).removeprefix('torch.')})")


def _attend_constant_rows(q: torch.Tensor, rows: torch.Tensor, first: int, query_first: int,
                          window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A training turn's queries ``q [Hq, T, D]`` (scaled, rotated) against the memory's
    window rows ``rows [2, Hkv, K, D]`` at positions ``first …``, which are constants: the
    query at position ``query_first + t`` sees the rows after ``query_first + t - window``.
    Returns ``(out [Hq, T, D], lse [Hq, T])`` (lse float32); the gradient reaches ``q``
    only, never the rows (``sliding_window_attention`` would compute one for each)."""
    Hq, T, D = q.shape
    Hkv, K = rows.shape[1], rows.shape[2]
    if K == 0:
        return q.new_zeros(q.shape), q.new_full((Hq, T), float("-inf"), dtype=torch.float32)
    # The products in the rows' dtype (bf16 rows: the fast matmul), the softmax in float32.
    keys, values = rows[0].detach(), rows[1].detach()
    grouped = q.to(keys.dtype).reshape(Hkv, Hq // Hkv, T, D)
    scores = torch.einsum("hgtd,hkd->hgtk", grouped, keys).float()
    key_pos = first + torch.arange(K, device=q.device)
    query_pos = query_first + torch.arange(T, device=q.device)
    visible = key_pos[None, :] > query_pos[:, None] - window
    scores = scores.masked_fill(~visible, -1e30)  # finite: a query seeing none weighs 0
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse[..., None]).to(values.dtype)
    out = torch.einsum("hgtk,hkd->hgtd", weights, values)
    return out.reshape(Hq, T, D).to(q.dtype), lse.reshape(Hq, T)

