"""Attention of the new tokens against a memory's state (one layer at a time).

``_attend_few``: a few tokens (a question, decoding) against every level at once: one
masked matmul per level and one softmax over all the levels' keys, the sliding window
and the sinks in level 0. ``_attend_compact``: a longer chunk through
``level_attention``, each slot's blocks read as one dense sequence.
``Memory._attention`` chooses between them.
"""

from __future__ import annotations

import torch

from longnet.attention import level_attention
from longnet.memory.plan import LevelPlan


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
