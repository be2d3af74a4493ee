"""The sharded attention: this rank's queries against its own rows and those received
from the ranks sharing its segments, per head offset and level, with the sliding window
and its sinks; one autograd node per call, whose backward returns the received rows'
gradients to their owners; and the public ``dilated_attention`` over shards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from longnet.attention import (
    dilated_attention as _local_dilated_attention,
)
from longnet.attention import (
    level_attention,
    merge_levels,
    sink_attention,
    sink_visibility,
    sliding_window_attention,
)
from longnet.attention.plan import _check_inputs, _levels
from longnet.distributed.exchange import (
    _exchange_rows,
    _peer,
    _positions,
    _prefix_rows,
    _rows_from,
    _take,
)
from longnet.distributed.plan import (
    _LevelPlan,
    _OffsetPlan,
    _plan_level,
    _plan_sinks,
    _plan_window,
    _SinkPlan,
    _WindowPlan,
)
from longnet.distributed.process import ShardLayout, _active, _rank_and_size, _ready, shard_layout


def _attend_offset(q, k, v, level: _LevelPlan, plan: _OffsetPlan, gathered, prefix_state,
                   rotary, scale, is_causal):
    """(out, lse) ``[B, heads, rows, D]`` for the heads at one offset of one level."""
    device = q.device
    q_rows = _take(q, plan.heads, plan.rows)
    k_rows, v_rows = _take(k, plan.kv, plan.rows), _take(v, plan.kv, plan.rows)
    if rotary is not None:
        where = _positions(plan.positions, device)
        q_rows, k_rows = rotary(q_rows, where), rotary(k_rows, where)

    before_k, before_v = [], []
    if plan.n_prefix:
        pk, pv = _prefix_rows(prefix_state, plan, k.dtype)
        before_k.append(pk.expand(k.shape[0], -1, -1, -1))
        before_v.append(pv.expand(k.shape[0], -1, -1, -1))
    if plan.before is not None and plan.before.shape[1]:
        gk, gv = _rows_from(gathered[level.before], plan.before)
        if rotary is not None:
            gk = rotary(gk, torch.arange(plan.n_prefix, plan.n_prefix + gk.shape[2], device=device))
        before_k.append(gk)
        before_v.append(gv)
    after_k = after_v = None
    if plan.after is not None and plan.after.shape[1]:
        after_k, after_v = _rows_from(gathered[level.after], plan.after)
        if rotary is not None:
            after_k = rotary(after_k, torch.arange(plan.after_position,
                                                   plan.after_position + after_k.shape[2],
                                                   device=device))

    def call(queries, keys, values, segment, causal):
        keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
        values = torch.cat(values, 2) if len(values) > 1 else values[0]
        return level_attention(queries, keys, values, segment, 1, is_causal=causal, scale=scale)

    if after_k is None:
        return call(q_rows, before_k + [k_rows], before_v + [v_rows], plan.segment_rows, is_causal)
    # Non-causal with later ranks' rows in the last segment: the segments before it as
    # usual; the last one alone, its rows in any order (rotary is already applied).
    outs, lses = [], []
    split = plan.split
    if split:
        out, lse = call(q_rows[:, :, :split], before_k + [k_rows[:, :, :split]],
                        before_v + [v_rows[:, :, :split]], plan.segment_rows, False)
        outs.append(out)
        lses.append(lse)
    last_k = [after_k] + (before_k if plan.one_segment else []) + [k_rows[:, :, split:]]
    last_v = [after_v] + (before_v if plan.one_segment else []) + [v_rows[:, :, split:]]
    n_keys = sum(x.shape[2] for x in last_k)
    out, lse = call(q_rows[:, :, split:], last_k, last_v, n_keys, False)
    outs.append(out)
    lses.append(lse)
    if len(outs) == 1:
        return outs[0], lses[0]
    return torch.cat(outs, 2), torch.cat(lses, 2)


def _lse_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _attend_level(q, k, v, level: _LevelPlan, gathered, prefix_state, rotary, scale, is_causal):
    B, n_q, n, D = q.shape
    out = lse = None
    for plan in level.offsets:
        if not len(plan.rows):
            continue
        part_out, part_lse = _attend_offset(q, k, v, level, plan, gathered, prefix_state,
                                            rotary, scale, is_causal)
        if len(plan.heads) == n_q and len(plan.rows) == n:  # this offset covers everything
            return part_out, part_lse
        if out is None:
            out = q.new_zeros(B, n_q, n, D)
            lse = torch.full((B, n_q, n), float("-inf"), dtype=part_lse.dtype, device=q.device)
        heads = torch.as_tensor(plan.heads, dtype=torch.long, device=q.device)[:, None]
        rows = torch.as_tensor(plan.rows, dtype=torch.long, device=q.device)[None, :]
        out[:, heads, rows] = part_out.to(out.dtype)
        lse[:, heads, rows] = part_lse
    if out is None:  # no head keeps any local row at this level
        out = q.new_zeros(B, n_q, n, D)
        lse = torch.full((B, n_q, n), float("-inf"), dtype=_lse_dtype(q.dtype), device=q.device)
    return out, lse


@dataclass
class _Spec:
    levels: tuple[tuple[int, int], ...]
    layout: ShardLayout
    group: object
    is_causal: bool
    scale: float
    rotary: Callable | None
    prefix: Sequence | None  # per level: a Memory LevelState or None
    local_window: int | None = None  # level 0 is a sliding window of this many positions
    window_prefix: tuple | None = None  # (k, v [Hkv, n, D], first position) of a Memory
    attention_sinks: int = 0  # the sequence's first positions stay in level 0
    sink_prefix: tuple | None = None  # (k, v [Hkv, n, D]) of a Memory: sinks 0..n-1


def _attend_window(q, k, v, spec: _Spec, plan: _WindowPlan, gathered: list):
    """(out, lse) of the sliding level 0 for this rank's queries: one
    ``sliding_window_attention`` call on [memory rows, earlier ranks' rows, own rows],
    own rows bottom-right aligned. With rotary, rows are rotated at their true positions
    (as the single-process model does: same angles, same rounding) or, reading a memory
    (``window_prefix`` given), at their position minus ``plan.reach``, as a Memory does
    (rotary is relative, and angles computed for small numbers stay precise however long
    the stream); the memory's keys, stored rotated at ``position - first``, are turned by
    ``first - reach``."""
    layout, rotary = spec.layout, spec.rotary
    B, n_kv, D = k.shape[0], k.shape[1], k.shape[3]
    origin = 0 if spec.window_prefix is None else plan.reach
    keys, values = [], []
    if plan.reach < layout.offset:
        pk, pv, first = spec.window_prefix
        first = int(first)
        if not first <= plan.reach or first + pk.shape[1] != layout.offset:
            raise ValueError(f"window_prefix holds positions {first}..{first + pk.shape[1] - 1}; "
                             f"the window needs {plan.reach}..{layout.offset - 1}")
        pk = pk[:, plan.reach - first:].to(k.dtype)
        pv = pv[:, plan.reach - first:].to(v.dtype)
        if rotary is not None and first != origin:
            pk = rotary(pk, torch.full((pk.shape[1],), first - origin, dtype=torch.long,
                                       device=pk.device))
        keys.append(pk[None].expand(B, -1, -1, -1))
        values.append(pv[None].expand(B, -1, -1, -1))
    fresh_k, fresh_v = [], []
    for g in gathered:
        for x, skip in zip(g.received, plan.skips):
            rows = x.view(2, B, n_kv, -1, D)[:, :, :, skip:]
            fresh_k.append(rows[0])
            fresh_v.append(rows[1])
    fresh_k.append(k)
    fresh_v.append(v)
    fresh_k = torch.cat(fresh_k, 2) if len(fresh_k) > 1 else fresh_k[0]
    if rotary is not None:
        first_fresh = layout.end - fresh_k.shape[2]
        fresh_k = rotary(fresh_k, torch.arange(first_fresh - origin, layout.end - origin,
                                               device=k.device))
        q = rotary(q, torch.arange(layout.start - origin, layout.end - origin, device=q.device))
    keys.append(fresh_k)
    values.extend(fresh_v)
    keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
    values = torch.cat(values, 2) if len(values) > 1 else values[0]
    return sliding_window_attention(q, keys, values, spec.local_window, scale=spec.scale)


def _attend_sinks(q, k, v, spec: _Spec, plan: _SinkPlan, gathered: list):
    """(out, lse) of this rank's queries over the sinks they can see (``plan.need``
    columns: [memory's sinks, earlier ranks' sink rows, own sink rows]), as
    ``longnet.attention`` computes level 0's sink term: with rotary, queries rotated at
    ``W + S`` and sink j at position j (a memory's sinks are stored rotated so); without
    it q and k as given."""
    layout, rotary = spec.layout, spec.rotary
    B, n_kv, D = k.shape[0], k.shape[1], k.shape[3]
    keys, values = [], []
    from_prefix = min(plan.need, layout.offset)
    if from_prefix:  # checked before the exchange (_run)
        pk, pv = spec.sink_prefix
        keys.append(pk[None, :, :from_prefix].to(k.dtype).expand(B, -1, -1, -1))
        values.append(pv[None, :, :from_prefix].to(v.dtype).expand(B, -1, -1, -1))
    fresh_k, fresh_v = [], []
    for g in gathered:
        for p, x in zip(g.exchange.recv_from, g.received):
            rows = x.view(2, B, n_kv, -1, D)[:, :, :, :plan.need - layout.start_of(p)]
            fresh_k.append(rows[0])
            fresh_v.append(rows[1])
    if plan.own:
        fresh_k.append(k[:, :, :plan.own])
        fresh_v.append(v[:, :, :plan.own])
    if fresh_k:
        fresh_k = torch.cat(fresh_k, 2) if len(fresh_k) > 1 else fresh_k[0]
        if rotary is not None:
            fresh_k = rotary(fresh_k, torch.arange(from_prefix, plan.need, device=k.device))
        keys.append(fresh_k)
        values.extend(fresh_v)
    keys = torch.cat(keys, 2) if len(keys) > 1 else keys[0]
    values = torch.cat(values, 2) if len(values) > 1 else values[0]
    if keys.shape[2] != plan.need:
        raise RuntimeError(f"sink rows: {keys.shape[2]} gathered, {plan.need} planned")
    if rotary is not None:
        q = rotary(q, torch.full((q.shape[2],), spec.local_window + spec.attention_sinks,
                                 dtype=torch.long, device=q.device))
    visible = sink_visibility(torch.arange(layout.start, layout.end, device=q.device), plan.need,
                              spec.local_window)
    return sink_attention(q, keys, values, visible, spec.scale)


def _run(spec: _Spec, q, k, v, level_bias, track: bool):
    """The sharded attention: (out, lse, gathered buffers in order)."""
    n_q, n_kv = q.shape[1], k.shape[1]
    prefix = spec.prefix or [None] * len(spec.levels)
    plans = []
    for i, (w, r) in enumerate(spec.levels):
        if i == 0 and spec.local_window is not None:
            continue  # the sliding window, planned apart
        state = prefix[i]
        start = None if state is None else int(state.start)
        plans.append(_plan_level(spec.layout, i, w, r, n_q, n_kv, spec.is_causal, start))
    local = [p.level for p in plans if p.local]
    outs, lses, bias_columns = [], [], []
    if local and q.shape[2]:
        bias = None if level_bias is None else level_bias[:, local]
        out, lse = _local_dilated_attention(
            q, k, v, [spec.levels[i][0] for i in local], [spec.levels[i][1] for i in local],
            is_causal=spec.is_causal, scale=spec.scale, return_lse=True, level_bias=bias,
            rotary=spec.rotary)
        outs.append(out)
        lses.append(lse)
        bias_columns.append(None)
    remote = [p for p in plans if not p.local]
    window_plan = None
    if spec.local_window is not None:
        window_plan = _plan_window(spec.layout, spec.local_window, n_kv)
        if window_plan.reach < spec.layout.offset and spec.window_prefix is None:
            raise ValueError(f"the sliding local window reaches back to position "
                             f"{window_plan.reach}, before the layout's offset "
                             f"{spec.layout.offset}: pass the memory's window rows as "
                             "window_prefix")
        exchanges = () if window_plan.exchange is None else (window_plan.exchange,)
        specials = [_LevelPlan(0, spec.local_window, 1, local=False, exchanges=exchanges)]
        sink_plan = None
        if spec.attention_sinks:
            sink_plan = _plan_sinks(spec.layout, spec.local_window, spec.attention_sinks, n_kv)
            from_prefix = min(sink_plan.need, spec.layout.offset)
            if from_prefix and (spec.sink_prefix is None
                                or spec.sink_prefix[0].shape[1] < from_prefix):
                raise ValueError(f"the attention sinks 0..{from_prefix - 1} lie before the "
                                 f"layout's offset {spec.layout.offset}: pass the memory's "
                                 "sink rows as sink_prefix")
            exchanges = () if sink_plan.exchange is None else (sink_plan.exchange,)
            # Tag L (no level has it): the sinks' rows travel apart from the window's.
            specials.append(_LevelPlan(len(spec.levels), 0, 1, local=False, exchanges=exchanges))
        # Tag 0: level 0's own segments are not exchanged when it is a window.
        remote = specials + remote
    exchanged = _exchange_rows(k, v, remote, spec.group, track) if remote else []
    gathered_all = [g for level in exchanged for g in level]
    if window_plan is not None:
        n = len(specials)
        window_gathered, sink_gathered = exchanged[0], exchanged[1] if n > 1 else []
        remote, exchanged = remote[n:], exchanged[n:]
        if q.shape[2]:
            out, lse = _attend_window(q, k, v, spec, window_plan, window_gathered)
            if sink_plan is not None and sink_plan.need:  # one softmax with the window
                sink_out, sink_lse = _attend_sinks(q, k, v, spec, sink_plan, sink_gathered)
                out, lse = merge_levels([out, sink_out], [lse, sink_lse])
            outs.append(out)
            lses.append(lse)
            bias_columns.append(0)
    for plan, gathered in zip(remote, exchanged):
        out, lse = _attend_level(q, k, v, plan, gathered, prefix[plan.level], spec.rotary,
                                 spec.scale, spec.is_causal)
        outs.append(out)
        lses.append(lse)
        bias_columns.append(plan.level)
    if not outs:  # an empty shard
        return (q.new_zeros(q.shape),
                torch.full(q.shape[:3], float("-inf"), dtype=_lse_dtype(q.dtype), device=q.device),
                gathered_all)
    if len(outs) == 1 and (level_bias is None or bias_columns[0] is None):
        return outs[0], lses[0], gathered_all
    bias = None
    if level_bias is not None:
        zero = level_bias.new_zeros(level_bias.shape[0])
        bias = torch.stack([zero if c is None else level_bias[:, c] for c in bias_columns], 1)
    out, lse = merge_levels(outs, lses, level_bias=bias)
    return out, lse, gathered_all


class _ShardedAttention(torch.autograd.Function):
    """One autograd node per call; see ``longnet.distributed`` (Gradients)."""

    @staticmethod
    def forward(ctx, spec, q, k, v, level_bias):
        q_, k_, v_ = (x.detach().requires_grad_(x.requires_grad) for x in (q, k, v))
        bias_ = None if level_bias is None else \
            level_bias.detach().requires_grad_(level_bias.requires_grad)
        with torch.enable_grad():
            out, lse, gathered = _run(spec, q_, k_, v_, bias_, track=True)
        ctx.graph = (out, lse, q_, k_, v_, bias_, gathered)
        ctx.group = spec.group
        ctx.set_materialize_grads(False)
        return out.detach(), lse.detach()

    @staticmethod
    def backward(ctx, dout, dlse):
        out, lse, q_, k_, v_, bias_, gathered = ctx.graph
        ctx.graph = None
        received = [x for g in gathered for x in g.received]
        inputs = [q_, k_, v_] + ([bias_] if bias_ is not None else []) + received
        wanted = [x for x in inputs if x.requires_grad]
        outputs, cotangents = [], []
        for tensor, grad in ((out, dout), (lse, dlse)):
            if grad is not None and tensor.requires_grad:
                outputs.append(tensor)
                cotangents.append(grad)
        found = {}
        if outputs and wanted:
            grads = torch.autograd.grad(outputs, wanted, cotangents, allow_unused=True)
            found = {id(x): g for x, g in zip(wanted, grads)}
        # Each received buffer's gradient goes back to its owner, which sums what its
        # readers return (the reduce-scatter). Every rank posts the mirror image of its
        # forward exchange, so all take part even where the gradients are zero.
        ops, sends, returns = [], [], []
        group = ctx.group
        for g in gathered:
            for m, x in zip(g.exchange.recv_from, g.received):
                grad = found.get(id(x))
                grad = torch.zeros_like(x) if grad is None else grad.contiguous()
                if grad.numel():
                    ops.append(dist.P2POp(dist.isend, grad, _peer(group, m), group, g.level))
            returned = [torch.zeros_like(g.sent) for _ in g.exchange.send_to]
            for m, x in zip(g.exchange.send_to, returned):
                if x.numel():
                    ops.append(dist.P2POp(dist.irecv, x, _peer(group, m), group, g.level))
            if returned and g.sent.requires_grad:
                sends.append(g.sent)
                returns.append(returned)
        if ops:
            for work in dist.batch_isend_irecv(ops):
                work.wait()
        send_grads = [torch.stack(r).sum(0) if len(r) > 1 else r[0] for r in returns]
        dq, dk, dv = (found.get(id(x)) for x in (q_, k_, v_))
        if sends:
            extra_k, extra_v = torch.autograd.grad(sends, [k_, v_], send_grads, allow_unused=True)
            dk = extra_k if dk is None else (dk if extra_k is None else dk + extra_k)
            dv = extra_v if dv is None else (dv if extra_v is None else dv + extra_v)
        dbias = found.get(id(bias_)) if bias_ is not None else None
        return None, dq, dk, dv, dbias


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    *,
    is_causal: bool = True,
    group=None,
    scale: float | None = None,
    return_lse: bool = False,
    level_bias: torch.Tensor | None = None,
    rotary: Callable | None = None,
    layout: ShardLayout | None = None,
    prefix: Sequence | None = None,
    local_window: int | None = None,
    window_prefix: tuple | None = None,
    attention_sinks: int = 0,
    sink_prefix: tuple | None = None,
):
    """Dilated attention over a sequence split across the ranks of ``group``.

    ``q [B, Hq, n, D]``, ``k, v [B, Hkv, n, D]`` are this rank's contiguous shard (n may
    differ between ranks, and may be 0); ranks are in order along the sequence. The
    result (``[B, Hq, n, D]``, and the lse ``[B, Hq, n]`` when ``return_lse``) is this
    rank's part of ``longnet.dilated_attention`` on the concatenated sequence, with the
    same ``scale``, ``level_bias`` and ``rotary`` meaning. Differentiable in q, k, v and
    ``level_bias``; every rank of ``group`` must call it (it communicates).

    ``layout``: the shard lengths (``shard_layout``); all-gathered when None — pass it
    to save that collective in every layer. ``prefix`` (used by ``memory_append``): per
    level, a ``longnet.memory.LevelState`` holding the selected rows of positions before
    ``layout.offset`` (causal, batch 1, keys already rotated).

    ``local_window`` W: level 0 is a dense sliding window of the last W positions, as in
    ``longnet.dilated_attention(..., local_window=W)`` (causal only, dilation rate 1,
    ``level_bias[:, 0]`` is its bias). Each rank receives the previous W - 1 rows from
    the earlier ranks (however many ranks that spans; gradients go back to their owners).
    ``window_prefix`` (used by ``memory_append``): ``(k, v, first)``, k and v
    ``[Hkv, n, D]`` holding positions ``first .. layout.offset - 1`` (a Memory's window
    rows; keys rotated at ``position - first`` when ``rotary`` is given, else as the
    queries are), needed when the window reaches back before ``layout.offset``.

    ``attention_sinks`` S (with ``local_window``): the sequence's first S positions stay
    visible in level 0 to every query whose window has moved past them, as in
    ``longnet.dilated_attention(..., attention_sinks=S)``. The ranks holding them send
    them to the later ranks that see them (gradients go back to their owners).
    ``sink_prefix`` (used by ``memory_append``): ``(k, v)`` ``[Hkv, n, D]``, the sinks at
    positions ``0 .. n - 1`` (n = ``min(S, layout.offset)``; a Memory's ``sinks``, keys
    rotated at their own positions when ``rotary`` is given), needed when a query sees
    a sink before ``layout.offset``.
    """
    levels = _levels(segment_lengths, dilation_rates)
    _check_inputs(q, k, v, levels, level_bias)
    if local_window is not None:
        local_window = int(local_window)
        if local_window < 1:
            raise ValueError(f"the sliding window must be >= 1 token; got {local_window}")
        if not is_causal:
            raise ValueError("a sliding local window needs is_causal=True")
        if levels[0][1] != 1:
            raise ValueError(f"the sliding local window replaces a dense level 0 (dilation "
                             f"rate 1), not one with rate {levels[0][1]}")
    if window_prefix is not None and (local_window is None or q.shape[0] != 1):
        raise ValueError("window_prefix needs local_window and batch size 1")
    attention_sinks = int(attention_sinks)
    if attention_sinks < 0 or (attention_sinks and local_window is None):
        raise ValueError(f"attention_sinks must be >= 0 and need a sliding local_window; got "
                         f"attention_sinks={attention_sinks}, local_window={local_window}")
    if sink_prefix is not None and (not attention_sinks or q.shape[0] != 1):
        raise ValueError("sink_prefix needs attention_sinks and batch size 1")
    if q.shape[2] != k.shape[2]:
        raise ValueError(f"sharded attention is self-attention over the shard: q has "
                         f"{q.shape[2]} rows, k {k.shape[2]} (decode with a Memory instead)")
    if prefix is not None and (not is_causal or q.shape[0] != 1):
        raise ValueError("a memory prefix needs causal attention and batch size 1")
    if layout is None:
        layout = shard_layout(q.shape[2], group, device=q.device)
    elif layout.local_length != q.shape[2]:
        raise ValueError(f"layout gives this rank {layout.local_length} tokens, q has {q.shape[2]}")
    if layout.world_size != _rank_and_size(group)[1]:
        raise ValueError(f"layout has {layout.world_size} ranks, the group {_rank_and_size(group)[1]}")
    if _active(group):
        _ready(group)
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    spec = _Spec(levels, layout, group, is_causal,
                 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale), rotary, prefix,
                 local_window, window_prefix, attention_sinks, sink_prefix)
    needs_grad = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (q, k, v, level_bias))
    if needs_grad:
        out, lse = _ShardedAttention.apply(spec, q, k, v, level_bias)
    else:
        with torch.no_grad():
            out, lse, _ = _run(spec, q, k, v, level_bias, track=False)
    out = out.to(q.dtype)
    return (out, lse) if return_lse else out
