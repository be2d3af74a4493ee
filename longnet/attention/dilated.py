"""Dilated attention itself: the pieces of every level run through the fused kernels
and merged in place (forward), the same pieces replayed with the final output and lse
(backward), one autograd function over both, and the entry points built on it:
``dilated_attention``, ``level_attention``, ``merge_levels`` and the ``DilatedAttention``
layer. The semantics are described in ``longnet.attention``.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from longnet.attention.kernels import _acc_dtype, _augment, _kernel_bwd, _kernel_fwd, _merge_
from longnet.attention.plan import (
    Rotary,
    _batches,
    _ceil_div,
    _check_inputs,
    _Heads,
    _last_dim_contiguous,
    _levels,
    _Piece,
    _plan,
    _Rows,
    _unfold,
    _view5,
)
from longnet.attention.sliding import sink_attention, sink_visibility, sliding_window_attention

# --------------------------------------------------------------------------- forward


def _positions(start: int, n: int, device) -> torch.Tensor:
    return torch.arange(start, start + n, device=device)


def _shift(rows: _Rows, by: int) -> _Rows:
    return _Rows(rows.start + by, rows.seg_stride, rows.nseg, rows.step, rows.n)


def _head_slots(piece: _Piece, side: str):
    """For gathered pieces: (slot, source head, row shift) of every query head."""
    for h in range(piece.q_heads.count):
        yield h, (h if side == "q" else h // piece.kv_group), h % piece.rate


def _load(x: torch.Tensor, piece: _Piece, side: str) -> torch.Tensor:
    """The piece's operand ``[nseg, B, heads, n, D]`` from ``x [B, H, T, D]``: a strided
    view, or for gathered pieces a contiguous copy. ``side`` is "q" (query rows: q, dO,
    O, lse) or "kv" (key rows: k, v)."""
    rows = piece.q_rows if side == "q" else piece.k_rows
    if not piece.gathered:
        return _view5(x, piece.q_heads if side == "q" else piece.kv_heads, rows)
    out = x.new_empty((rows.nseg, x.shape[0], piece.q_heads.count, rows.n, x.shape[3]))
    for slot, head, shift in _head_slots(piece, side):
        out[:, :, slot] = _view5(x, _Heads(head, 1, 1), _shift(rows, shift))[:, :, 0]
    return out


def _add_into(dst: torch.Tensor, piece: _Piece, side: str, val5: torch.Tensor) -> None:
    """dst[rows of the piece] += val5 (the inverse of ``_load``; GQA heads accumulate)."""
    rows = piece.q_rows if side == "q" else piece.k_rows
    if not piece.gathered:
        _view5(dst, piece.q_heads if side == "q" else piece.kv_heads, rows).add_(val5)
        return
    for slot, head, shift in _head_slots(piece, side):
        _view5(dst, _Heads(head, 1, 1), _shift(rows, shift))[:, :, 0].add_(val5[:, :, slot])


def _merge_piece(acc_out, acc_lse, piece: _Piece, out5, lse5) -> None:
    if not piece.gathered:
        _merge_(_view5(acc_out, piece.q_heads, piece.q_rows), _view5(acc_lse, piece.q_heads, piece.q_rows),
                out5, lse5, piece.first_write)
        return
    n_heads = piece.q_heads.count
    for offset in range(min(piece.rate, n_heads)):  # head groups sharing a row offset
        heads = _Heads(offset, piece.rate, _ceil_div(n_heads - offset, piece.rate))
        rows = _shift(piece.q_rows, offset)
        _merge_(_view5(acc_out, heads, rows), _view5(acc_lse, heads, rows),
                out5[:, :, offset::piece.rate], lse5[:, :, offset::piece.rate], piece.first_write)


def _piece_qk(piece: _Piece, q, k, rotary: Optional[Rotary]):
    q5, k5 = _load(q, piece, "q"), _load(k, piece, "kv")
    if rotary is not None:
        q5 = rotary(q5, _positions(piece.q_pos0, piece.q_rows.n, q.device))
        k5 = rotary(k5, _positions(piece.k_pos0, piece.k_rows.n, k.device))
    return q5, k5


def _bias_heads(piece: _Piece) -> slice:
    h = piece.q_heads
    return slice(h.start, h.start + h.step * (h.count - 1) + 1, h.step)


def _bias_for(level_bias, piece: _Piece) -> Optional[torch.Tensor]:
    """The piece's heads' bias at its level, shaped to broadcast over [nseg, B, h, n, 1]."""
    if level_bias is None:
        return None
    return level_bias[_bias_heads(piece), piece.level].reshape(1, 1, -1, 1, 1)


def _call_fwd(q5, k5, v5, causal: bool, scale: float):
    """Kernel forward over 5D operands, batching as much as the strides allow."""
    out5 = lse5 = None
    for b, (q4, k4, v4) in _batches(q5, k5, v5):
        o4, l4 = _kernel_fwd(q4, k4, v4, causal, scale)
        if isinstance(b, slice):
            return _unfold(o4, b, q5), _unfold(l4.unsqueeze(-1), b, q5)
        if out5 is None:
            out5 = o4.new_empty(q5.shape)
            lse5 = l4.new_empty(q5.shape[:4] + (1,))
        out5[:, b], lse5[:, b] = o4, l4.unsqueeze(-1)
    return out5, lse5


def _head_major_first_level(q, k, v, piece: _Piece, rotary, scale):
    """Run a first level that keeps every row of every head, in whole segments
    (r = 1, M = N, N a multiple of w, no GQA), with heads as the kernel's batch and
    segments as its heads: the kernel's output is then already laid out as
    ``[B, H, N, D]`` and becomes the running output without a copy. None if the
    strides do not allow it."""
    B, Hq, M, D = q.shape
    rows = piece.q_rows
    if (piece.gathered or not piece.first_write or piece.rate != 1 or k.shape[1] != Hq
            or piece.q_heads != _Heads(0, 1, Hq) or piece.kv_heads != _Heads(0, 1, Hq)
            or rows != _Rows(0, rows.n, rows.nseg, 1, rows.n) or rows.nseg * rows.n != M
            or piece.k_rows != rows):
        return None
    q5, k5 = _piece_qk(piece, q, k, rotary)
    v5 = _load(v, piece, "kv")
    try:
        q4, k4, v4 = (x.permute(1, 2, 0, 3, 4).view(B * Hq, rows.nseg, rows.n, D) for x in (q5, k5, v5))
    except RuntimeError:  # not viewable (e.g. q transposed from [B, N, H, D])
        return None
    out, lse = _kernel_fwd(q4, k4, v4, piece.causal, scale)
    acc_dtype = _acc_dtype(q.dtype)
    return out.reshape(B, Hq, M, D).to(acc_dtype), lse.reshape(B, Hq, M, 1).to(acc_dtype)


def _forward(q, k, v, pieces, scale, level_bias, rotary, copy_ok: bool):
    B, Hq, M, D = q.shape
    acc_dtype = _acc_dtype(q.dtype)
    first = _head_major_first_level(q, k, v, pieces[0], rotary, scale) if pieces else None
    if first is not None:
        acc_out, acc_lse = first
        bias = _bias_for(level_bias, pieces[0])
        if bias is not None:
            acc_lse += bias[0, 0]
        pieces = pieces[1:]
    elif copy_ok:
        acc_out = torch.empty(B, Hq, M, D, dtype=acc_dtype, device=q.device)
        acc_lse = torch.empty(B, Hq, M, 1, dtype=acc_dtype, device=q.device)
    else:
        acc_out = torch.zeros(B, Hq, M, D, dtype=acc_dtype, device=q.device)
        acc_lse = torch.full((B, Hq, M, 1), float("-inf"), dtype=acc_out.dtype, device=q.device)
    for piece in pieces:
        q5, k5 = _piece_qk(piece, q, k, rotary)
        v5 = _load(v, piece, "kv")
        out5, lse5 = _call_fwd(q5, k5, v5, piece.causal, scale)
        bias = _bias_for(level_bias, piece)
        if bias is not None:
            lse5 = lse5 + bias
        _merge_piece(acc_out, acc_lse, piece, out5, lse5)
    return acc_out, acc_lse.squeeze(-1)


# --------------------------------------------------------------------------- backward


def _backward(ctx, dout, dlse):
    q, k, v, out, lse, level_bias = ctx.saved_tensors
    pieces, scale, rotary = ctx.pieces, ctx.scale, ctx.rotary
    bias_grad = level_bias is not None and ctx.needs_input_grad[3]
    fold_lse = dlse is not None and bool(torch.any(dlse != 0))
    augment = fold_lse or bias_grad
    acc_dtype = _acc_dtype(q.dtype)
    dq = torch.zeros(q.shape, dtype=acc_dtype, device=q.device)
    dk = torch.zeros(k.shape, dtype=acc_dtype, device=q.device)
    dv = torch.zeros(v.shape, dtype=acc_dtype, device=q.device)
    dbias = torch.zeros(level_bias.shape, dtype=acc_dtype, device=q.device) if bias_grad else None
    dout = dout.contiguous() if dout is not None else torch.zeros_like(out)
    lse_col = lse.unsqueeze(-1)
    dlse_col = dlse.to(acc_dtype).contiguous().unsqueeze(-1) if fold_lse else None
    D = q.shape[-1]
    for piece in pieces:
        if rotary is not None:
            q_src = _load(q, piece, "q").detach().requires_grad_()
            k_src = _load(k, piece, "kv").detach().requires_grad_()
            with torch.enable_grad():
                q5 = rotary(q_src, _positions(piece.q_pos0, piece.q_rows.n, q.device))
                k5 = rotary(k_src, _positions(piece.k_pos0, piece.k_rows.n, k.device))
            q5d, k5d = q5.detach(), k5.detach()
        else:
            q5d, k5d = _piece_qk(piece, q, k, None)
        v5 = _load(v, piece, "kv")
        do5 = _load(dout, piece, "q")
        o5 = _load(out, piece, "q")
        l5 = _load(lse_col, piece, "q")
        bias = _bias_for(level_bias, piece)
        if bias is not None:
            l5 = l5 - bias  # the kernel's P = exp(s - (L - b)) = this level's share of the joint softmax
        g5 = _load(dlse_col, piece, "q") if fold_lse else None
        dq5 = torch.empty(q5d.shape, dtype=q.dtype, device=q.device)
        dk5 = torch.empty(k5d.shape, dtype=k.dtype, device=q.device)
        dv5 = torch.empty(v5.shape, dtype=v.dtype, device=q.device)
        row_dsum = torch.empty(q5d.shape[:4], dtype=acc_dtype, device=q.device) if bias_grad else None
        parts = [q5d, k5d, v5, do5, o5, l5] + ([g5] if g5 is not None else [])
        for b, views in _batches(*parts):
            q4, k4, v4, do4, o4, l4 = views[:6]
            g4 = views[6] if g5 is not None else None
            if augment:
                q4, k4, v4, do4, o4 = _augment(q4, k4, v4, do4, o4, g4, scale)
            gq, gk, gv = _kernel_bwd(do4, q4, k4, v4, o4, l4[..., 0].to(acc_dtype).contiguous(),
                                     piece.causal, scale)
            if augment:
                if bias_grad:
                    row_dsum[:, b] = _unfold(gq[..., D + 1], b, q5d)
                gq, gk, gv = gq[..., :D], gk[..., :D], gv[..., :D]
            dq5[:, b] = _unfold(gq, b, q5d)
            dk5[:, b] = _unfold(gk, b, k5d)
            dv5[:, b] = _unfold(gv, b, v5)
        if rotary is not None:
            dq5, dk5 = torch.autograd.grad((q5, k5), (q_src, k_src), (dq5, dk5))
        _add_into(dq, piece, "q", dq5)
        _add_into(dk, piece, "kv", dk5)
        _add_into(dv, piece, "kv", dv5)
        if bias_grad:
            dbias[_bias_heads(piece), piece.level] += row_dsum.sum((0, 1, 3))
    return (dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype),
            dbias.to(level_bias.dtype) if bias_grad else None)


class _DilatedAttentionFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, level_bias, pieces, scale, rotary, copy_ok):
        out, lse = _forward(q, k, v, pieces, scale, level_bias, rotary, copy_ok)
        out = out.to(q.dtype)
        ctx.save_for_backward(q, k, v, out, lse, level_bias)
        ctx.pieces, ctx.scale, ctx.rotary = pieces, scale, rotary
        ctx.set_materialize_grads(False)
        return out, lse

    @staticmethod
    def backward(ctx, dout, dlse):
        dq, dk, dv, dbias = _backward(ctx, dout, dlse)
        return dq, dk, dv, dbias, None, None, None, None


# --------------------------------------------------------------------------- public


def dilated_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_lengths: Sequence[int],
    dilation_rates: Sequence[int],
    *,
    is_causal: bool = True,
    scale: Optional[float] = None,
    return_lse: bool = False,
    level_bias: Optional[torch.Tensor] = None,
    rotary: Optional[Rotary] = None,
    local_window: Optional[int] = None,
    attention_sinks: int = 0,
):
    """LongNet dilated attention: ``[B, Hq, M, D]`` (and the lse ``[B, Hq, M]``, float32
    (float64 for float64 inputs), when ``return_lse``). See ``longnet.attention`` for the exact semantics: levels
    ``(segment_lengths[i], dilation_rates[i])``, query head h keeps rows with
    ``(t % w) % r == h % r``, queries are the last M positions, levels are mixed by their
    softmax denominators (eq. 10) so a key reached by two levels counts in both, and a
    row kept by no level is 0. ``scale`` defaults to ``1/sqrt(D)``. ``level_bias``
    ``[Hq, L]`` is added to each level's lse before mixing; ``rotary(x, positions)`` is
    applied to each level's kept q and k rows with positions inside the sparsified
    segment. Differentiable in q, k, v, level_bias and through the returned lse.

    ``local_window`` (optional): level 0 becomes a dense sliding window over the last
    ``local_window`` positions (``sliding_window_attention``) instead of absolute
    segments, so every query sees its recent past exactly as a dense model with that
    context does; its dilation rate must be 1 and its segment length is not used. The
    other levels are unchanged and mixed with it by eq. 10 (``level_bias[:, 0]`` is the
    window's bias). With ``rotary``, the window's rows are rotated at their true
    positions ``0..N-1``.

    ``attention_sinks`` S (with ``local_window``): the first S positions of the sequence
    stay visible to every query whose window has moved past them, as part of level 0
    (one softmax with the window): pretrained models lean on the first tokens they see
    (StreamingLLM, Xiao et al. 2023), and a window without them reads worse than a
    fixed one. With ``rotary`` each sink j sits just before the window's oldest key
    (query rotated at ``W + S``, sink key at ``j``: distance ``W + S - j``); without it
    q and k are used as given (true positions)."""
    levels = _levels(segment_lengths, dilation_rates)
    _check_inputs(q, k, v, levels, level_bias)
    if local_window is not None:
        return _with_local_window(q, k, v, levels, int(local_window), is_causal, scale,
                                  return_lse, level_bias, rotary, int(attention_sinks))
    if attention_sinks:
        raise ValueError("attention_sinks need a sliding local_window")
    q, k, v = _last_dim_contiguous(q), _last_dim_contiguous(k), _last_dim_contiguous(v)
    B, Hq, M, D = q.shape
    N = k.shape[2]
    scale = 1.0 / math.sqrt(D) if scale is None else float(scale)
    if M == 0 or N == 0 or B == 0:
        out = q.new_zeros(q.shape)
        lse = torch.full((B, Hq, M), float("-inf"), dtype=_acc_dtype(q.dtype), device=q.device)
        return (out, lse) if return_lse else out
    pieces = _plan(N, M, Hq, k.shape[1], levels, is_causal, B)
    copy_ok = levels[0][1] == 1
    needs_grad = torch.is_grad_enabled() and (
        q.requires_grad or k.requires_grad or v.requires_grad
        or (level_bias is not None and level_bias.requires_grad))
    if needs_grad:
        out, lse = _DilatedAttentionFunction.apply(q, k, v, level_bias, pieces, scale, rotary, copy_ok)
    else:
        with torch.no_grad():
            out, lse = _forward(q, k, v, pieces, scale, level_bias, rotary, copy_ok)
            out = out.to(q.dtype)
    return (out, lse) if return_lse else out


def _with_local_window(q, k, v, levels, window, is_causal, scale, return_lse, level_bias, rotary,
                       sinks: int = 0):
    """``dilated_attention`` whose level 0 is a sliding window of ``window`` positions
    (plus ``sinks`` attention sinks)."""
    if not is_causal:
        raise ValueError("a sliding local window needs is_causal=True")
    if levels[0][1] != 1:
        raise ValueError(f"the sliding local window replaces a dense level 0 (dilation rate 1), "
                         f"not one with rate {levels[0][1]}")
    N, M = k.shape[2], q.shape[2]
    q_local, k_local = q, k
    if rotary is not None:
        q_local = rotary(q, torch.arange(N - M, N, device=q.device))
        k_local = rotary(k, torch.arange(N, device=k.device))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    out, lse = sliding_window_attention(q_local, k_local, v, window, scale=scale)
    n_sinks = min(sinks, N)
    if n_sinks and N - 1 >= window:  # some query's window has moved past the first row
        visible = sink_visibility(torch.arange(N - M, N, device=q.device), n_sinks, window)
        q_sink, k_sink = q, k[:, :, :n_sinks]
        if rotary is not None:
            q_sink = rotary(q, torch.full((M,), window + sinks, device=q.device))
            k_sink = rotary(k_sink, torch.arange(n_sinks, device=q.device))
        sink_out, sink_lse = sink_attention(q_sink, k_sink, v[:, :, :n_sinks], visible, scale)
        out, lse = merge_levels([out, sink_out], [lse, sink_lse])  # one softmax: level 0
    if len(levels) > 1:
        far_bias = None if level_bias is None else level_bias[:, 1:]
        far_out, far_lse = dilated_attention(
            q, k, v, [w for w, _ in levels[1:]], [r for _, r in levels[1:]], is_causal=True,
            scale=scale, return_lse=True, level_bias=far_bias, rotary=rotary)
        bias = None
        if level_bias is not None:
            bias = torch.stack([level_bias[:, 0], torch.zeros_like(level_bias[:, 0])], 1)
        out, lse = merge_levels([out, far_out], [lse, far_lse], level_bias=bias)
    elif level_bias is not None:
        lse = lse + level_bias[:, 0].to(lse.dtype)[None, :, None]
    return (out, lse) if return_lse else out


def level_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    segment_length: int,
    dilation_rate: int,
    *,
    is_causal: bool = True,
    scale: Optional[float] = None,
    rotary: Optional[Rotary] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One dilated level alone: ``(out [B, Hq, M, D], lse [B, Hq, M])``, lse in float32
    (float64 for float64 inputs).

    Rows this level does not keep for a head get ``out = 0`` and ``lse = -inf``.
    Differentiable through both outputs (the lse gradient is exact: d lse / d scores is
    the softmax), so ``merge_levels(level_attention(...) for each level)`` gives the same
    values and gradients as ``dilated_attention`` (which is faster: it merges in place).
    ``rotary``: see ``dilated_attention``."""
    return dilated_attention(q, k, v, [segment_length], [dilation_rate], is_causal=is_causal,
                             scale=scale, return_lse=True, rotary=rotary)


def merge_levels(
    outs: Sequence[torch.Tensor],
    lses: Sequence[torch.Tensor],
    level_bias: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mix per-level results as in eq. 10: ``O = sum_i exp(lse_i + b_i - L) O_i`` with
    ``L = logsumexp_i(lse_i + b_i)``; returns ``(O, L)``. ``outs[i]`` is ``[B, H, M, D]``,
    ``lses[i]`` ``[B, H, M]`` (-inf where level i keeps the row out), ``level_bias``
    ``[H, L]`` (None = 0 = exactly eq. 10). Rows kept by no level give 0 and -inf.
    Differentiable in every input."""
    if len(outs) != len(lses) or not outs:
        raise ValueError("merge_levels needs one lse per output and at least one level")
    lse_dtype = torch.float64 if lses[0].dtype == torch.float64 else torch.float32
    stack = torch.stack([l.to(lse_dtype) for l in lses], 0)  # [L, B, H, M]
    if level_bias is not None:
        if tuple(level_bias.shape) != (stack.shape[2], stack.shape[0]):
            raise ValueError(f"level_bias must have shape [H, L] = [{stack.shape[2]}, {stack.shape[0]}]")
        stack = stack + level_bias.to(lse_dtype).t()[:, None, :, None]
    kept = torch.isfinite(stack)
    # -inf -> a very negative finite value: rows no level keeps then give 0, not NaN,
    # in the values and in the gradients.
    finite = torch.where(kept, stack, torch.finfo(lse_dtype).min / 2)
    total = torch.logsumexp(finite, 0)
    weights = torch.exp(finite - total)
    out = sum(w.unsqueeze(-1) * o.to(lse_dtype) for w, o in zip(weights, outs))
    total = torch.where(kept.any(0), total, float("-inf"))
    return out.to(outs[0].dtype), total


class DilatedAttention(nn.Module):
    """Multi-head dilated self-attention: q/k/v projections, grouped-query heads,
    ``dilated_attention`` and an output projection.

    ``forward(x, past_key_value=None, *, rotary=None, level_bias=None, use_cache=False)``
    takes ``x [B, T, embed_dim]``; ``past_key_value`` is a ``(k, v)`` pair
    ``[B, num_kv_heads, P, head_dim]`` of earlier positions (the T new tokens then sit
    at positions P..P+T-1, bottom-right aligned). Returns ``[B, T, embed_dim]``, or
    ``(out, (k, v))`` with the extended cache when ``use_cache``.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        segment_lengths: Sequence[int],
        dilation_rates: Sequence[int],
        *,
        num_kv_heads: Optional[int] = None,
        head_dim: Optional[int] = None,
        bias: bool = False,
        is_causal: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        if num_heads % num_kv_heads:
            raise ValueError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
        if head_dim is None:
            if embed_dim % num_heads:
                raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads}) "
                                 "unless head_dim is given")
            head_dim = embed_dim // num_heads
        self.levels = _levels(segment_lengths, dilation_rates)
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim, self.is_causal = head_dim, is_causal
        factory = {"device": device, "dtype": dtype}
        self.q_proj = nn.Linear(embed_dim, num_heads * head_dim, bias=bias, **factory)
        self.k_proj = nn.Linear(embed_dim, num_kv_heads * head_dim, bias=bias, **factory)
        self.v_proj = nn.Linear(embed_dim, num_kv_heads * head_dim, bias=bias, **factory)
        self.out_proj = nn.Linear(num_heads * head_dim, embed_dim, bias=bias, **factory)

    def forward(self, x, past_key_value=None, *, rotary: Optional[Rotary] = None,
                level_bias: Optional[torch.Tensor] = None, use_cache: bool = False):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.num_kv_heads, self.head_dim).transpose(1, 2)
        if past_key_value is not None:
            k = torch.cat([past_key_value[0], k], dim=2)
            v = torch.cat([past_key_value[1], v], dim=2)
        out = dilated_attention(q, k, v, [w for w, _ in self.levels], [r for _, r in self.levels],
                                is_causal=self.is_causal, level_bias=level_bias, rotary=rotary)
        out = self.out_proj(out.transpose(1, 2).reshape(B, T, self.num_heads * self.head_dim))
        return (out, (k, v)) if use_cache else out

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, heads={self.num_heads}, kv_heads={self.num_kv_heads}, "
                f"head_dim={self.head_dim}, levels={list(self.levels)}, causal={self.is_causal}")
