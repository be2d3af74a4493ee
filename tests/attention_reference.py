"""Brute-force dilated attention, written straight from the LongNet paper (eqs. 3-10)
with explicit boolean masks. Slow (N x N per head and level) and meant only as the
ground truth for tests of ``longnet.attention``.

Conventions (the same as ``longnet.dilated_attention``):
- q ``[B, Hq, M, D]``, k and v ``[B, Hkv, N, D]``; query i sits at absolute position
  ``N - M + i``; query head h reads kv head ``h // (Hq // Hkv)``.
- level (w, r): position t lies in segment ``t // w`` and is kept for head h when
  ``(t % w) % r == h % r``; a query attends to the kept keys of its own segment
  (and, when causal, only those at or before it).
- mixing (eq. 10): ``O = sum_i exp(lse_i + b_i - L) O_i`` with
  ``L = logsumexp_i(lse_i + b_i)``; a level that keeps no key for a row contributes
  nothing (lse -inf); a row that no level keeps is 0 with lse -inf.
- rotary: ``rotary(x, positions)`` with positions = a kept row's index among the
  kept rows of its segment, ``((t % w) - h % r) // r``.
"""

from __future__ import annotations

import math

import torch


def level_mask(n_keys: int, n_queries: int, segment_length: int, dilation_rate: int,
               head: int, is_causal: bool) -> torch.Tensor:
    """[M, N] boolean: may query i (absolute position N-M+i) see key t at this level?"""
    key_pos = torch.arange(n_keys)
    query_pos = torch.arange(n_keys - n_queries, n_keys)
    offset = head % dilation_rate
    key_kept = (key_pos % segment_length) % dilation_rate == offset
    query_kept = (query_pos % segment_length) % dilation_rate == offset
    same_segment = (query_pos[:, None] // segment_length) == (key_pos[None, :] // segment_length)
    mask = query_kept[:, None] & key_kept[None, :] & same_segment
    if is_causal:
        mask &= key_pos[None, :] <= query_pos[:, None]
    return mask


def sparse_positions(n_positions: int, segment_length: int, dilation_rate: int, head: int,
                     first: int = 0) -> torch.Tensor:
    """Index of each absolute position among the kept rows of its segment (garbage for
    rows that the level does not keep; they are masked anyway)."""
    pos = torch.arange(first, first + n_positions)
    return ((pos % segment_length) - head % dilation_rate).div(dilation_rate, rounding_mode="floor")


def reference_level(q, k, v, segment_length, dilation_rate, *, is_causal=True, scale=None,
                    rotary=None):
    """One level by brute force: (out [B,Hq,M,D], lse [B,Hq,M]) in float64."""
    B, Hq, M, D = q.shape
    Hkv, N = k.shape[1], k.shape[2]
    group = Hq // Hkv
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    q, k, v = q.double(), k.double(), v.double()
    outs, lses = [], []
    for h in range(Hq):
        qh, kh, vh = q[:, h], k[:, h // group], v[:, h // group]
        if rotary is not None:
            qh = rotary(qh, sparse_positions(M, segment_length, dilation_rate, h, first=N - M))
            kh = rotary(kh, sparse_positions(N, segment_length, dilation_rate, h))
        scores = torch.einsum("bmd,bnd->bmn", qh, kh) * scale
        mask = level_mask(N, M, segment_length, dilation_rate, h, is_causal)
        scores = scores.masked_fill(~mask, float("-inf"))
        # Rows that keep no key take nothing from this level (out 0, lse -inf); the
        # torch.where keeps their NaNs out of the values and the gradients alike.
        has_key = mask.any(-1)
        safe_scores = scores.masked_fill(~has_key[:, None], 0.0)
        lse = torch.logsumexp(safe_scores, dim=-1)
        probs = torch.exp(safe_scores - lse[..., None])
        outs.append(torch.where(has_key[:, None], probs @ vh, 0.0))
        lses.append(torch.where(has_key, lse, float("-inf")))
    return torch.stack(outs, 1), torch.stack(lses, 1)


def reference_merge(outs, lses, level_bias=None):
    """Eq. 10 through log-sum-exp, with an optional per-(head, level) bias."""
    lse_stack = torch.stack(lses, 0)  # [L, B, H, M]
    if level_bias is not None:
        lse_stack = lse_stack + level_bias.double().t()[:, None, :, None]
    kept = torch.isfinite(lse_stack)
    # -inf -> a huge negative finite value, so that rows no level keeps give 0, not NaN.
    finite_stack = torch.where(kept, lse_stack, -1e30)
    total = torch.logsumexp(finite_stack, 0)
    weights = torch.exp(finite_stack - total)
    out = sum(w[..., None] * o for w, o in zip(weights, outs))
    return out, torch.where(kept.any(0), total, float("-inf"))


def reference_dilated(q, k, v, segment_lengths, dilation_rates, *, is_causal=True, scale=None,
                      level_bias=None, rotary=None):
    """Full dilated attention by brute force: (out, lse), float64."""
    outs, lses = [], []
    for w, r in zip(segment_lengths, dilation_rates):
        o, l = reference_level(q, k, v, w, r, is_causal=is_causal, scale=scale, rotary=rotary)
        outs.append(o)
        lses.append(l)
    return reference_merge(outs, lses, level_bias)
