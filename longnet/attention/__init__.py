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

Modules
-------
``plan``     which (segment x head) problems each fused-kernel call covers (cached per
             shape), the strided views that read them, and the input checks.
``kernels``  the fused attention calls (CPU; CUDA flash or memory-efficient) and their
             plain-torch fallback, the in-place log-sum-exp merge, ``_augment``.
``dilated``  the levels' forward and backward as one autograd function,
             ``dilated_attention``, ``level_attention``, ``merge_levels`` and the
             ``DilatedAttention`` layer.
``sliding``  the sliding window that replaces level 0 (``local_window``) and its
             attention sinks.
``hf``       dilated attention inside Hugging Face transformers models (``register()``).
"""

from longnet.attention.dilated import (
    DilatedAttention,
    dilated_attention,
    level_attention,
    merge_levels,
)
from longnet.attention.plan import Rotary
from longnet.attention.sliding import sink_attention, sink_visibility, sliding_window_attention

__all__ = [
    "DilatedAttention",
    "Rotary",
    "dilated_attention",
    "level_attention",
    "merge_levels",
    "sink_attention",
    "sink_visibility",
    "sliding_window_attention",
]
