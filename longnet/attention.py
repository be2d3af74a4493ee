"""Dilated attention (LongNet, Ding et al. 2023, arXiv 2307.02486): exact, differentiable,
linear in the sequence length.

Public API
----------
``dilated_attention(q, k, v, segment_lengths, dilation_rates, *, is_causal=True,
scale=None, return_lse=False, level_bias=None, rotary=None)``
    A drop-in for ``F.scaled_dot_product_attention`` (same layout) that mixes several
    (segment length w, dilation rate r) levels.
``level_attention(q, k, v, segment_length, dilation_rate, *, is_causal=True, scale=None,
rotary=None)`` -> ``(out, lse)``
    One level alone, with its log-sum-exp; differentiable through both outputs.
``merge_levels(outs, lses, level_bias=None)`` -> ``(out, lse)``
    The paper's eq. 10 mixing of ``level_attention`` results.
``DilatedAttention``
    A multi-head attention layer (projections + dilated attention, grouped-query).

Semantics (shared by everything here)
-------------------------------------
- q ``[B, Hq, M, D]``, k and v ``[B, Hkv, N, D]``, ``Hq % Hkv == 0``: query head h reads
  kv head ``h // (Hq // Hkv)``. ``M <= N``: the queries are the LAST M of the N positions
  (bottom-right alignment, as when decoding against a cache).
- Level (w, r): position t lies in segment ``t // w`` (a segment longer than the
  sequence is the whole sequence; the last segment may be short). Query head h keeps
  the rows with ``(t % w) % r == h % r`` (r need not divide w). A kept query attends
  to the kept keys of its own segment, and only to those at or before it when
  ``is_causal``. One level costs about ``2 N (w/r) d / r`` flops per head.
- Mixing (eq. 10): ``O = sum_i s_i O_i / sum_i s_i`` with ``s_i`` the softmax
  denominator of level i, computed stably as ``O = sum_i exp(lse_i - L) O_i``,
  ``L = logsumexp_i lse_i``. So the result is exactly one softmax over the multiset
  union of every level's keys: a key that two levels reach counts twice. A row that a
  level does not keep takes nothing from it; a row kept by no level is 0 (lse -inf).
- ``level_bias`` ``[Hq, L]`` (optional) is added to each level's lse before mixing, which
  is the same as adding it to every score of that level; 0 gives eq. 10 exactly.
- ``rotary(x, positions)`` (optional) is applied to the kept query and key rows of each
  level, ``x`` of shape ``[..., n, D]`` and ``positions`` a LongTensor ``[n]`` holding
  each row's index inside its sparsified segment (``((t % w) - h % r) // r``), so
  relative distances stay below ``w / r`` ("dilated" RoPE). It must be differentiable
  (plain torch ops) and broadcast over the leading dimensions.
- Gradients flow to q, k, v, the mixing weights (through every lse) and a
  ``level_bias`` that requires grad. float32, bfloat16 and float16 (float64 on CPU);
  CPU and CUDA.

How it runs
-----------
No N x N anything. A level is a strided view of q, k and v (rows ``o, o+r, ...`` of
every segment, head offset o). For each group of heads sharing an offset, all whole
segments of the level go to ONE fused attention call that returns the output and its
lse (``_scaled_dot_product_flash_attention_for_cpu`` on CPU; the flash kernel for
half types, else the memory-efficient one, on CUDA; plain torch elsewhere). Levels
whose groups hold few (segment, head) problems (the long, sparse top levels) copy
their rows into one contiguous buffer instead, so that one call covers every head and
keeps all threads busy. A first level with r = 1 runs with heads as the kernel's batch,
so its output already is the ``[B, H, N, D]`` result buffer. Each further call is
merged into that float32 buffer in place by an online log-sum-exp (one ``lerp_``
pass). Partial segments at the ends (queries starting mid-segment, a short last
segment) are a non-causal rectangle plus a causal square, merged the same way.

The backward pass reuses the same kernels with the FINAL output and lse, which makes
every level's probabilities parts of one joint softmax; the gradient of the lse (and of
``level_bias``) is folded in through extra feature columns (see ``_augment``).

On CPU the fused kernel computes causal blocks in 512-key tiles, so within a causal
2048-row segment about a fifth of the computed scores are masked-out work; dense SDPA
at 32K+ tokens wastes almost none. That sets the ceiling on how close the dilated
path's useful GFLOP/s get to SDPA's (see bench/attention.py).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

__all__ = ["dilated_attention", "level_attention", "merge_levels", "sink_attention",
           "sliding_window_attention", "DilatedAttention"]

Rotary = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class _Rows:
    """Rows ``start + s * seg_stride + i * step`` for ``s < nseg``, ``i < n``."""

    start: int
    seg_stride: int
    nseg: int
    step: int
    n: int


@dataclass(frozen=True)
class _Heads:
    """Heads ``start + j * step`` for ``j < count``."""

    start: int
    step: int
    count: int


@dataclass(frozen=True)
class _Piece:
    """One fused-kernel call: a block of (segments x heads) problems of equal shape.

    Plain pieces read strided views of one head group (heads sharing the offset
    ``h % rate``). A *gathered* piece covers every query head of a level at once: its
    rows are copied into one contiguous buffer (row offset ``h % rate`` per head, kv
    heads repeated per query head), so a level is one call with enough independent
    work to keep all threads busy."""

    level: int
    rate: int
    q_heads: _Heads
    kv_heads: _Heads
    q_rows: _Rows  # indices along the query axis (0..M-1); gathered: rows of offset 0
    k_rows: _Rows  # indices along the key axis (0..N-1); gathered: rows of offset 0
    causal: bool  # square block whose query rows are its key rows
    q_pos0: int  # rotary position of the first query row in its sparsified segment
    k_pos0: int
    first_write: bool  # first piece to write its output rows: copy instead of merge
    gathered: bool = False
    kv_group: int = 1  # query heads per kv head (gathered pieces)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _head_plans(n_q_heads: int, n_kv_heads: int, rate: int) -> list[tuple[_Heads, _Heads]]:
    """Split the query heads of a level into groups sharing one offset (h % rate) and
    mapping onto kv heads the way the fused kernels do GQA (query j -> kv j // rep)."""
    group = n_q_heads // n_kv_heads
    plans = []
    for offset in range(min(rate, n_q_heads)):
        heads = list(range(offset, n_q_heads, rate))
        kv = [h // group for h in heads]
        distinct = sorted(set(kv))
        rep = len(heads) // len(distinct)
        kv_step = distinct[1] - distinct[0] if len(distinct) > 1 else 1
        one_call = (
            rep * len(distinct) == len(heads)
            and all(kv[j] == distinct[j // rep] for j in range(len(heads)))
            and all(b - a == kv_step for a, b in zip(distinct, distinct[1:]))
        )
        if one_call:
            plans.append((_Heads(offset, rate, len(heads)), _Heads(distinct[0], kv_step, len(distinct))))
            continue
        for g in distinct:  # one call per kv head; its query heads are still every rate-th
            mine = [h for h in heads if h // group == g]
            plans.append((_Heads(mine[0], rate, len(mine)), _Heads(g, 1, 1)))
    return plans


_GATHER_BELOW = 8


@functools.lru_cache(maxsize=512)
def _plan(n_keys: int, n_queries: int, n_q_heads: int, n_kv_heads: int,
          levels: tuple[tuple[int, int], ...], is_causal: bool, n_batch: int = 1) -> tuple[_Piece, ...]:
    first_query = n_keys - n_queries
    pieces: list[_Piece] = []
    for li, (w, r) in enumerate(levels):
        w = min(w, n_keys)
        # Only a first level that keeps every row may write without merging.
        may_copy = li == 0 and r == 1
        # Bulk: whole segments that lie entirely inside the query range.
        seg_lo, seg_hi = _ceil_div(first_query, w), n_keys // w
        n_groups = min(r, n_q_heads)
        # Gather when the per-group calls would hold few (segment, head) problems: the
        # kernel splits work by (batch, head, query block), and a handful of causal
        # problems balances badly across threads.
        few_problems = (seg_hi - seg_lo) * n_batch * _ceil_div(n_q_heads, n_groups) < _GATHER_BELOW
        gather = (seg_hi > seg_lo and n_groups > 1 and few_problems
                  and _ceil_div(w - (n_groups - 1), r) == _ceil_div(w, r))
        if gather:  # every head keeps as many rows per segment: one call for all heads
            start = seg_lo * w
            pieces.append(_Piece(
                li, r, _Heads(0, 1, n_q_heads), _Heads(0, 1, n_q_heads),
                _Rows(start - first_query, w, seg_hi - seg_lo, r, _ceil_div(w, r)),
                _Rows(start, w, seg_hi - seg_lo, r, _ceil_div(w, r)),
                is_causal, 0, 0, may_copy, True, n_q_heads // n_kv_heads))
        for q_heads, kv_heads in _head_plans(n_q_heads, n_kv_heads, r):
            offset = q_heads.start % r
            if seg_hi > seg_lo and offset < w and not gather:
                n = _ceil_div(w - offset, r)
                start = seg_lo * w + offset
                pieces.append(_Piece(
                    li, r, q_heads, kv_heads,
                    _Rows(start - first_query, w, seg_hi - seg_lo, r, n),
                    _Rows(start, w, seg_hi - seg_lo, r, n),
                    is_causal, 0, 0, may_copy))
            # Edges: the segment where the queries begin mid-way, and a short last one.
            edges = []
            if first_query % w:
                edges.append(first_query // w)
            if n_keys % w and n_keys // w not in edges:
                edges.append(n_keys // w)
            for seg in edges:
                a = seg * w
                seg_len = min(a + w, n_keys) - a
                if offset >= seg_len:
                    continue
                n_k = _ceil_div(seg_len - offset, r)
                skip = max(0, _ceil_div(first_query - a - offset, r))  # kept rows before the queries
                n_q = n_k - skip
                if n_q <= 0:
                    continue
                q_rows = _Rows(a + offset + skip * r - first_query, 0, 1, r, n_q)
                if not is_causal:
                    pieces.append(_Piece(li, r, q_heads, kv_heads, q_rows, _Rows(a + offset, 0, 1, r, n_k),
                                         False, skip, 0, may_copy))
                    continue
                # Bottom-right causal = keys before the queries (all visible) + a square.
                if skip:
                    pieces.append(_Piece(li, r, q_heads, kv_heads, q_rows, _Rows(a + offset, 0, 1, r, skip),
                                         False, skip, 0, may_copy))
                pieces.append(_Piece(li, r, q_heads, kv_heads, q_rows,
                                     _Rows(a + offset + skip * r, 0, 1, r, n_q),
                                     True, skip, skip, may_copy and not skip))
    return tuple(pieces)


# --------------------------------------------------------------------------- views


def _view5(x: torch.Tensor, heads: _Heads, rows: _Rows) -> torch.Tensor:
    """``[B, H, T, D]`` -> strided view ``[nseg, B, heads, n, D]`` of the chosen rows."""
    s_b, s_h, s_t, s_d = x.stride()
    return x.as_strided(
        (rows.nseg, x.shape[0], heads.count, rows.n, x.shape[3]),
        (rows.seg_stride * s_t, s_b, heads.step * s_h, rows.step * s_t, s_d),
        x.storage_offset() + heads.start * s_h + rows.start * s_t,
    )


def _fold(x5: torch.Tensor) -> Optional[torch.Tensor]:
    """``[nseg, B, h, n, D]`` -> ``[nseg, B*h, n, D]`` as a view, or None if strides forbid."""
    nseg, b, h, n, d = x5.shape
    if b == 1:
        return x5[:, 0]
    if h == 1:
        return x5[:, :, 0]
    s = x5.stride()
    if s[1] == h * s[2]:
        return x5.as_strided((nseg, b * h, n, d), (s[0], s[2], s[3], s[4]))
    return None


def _batches(*tensors5: torch.Tensor):
    """Yield (batch index or slice, 4D views) so that one kernel call takes as much as
    the strides allow: all batch rows at once, else one batch row at a time."""
    folded = [_fold(t) for t in tensors5]
    if all(f is not None for f in folded):
        yield slice(None), folded
    else:
        for b in range(tensors5[0].shape[1]):
            yield b, [t[:, b] for t in tensors5]


def _unfold(x4: torch.Tensor, b, like5: torch.Tensor) -> torch.Tensor:
    """Kernel output ``[nseg, B*h, n, ...]`` back to ``[nseg, B, h, n, ...]`` (or one b)."""
    if isinstance(b, slice):
        return x4.reshape(like5.shape[:4] + x4.shape[3:])
    return x4


# --------------------------------------------------------------------------- kernels


_warned_fallback: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned_fallback:
        _warned_fallback.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


def _expand_kv(x: torch.Tensor, n_q_heads: int) -> torch.Tensor:
    """kv heads ``[..., Hkv, n, D]`` repeated for the query heads reading them."""
    rep = n_q_heads // x.shape[-3]
    return x if rep == 1 else x.repeat_interleave(rep, dim=-3)


_MATH_CHUNK_ELEMENTS = 1 << 25  # scores held at once by the plain-torch fallback


def _math_chunks(q, k):
    """Batch slices small enough that the fallback's score matrices stay bounded."""
    per_batch = max(1, q.shape[1] * q.shape[2] * k.shape[2])
    step = max(1, _MATH_CHUNK_ELEMENTS // per_batch)
    return [slice(i, i + step) for i in range(0, q.shape[0], step)]


def _math_scores(q, k, causal, scale, mask=None):
    scores = torch.matmul(q.float(), _expand_kv(k, q.shape[1]).float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores + mask
    if causal:
        n = scores.shape[-1]
        scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1),
                                    float("-inf"))
    return scores


def _math_fwd(q, k, v, causal, scale, mask=None):
    """Plain-torch attention returning (out, lse); used where no fused kernel applies."""
    outs, lses = [], []
    for part in _math_chunks(q, k):
        scores = _math_scores(q[part], k[part], causal, scale, mask)
        lse = torch.logsumexp(scores, dim=-1)
        outs.append(torch.matmul(torch.exp(scores - lse[..., None]), _expand_kv(v[part], q.shape[1]).float()))
        lses.append(lse)
    return torch.cat(outs).to(q.dtype), torch.cat(lses)


def _math_bwd(dout, q, k, v, out, lse, causal, scale, mask=None):
    n_kv, grads = k.shape[1], []
    for part in _math_chunks(q, k):
        qf, do = q[part].float(), dout[part].float()
        ke, ve = _expand_kv(k[part], q.shape[1]).float(), _expand_kv(v[part], q.shape[1]).float()
        scores = _math_scores(q[part], k[part], causal, scale, mask)
        probs = torch.exp(scores - lse[part].float()[..., None])
        delta = (do * out[part].float()).sum(-1, keepdim=True)
        dscores = probs * (torch.matmul(do, ve.transpose(-1, -2)) - delta)
        dq = torch.matmul(dscores, ke) * scale
        dk = torch.matmul(dscores.transpose(-1, -2), qf) * scale
        dv = torch.matmul(probs.transpose(-1, -2), do)
        if n_kv != q.shape[1]:
            shape = (dk.shape[0], n_kv, q.shape[1] // n_kv) + dk.shape[2:]
            dk, dv = dk.reshape(shape).sum(2), dv.reshape(shape).sum(2)
        grads.append((dq, dk, dv))
    dq, dk, dv = (torch.cat(g) for g in zip(*grads))
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


def _cuda_flash_ok(q) -> bool:
    return q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] % 8 == 0 and q.shape[-1] <= 256


def _kernel_fwd(q, k, v, causal: bool, scale: float, mask=None):
    """Fused attention on 4D ``[batch, heads, n, D]`` inputs -> (out, lse float32).
    ``mask``: an additive float mask ``[n_q, n_k]`` (the sliding window's band)."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
            q, k, v, 0.0, causal, attn_mask=mask, scale=scale)
    if q.device.type == "cuda" and mask is None:
        try:
            q, k, v = q.contiguous(), _expand_kv(k, q.shape[1]).contiguous(), _expand_kv(v, q.shape[1]).contiguous()
            if _cuda_flash_ok(q):
                res = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v, 0.0, causal, False, scale=scale)
                return res[0], res[1]
            res = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True, 0.0, causal, scale=scale)
            return res[0], res[1][..., : q.shape[2]]
        except (RuntimeError, TypeError) as err:  # unsupported shape/dtype on this GPU
            _warn_once("cuda-fwd", f"fused CUDA attention unavailable ({err}); using plain torch")
    return _math_fwd(q, k, v, causal, scale, mask)


def _kernel_bwd(dout, q, k, v, out, lse, causal: bool, scale: float, mask=None):
    """Gradients of the fused attention given the (possibly global) out and lse."""
    if q.device.type == "cpu":
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
            dout, q, k, v, out, lse, 0.0, causal, attn_mask=mask, scale=scale)
    if q.device.type == "cuda" and mask is None:
        try:
            n_kv = k.shape[1]
            qc, kc, vc = q.contiguous(), _expand_kv(k, q.shape[1]).contiguous(), _expand_kv(v, q.shape[1]).contiguous()
            dc, oc, lc = dout.contiguous(), out.contiguous(), lse.contiguous()
            if _cuda_flash_ok(qc):
                # Re-run the forward only for its bookkeeping outputs (sequence lengths,
                # rng state) that the backward op takes; its out and lse are not used.
                aux = torch.ops.aten._scaled_dot_product_flash_attention(qc, kc, vc, 0.0, causal, False, scale=scale)
                dq, dk, dv = torch.ops.aten._scaled_dot_product_flash_attention_backward(
                    dc, qc, kc, vc, oc, lc, aux[2], aux[3], aux[4], aux[5], 0.0, causal, aux[6], aux[7],
                    scale=scale)
            else:
                aux = torch.ops.aten._scaled_dot_product_efficient_attention(qc, kc, vc, None, True, 0.0, causal, scale=scale)
                lse_padded = aux[1].clone()
                lse_padded[..., : lc.shape[-1]] = lc
                dq, dk, dv, _ = torch.ops.aten._scaled_dot_product_efficient_attention_backward(
                    dc, qc, kc, vc, None, oc, lse_padded, aux[2], aux[3], 0.0, [True, True, True, False],
                    causal, scale=scale)
            if n_kv != q.shape[1]:
                shape = (dk.shape[0], n_kv, q.shape[1] // n_kv) + dk.shape[2:]
                dk, dv = dk.reshape(shape).sum(2), dv.reshape(shape).sum(2)
            return dq, dk, dv
        except (RuntimeError, TypeError) as err:
            _warn_once("cuda-bwd", f"fused CUDA attention backward unavailable ({err}); using plain torch")
    return _math_bwd(dout, q, k, v, out, lse, causal, scale, mask)


# --------------------------------------------------------------------------- forward


def _merge_(acc_out, acc_lse, out, lse, copy: bool) -> None:
    """Online log-sum-exp merge of one block result into the running output, in place.
    ``acc_lse`` and ``lse`` carry a trailing dimension of 1."""
    if copy:
        acc_out.copy_(out)
        acc_lse.copy_(lse)
        return
    new_lse = torch.logaddexp(acc_lse, lse)
    # The two weights exp(acc_lse - new) and exp(lse - new) sum to 1: one lerp pass.
    acc_out.lerp_(out.to(acc_out.dtype), torch.exp(lse - new_lse))
    acc_lse.copy_(new_lse)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


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


def _augment(q4, k4, v4, do4, o4, g4, scale):
    """Append feature columns so that the standard flash backward also carries
    - the lse gradient g: v gets a column of ones and dO a column of g, so
      dP = dO.v + g and dS = P (dP - rowsum(dO*O) + g) as d lse / d s = P;
    - the per-row sum of dS (the bias gradient): k gets 1/scale, q gets 0, so the
      scores are unchanged and that column of dq is scale * sum_t dS * (1/scale).
    Every other new column is zero, so nothing else changes. On CUDA the width is
    padded to a multiple of 8, which the fused kernels need."""
    extra = 8 - q4.shape[-1] % 8 + (8 if q4.shape[-1] % 8 > 6 else 0) if q4.is_cuda else 2

    def pad(x, first, second):
        cols = [x, first.expand(*x.shape[:-1], 1).to(x.dtype), second.expand(*x.shape[:-1], 1).to(x.dtype)]
        if extra > 2:
            cols.append(x.new_zeros(*x.shape[:-1], extra - 2))
        return torch.cat(cols, dim=-1)

    zero = torch.zeros((), dtype=_acc_dtype(q4.dtype), device=q4.device)
    one = torch.ones((), dtype=_acc_dtype(q4.dtype), device=q4.device)
    g = zero if g4 is None else g4
    return (pad(q4, zero, zero), pad(k4, zero, one / scale), pad(v4, one, zero),
            pad(do4, g, zero), pad(o4, zero, zero))


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


# --------------------------------------------------------------------------- public


def _check_inputs(q, k, v, levels, level_bias):
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"q, k, v must be 4-D [B, H, T, D]; got {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape; got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} disagree on batch or head dim")
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(f"query heads ({q.shape[1]}) must be a multiple of kv heads ({k.shape[1]})")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"more queries ({q.shape[2]}) than keys ({k.shape[2]}): queries are the "
                         "last M of the N positions")
    if not (q.dtype == k.dtype == v.dtype) or not q.is_floating_point():
        raise TypeError(f"q, k, v must share one floating dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError("q, k, v must be on one device")
    if not levels:
        raise ValueError("at least one (segment_length, dilation_rate) level is needed")
    for w, r in levels:
        if w < 1 or r < 1:
            raise ValueError(f"segment lengths and dilation rates must be >= 1; got w={w}, r={r}")
    if level_bias is not None and tuple(level_bias.shape) != (q.shape[1], len(levels)):
        raise ValueError(f"level_bias must have shape [Hq, L] = [{q.shape[1]}, {len(levels)}]; "
                         f"got {tuple(level_bias.shape)}")


def _levels(segment_lengths, dilation_rates) -> tuple[tuple[int, int], ...]:
    if isinstance(segment_lengths, int):
        segment_lengths = [segment_lengths]
    if isinstance(dilation_rates, int):
        dilation_rates = [dilation_rates]
    segment_lengths, dilation_rates = list(segment_lengths), list(dilation_rates)
    if len(segment_lengths) != len(dilation_rates):
        raise ValueError(f"{len(segment_lengths)} segment lengths but {len(dilation_rates)} dilation rates")
    return tuple((int(w), int(r)) for w, r in zip(segment_lengths, dilation_rates))


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


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
    (float64 for float64 inputs), when ``return_lse``). See the module docstring for the exact semantics: levels
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
