"""The sliding window that replaces a dense level 0 (``local_window``) and its
attention sinks.

``sliding_window_attention``: causal attention over the last ``window`` positions, run
in query chunks, each against its own rows (causal), the keys all its rows see (full)
and a masked band that only its earlier rows reach. ``sink_attention``: the first few
positions of the sequence, kept visible to every query whose window has moved past them
(``sink_visibility``), merged into level 0 by ``dilated_attention``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Optional

import torch

from longnet.attention.kernels import (
    _acc_dtype,
    _augment,
    _expand_kv,
    _kernel_bwd,
    _kernel_fwd,
    _merge_,
)
from longnet.attention.plan import _check_inputs, _last_dim_contiguous

# --------------------------------------------------------------------------- sliding window


_SLIDING_CHUNK = 2048  # query rows per kernel call of the sliding window


@dataclass(frozen=True)
class _Band:
    """One kernel call of the sliding window: query rows ``[q0, q1)`` (indices into
    the M queries) against key rows ``[k0, k1)``. ``kind``: "full" (every key
    visible), "causal" (the square on the diagonal) or "band" (key j visible to the
    query at position t iff ``j > t - window``: the window's trailing edge)."""

    q0: int
    q1: int
    k0: int
    k1: int
    kind: str


@functools.lru_cache(maxsize=256)
def _sliding_plan(n_keys: int, n_queries: int, window: int, chunk: int) -> tuple[_Band, ...]:
    """Query chunks of at most ``min(chunk, window)`` rows; each sees its own rows
    causally, the keys every row of the chunk reaches in full, and a band of keys that
    only its earlier rows reach. Rows whose band would be empty get no band call, so
    no call holds a fully masked row."""
    first_query = n_keys - n_queries
    step = max(1, min(chunk, window))
    bands = []
    for a in range(first_query, n_keys, step):
        b = min(a + step, n_keys)
        qa, qb = a - first_query, b - first_query
        bands.append(_Band(qa, qb, a, b, "causal"))
        full_from = max(0, b - window)  # the last row of the chunk reaches back to here
        if full_from < a:
            bands.append(_Band(qa, qb, full_from, a, "full"))
        band_from = max(0, a - window + 1)  # the first row reaches back to here
        if band_from < full_from:
            # Rows t < b - 1 see part of [band_from, full_from); row b - 1 sees none of it.
            bands.append(_Band(qa, qb - 1, band_from, full_from, "band"))
    return tuple(bands)


def _band_mask(band: _Band, first_query: int, window: int, dtype, device) -> Optional[torch.Tensor]:
    if band.kind != "band":
        return None
    t = torch.arange(band.q0, band.q1, device=device)[:, None] + first_query
    j = torch.arange(band.k0, band.k1, device=device)[None, :]
    zero = torch.zeros((), dtype=dtype, device=device)
    hidden = torch.tensor(float("-inf"), dtype=dtype, device=device)
    return torch.where(j > t - window, zero, hidden)


def _sliding_forward(q, k, v, window: int, scale: float):
    B, Hq, M, D = q.shape
    first_query = k.shape[2] - M
    acc_dtype = _acc_dtype(q.dtype)
    acc_out = torch.zeros(B, Hq, M, D, dtype=acc_dtype, device=q.device)
    acc_lse = torch.full((B, Hq, M, 1), float("-inf"), dtype=acc_dtype, device=q.device)
    for band in _sliding_plan(k.shape[2], M, window, _SLIDING_CHUNK):
        mask = _band_mask(band, first_query, window, q.dtype, q.device)
        out, lse = _kernel_fwd(q[:, :, band.q0:band.q1], k[:, :, band.k0:band.k1],
                               v[:, :, band.k0:band.k1], band.kind == "causal", scale, mask)
        _merge_(acc_out[:, :, band.q0:band.q1], acc_lse[:, :, band.q0:band.q1],
                out, lse.unsqueeze(-1).to(acc_dtype), band.kind == "causal")
    return acc_out, acc_lse.squeeze(-1)


class _SlidingWindowFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, window, scale):
        out, lse = _sliding_forward(q, k, v, window, scale)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.window, ctx.scale = window, scale
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        q, k, v, out, lse = ctx.saved_tensors
        window, scale = ctx.window, ctx.scale
        acc_dtype = _acc_dtype(q.dtype)
        first_query = k.shape[2] - q.shape[2]
        fold_lse = dlse is not None and bool(torch.any(dlse != 0))
        dout = dout.contiguous() if dout is not None else torch.zeros_like(out)
        dq = torch.zeros(q.shape, dtype=acc_dtype, device=q.device)
        dk = torch.zeros(k.shape, dtype=acc_dtype, device=q.device)
        dv = torch.zeros(v.shape, dtype=acc_dtype, device=q.device)
        D = q.shape[-1]
        for band in _sliding_plan(k.shape[2], q.shape[2], window, _SLIDING_CHUNK):
            rows, keys = slice(band.q0, band.q1), slice(band.k0, band.k1)
            q4, k4, v4 = q[:, :, rows], k[:, :, keys], v[:, :, keys]
            do4, o4 = dout[:, :, rows], out[:, :, rows]
            if fold_lse:  # every call's P is its share of the one joint softmax (global lse)
                g4 = dlse[:, :, rows].to(acc_dtype).unsqueeze(-1)
                q4, k4, v4, do4, o4 = _augment(q4, k4, v4, do4, o4, g4, scale)
            mask = _band_mask(band, first_query, window, q4.dtype, q.device)
            gq, gk, gv = _kernel_bwd(do4.contiguous(), q4.contiguous(), k4.contiguous(),
                                     v4.contiguous(), o4.contiguous(),
                                     lse[:, :, rows].to(acc_dtype).contiguous(),
                                     band.kind == "causal", scale, mask)
            dq[:, :, rows] += gq[..., :D]
            dk[:, :, keys] += gk[..., :D]
            dv[:, :, keys] += gv[..., :D]
        return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype), None, None


def sliding_window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: int,
    *,
    scale: Optional[float] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention over a sliding window: the query at position t sees the keys at
    ``t - window < j <= t`` (the last ``window`` positions, itself included), exactly as
    a dense model trained with a context of ``window`` tokens sees them.

    Layout and alignment as ``dilated_attention`` (q ``[B, Hq, M, D]``, k and v
    ``[B, Hkv, N, D]``, queries the last M of N positions, grouped-query heads). Returns
    ``(out [B, Hq, M, D], lse [B, Hq, M])`` (lse float32, float64 for float64 inputs),
    differentiable through both. With ``N <= window`` it equals causal SDPA. Rotate q
    and k before calling (the window is position-agnostic)."""
    if window < 1:
        raise ValueError(f"the sliding window must be >= 1 token; got {window}")
    _check_inputs(q, k, v, ((1, 1),), None)
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if q.shape[2] == 0 or q.shape[0] == 0:
        lse = torch.full(q.shape[:3], float("-inf"), dtype=_acc_dtype(q.dtype), device=q.device)
        return q.new_zeros(q.shape), lse
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
    if needs_grad:
        return _SlidingWindowFunction.apply(q, k, v, int(window), scale)
    with torch.no_grad():
        out, lse = _sliding_forward(q, k, v, int(window), scale)
    return out.to(q.dtype), lse


# --------------------------------------------------------------------------- attention sinks


def sink_visibility(query_positions: torch.Tensor, n_sinks: int, window: int) -> torch.Tensor:
    """``[M, n_sinks]`` bool: may the query at each position see sink j? Only once its
    window has moved past j (inside the window, j is one of the window's keys)."""
    sinks = torch.arange(n_sinks, device=query_positions.device)
    return sinks[None, :] <= query_positions[:, None] - window


def sink_attention(q: torch.Tensor, k_sinks: torch.Tensor, v_sinks: torch.Tensor,
                   visible: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of q ``[..., Hq, M, D]`` to a few sink rows ``[..., Hkv, S, D]`` (already
    rotated) where ``visible [M, S]``: ``(out, lse)``; rows that see no sink give 0 and
    -inf. Plain torch ops (S is a handful), differentiable everywhere."""
    keys, values = _expand_kv(k_sinks, q.shape[-3]), _expand_kv(v_sinks, q.shape[-3])
    acc = _acc_dtype(q.dtype)
    scores = torch.matmul(q.to(acc), keys.to(acc).transpose(-1, -2)) * scale
    lowest = torch.finfo(acc).min / 2  # finite: no NaN in values or gradients
    scores = torch.where(visible, scores, torch.full((), lowest, dtype=acc, device=q.device))
    lse = torch.logsumexp(scores, dim=-1)
    weights = torch.exp(scores - lse[..., None]) * visible
    out = torch.matmul(weights, values.to(acc))
    none = torch.full((), float("-inf"), dtype=acc, device=q.device)
    lse = torch.where(visible.any(-1), lse, none)
    return out.to(q.dtype), lse
