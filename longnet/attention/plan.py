"""Planning dilated attention: which (segment x head) problems each fused-kernel call
covers, and the strided views that read them without a copy.

``_plan`` turns a shape and the levels into ``_Piece``s, one per kernel call (cached:
every layer of a model asks for the same plan); ``_view5``, ``_fold`` and ``_batches``
read a piece's rows out of ``[B, H, T, D]`` tensors. Also the checks every entry point
runs on its inputs and the normalised levels it plans with (``_check_inputs``,
``_levels``), which the sharded attention (``longnet.distributed``) shares.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Optional

import torch

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


# --------------------------------------------------------------------------- inputs


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
