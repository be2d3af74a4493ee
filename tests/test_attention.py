"""longnet.attention against the brute-force reference (tests/attention_reference.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attention_reference import reference_dilated, reference_level
from longnet.attention import dilated as dilated_module
from longnet.attention import kernels as kernels_module
from longnet.attention import plan as plan_module
from longnet.attention import sliding as sliding_module
from longnet.attention import (
    DilatedAttention,
    dilated_attention,
    level_attention,
    merge_levels,
    sliding_window_attention,
)

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _qkv(B, Hq, Hkv, M, N, D, dtype=F64, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Hq, M, D, generator=gen, dtype=F64).to(dtype)
    k = torch.randn(B, Hkv, N, D, generator=gen, dtype=F64).to(dtype)
    v = torch.randn(B, Hkv, N, D, generator=gen, dtype=F64).to(dtype)
    if requires_grad:
        q, k, v = (x.requires_grad_() for x in (q, k, v))
    return q, k, v


def _same_lse(a, b, atol):
    assert torch.equal(torch.isinf(a), torch.isinf(b)), "different rows are empty"
    finite = torch.isfinite(b)
    torch.testing.assert_close(a[finite].double(), b[finite].double(), atol=atol, rtol=0)


@st.composite
def configs(draw):
    """Shapes and level configs: GQA, M < N, ragged N, r not dividing w, r > w,
    segments longer than the sequence, causal or not."""
    Hkv = draw(st.integers(1, 3))
    Hq = Hkv * draw(st.integers(1, 3))
    N = draw(st.integers(1, 70))
    M = draw(st.integers(1, N))
    B = draw(st.integers(1, 2))
    D = draw(st.sampled_from([4, 8, 16]))
    n_levels = draw(st.integers(1, 4))
    ws = draw(st.lists(st.integers(1, 80), min_size=n_levels, max_size=n_levels))
    rs = draw(st.lists(st.integers(1, 7), min_size=n_levels, max_size=n_levels))
    causal = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return B, Hq, Hkv, M, N, D, ws, rs, causal, seed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_matches_reference_float64(cfg):
    B, Hq, Hkv, M, N, D, ws, rs, causal, seed = cfg
    q, k, v = _qkv(B, Hq, Hkv, M, N, D, seed=seed)
    out, lse = dilated_attention(q, k, v, ws, rs, is_causal=causal, return_lse=True)
    ref_out, ref_lse = reference_dilated(q, k, v, ws, rs, is_causal=causal)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=0)
    _same_lse(lse, ref_lse, 1e-10)


@settings(max_examples=150, deadline=None)
@given(configs(), st.sampled_from([torch.float32, torch.bfloat16, torch.float16]))
def test_matches_reference_low_precision(cfg, dtype):
    B, Hq, Hkv, M, N, D, ws, rs, causal, seed = cfg
    q, k, v = _qkv(B, Hq, Hkv, M, N, D, dtype=dtype, seed=seed)
    out, lse = dilated_attention(q, k, v, ws, rs, is_causal=causal, return_lse=True)
    assert out.dtype == dtype and lse.dtype == torch.float32
    ref_out, ref_lse = reference_dilated(q, k, v, ws, rs, is_causal=causal)
    atol = {torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}[dtype]
    torch.testing.assert_close(out.double(), ref_out, atol=atol, rtol=0)
    _same_lse(lse, ref_lse, atol * 4)


@settings(max_examples=120, deadline=None)
@given(configs(), st.booleans())
def test_gradients_match_reference_autograd(cfg, use_lse):
    """Gradients w.r.t. q, k, v and a level bias, through the output and the lse."""
    B, Hq, Hkv, M, N, D, ws, rs, causal, seed = cfg
    q, k, v = _qkv(B, Hq, Hkv, M, N, D, seed=seed, requires_grad=True)
    bias = torch.randn(Hq, len(ws), dtype=F64, requires_grad=True)
    out, lse = dilated_attention(q, k, v, ws, rs, is_causal=causal, return_lse=True, level_bias=bias)
    gen = torch.Generator().manual_seed(seed + 1)
    g_out = torch.randn(out.shape, generator=gen, dtype=F64)
    g_lse = torch.randn(lse.shape, generator=gen, dtype=F64) * use_lse

    def loss(o, l):
        return (o * g_out).sum() + (torch.where(torch.isinf(l), 0.0, l) * g_lse).sum()

    grads = torch.autograd.grad(loss(out, lse), (q, k, v, bias))
    q2, k2, v2, b2 = (x.detach().clone().requires_grad_() for x in (q, k, v, bias))
    ref_out, ref_lse = reference_dilated(q2, k2, v2, ws, rs, is_causal=causal, level_bias=b2)
    ref_grads = torch.autograd.grad(loss(ref_out, ref_lse), (q2, k2, v2, b2))
    for name, got, want in zip("q k v bias".split(), grads, ref_grads):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0, msg=f"d{name}")


def test_gradients_float32_and_bfloat16():
    ws, rs = [8, 16, 64], [1, 2, 4]
    for dtype, atol in [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)]:
        q, k, v = _qkv(2, 4, 2, 40, 50, 16, dtype=dtype, seed=3, requires_grad=True)
        out = dilated_attention(q, k, v, ws, rs)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=F64)
        grads = torch.autograd.grad((out.double() * g).sum(), (q, k, v))
        q2, k2, v2 = (x.detach().double().requires_grad_() for x in (q, k, v))
        ref, _ = reference_dilated(q2, k2, v2, ws, rs)
        ref_grads = torch.autograd.grad((ref * g).sum(), (q2, k2, v2))
        for got, want in zip(grads, ref_grads):
            assert got.dtype == dtype
            torch.testing.assert_close(got.double(), want, atol=atol, rtol=0)


def test_single_level_equals_sdpa_causal():
    q, k, v = _qkv(2, 4, 4, 100, 100, 16, dtype=torch.float32, seed=1)
    out = dilated_attention(q, k, v, [128], [1])
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-6, rtol=0)
    out = dilated_attention(q, k, v, [100], [1], is_causal=False, scale=0.3)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, scale=0.3),
                               atol=1e-6, rtol=0)


def test_single_level_gqa_equals_sdpa_gqa():
    q, k, v = _qkv(1, 6, 2, 64, 64, 8, dtype=torch.float32, seed=2)
    out = dilated_attention(q, k, v, [64], [1])
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    torch.testing.assert_close(out, want, atol=1e-6, rtol=0)


@pytest.mark.parametrize("M", [1, 7, 33, 64])
def test_suffix_consistency(M):
    """out(q[-M:]) == out(q)[..., -M:, :]: decoding against a cache is exact."""
    q, k, v = _qkv(2, 6, 3, 97, 97, 8, seed=4)
    ws, rs = [16, 32, 128], [1, 2, 4]
    full, full_lse = dilated_attention(q, k, v, ws, rs, return_lse=True)
    part, part_lse = dilated_attention(q[:, :, -M:], k, v, ws, rs, return_lse=True)
    torch.testing.assert_close(part, full[:, :, -M:], atol=1e-12, rtol=0)
    torch.testing.assert_close(part_lse, full_lse[:, :, -M:], atol=1e-12, rtol=0)


def test_level_bias_zero_is_no_bias():
    q, k, v = _qkv(1, 4, 2, 50, 50, 8, seed=5)
    ws, rs = [8, 32], [1, 2]
    plain = dilated_attention(q, k, v, ws, rs)
    biased = dilated_attention(q, k, v, ws, rs, level_bias=torch.zeros(4, 2, dtype=F64))
    torch.testing.assert_close(biased, plain, atol=0, rtol=0)


def test_level_bias_shifts_weight_between_levels():
    """A huge bias on one level makes the output that level's own output."""
    q, k, v = _qkv(1, 2, 2, 40, 40, 8, seed=6)
    ws, rs = [8, 40], [1, 1]
    bias = torch.tensor([[0.0, -1e4], [-1e4, 0.0]], dtype=F64)
    out = dilated_attention(q, k, v, ws, rs, level_bias=bias)
    lvl0, _ = level_attention(q, k, v, 8, 1)
    lvl1, _ = level_attention(q, k, v, 40, 1)
    torch.testing.assert_close(out[:, 0], lvl0[:, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out[:, 1], lvl1[:, 1], atol=1e-12, rtol=0)


def test_level_attention_and_merge_equal_fused_path_values_and_grads():
    ws, rs = [8, 16, 64], [1, 2, 4]
    q, k, v = _qkv(2, 4, 2, 30, 61, 8, seed=7, requires_grad=True)
    bias = torch.randn(4, 3, dtype=F64, requires_grad=True)
    fused, fused_lse = dilated_attention(q, k, v, ws, rs, return_lse=True, level_bias=bias)
    per_level = [level_attention(q, k, v, w, r) for w, r in zip(ws, rs)]
    for (o, l), w, r in zip(per_level, ws, rs):
        ref_o, ref_l = reference_level(q.detach(), k.detach(), v.detach(), w, r)
        torch.testing.assert_close(o, ref_o, atol=1e-12, rtol=0)
        _same_lse(l, ref_l, 1e-12)
        assert (o[torch.isinf(l)] == 0).all()
    merged, merged_lse = merge_levels([o for o, _ in per_level], [l for _, l in per_level], bias)
    torch.testing.assert_close(merged, fused, atol=1e-12, rtol=0)
    torch.testing.assert_close(merged_lse, fused_lse, atol=1e-12, rtol=0)
    g = torch.randn(fused.shape, dtype=F64)
    want = torch.autograd.grad((fused * g).sum() + fused_lse.sum(), (q, k, v, bias))
    got = torch.autograd.grad((merged * g).sum() + merged_lse.sum(), (q, k, v, bias))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def _rope(x, positions, theta=100.0):
    """A plain RoPE (rotate-half) used to test the rotary hook."""
    d = x.shape[-1]
    freqs = theta ** (-torch.arange(0, d, 2, dtype=F64) / d)
    angles = positions.to(F64)[:, None] * freqs[None, :]
    cos = torch.cat([angles.cos()] * 2, -1).to(x.dtype)
    sin = torch.cat([angles.sin()] * 2, -1).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def test_rotary_hook_positions_and_gradients():
    ws, rs = [8, 24, 64], [1, 3, 4]
    q, k, v = _qkv(1, 6, 3, 20, 50, 8, seed=8, requires_grad=True)
    seen = []

    def rope(x, positions):
        assert positions.shape == (x.shape[-2],)
        seen.append(positions.clone())
        return _rope(x, positions)

    out, lse = dilated_attention(q, k, v, ws, rs, return_lse=True, rotary=rope)
    ref, ref_lse = reference_dilated(q.detach(), k.detach(), v.detach(), ws, rs, rotary=_rope)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
    _same_lse(lse, ref_lse, 1e-12)
    # positions are indices inside a sparsified segment: always < w / r (rounded up)
    assert all(p.max() < max(-(-w // r) for w, r in zip(ws, rs)) for p in seen)
    assert all(p.dtype == torch.long for p in seen)
    g = torch.randn(out.shape, dtype=F64)
    got = torch.autograd.grad((out * g).sum(), (q, k, v))
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    ref, _ = reference_dilated(q2, k2, v2, ws, rs, rotary=_rope)
    want = torch.autograd.grad((ref * g).sum(), (q2, k2, v2))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_rows_kept_by_no_level_are_zero():
    q, k, v = _qkv(1, 2, 2, 12, 12, 4, seed=9)
    out, lse = dilated_attention(q, k, v, [4], [2], return_lse=True)
    # head 0 keeps rows with t % 4 in {0, 2}; head 1 keeps {1, 3}
    assert torch.isinf(lse[0, 0, 1::2]).all() and (out[0, 0, 1::2] == 0).all()
    assert torch.isfinite(lse[0, 0, 0::2]).all()


def test_bad_inputs_raise_clear_errors():
    q, k, v = _qkv(1, 3, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="multiple of kv heads"):
        dilated_attention(q, k, v, [4], [1])
    q, k, v = _qkv(1, 2, 2, 8, 4, 4)
    with pytest.raises(ValueError, match="more queries"):
        dilated_attention(q, k, v, [4], [1])
    q, k, v = _qkv(1, 2, 2, 4, 4, 4)
    with pytest.raises(ValueError, match="dilation rates"):
        dilated_attention(q, k, v, [4, 8], [1])
    with pytest.raises(ValueError, match=">= 1"):
        dilated_attention(q, k, v, [0], [1])
    with pytest.raises(ValueError, match="level_bias"):
        dilated_attention(q, k, v, [4], [1], level_bias=torch.zeros(2, 3))
    with pytest.raises(TypeError, match="dtype"):
        dilated_attention(q, k.float(), v, [4], [1])


def test_empty_query_block():
    q, k, v = _qkv(1, 2, 2, 0, 5, 4)
    out, lse = dilated_attention(q, k, v, [4], [1], return_lse=True)
    assert out.shape == (1, 2, 0, 4) and lse.shape == (1, 2, 0)


def test_dilated_attention_module_shapes_cache_and_grads():
    torch.manual_seed(0)
    layer = DilatedAttention(32, 4, [8, 16], [1, 2], num_kv_heads=2).double()
    x = torch.randn(2, 20, 32, dtype=F64, requires_grad=True)
    out = layer(x)
    assert out.shape == (2, 20, 32)
    out.sum().backward()
    assert x.grad is not None and layer.q_proj.weight.grad is not None
    # decoding the last 5 tokens against a cache of the first 15 gives the same rows
    with torch.no_grad():
        _, cache = layer(x[:, :15], use_cache=True)
        tail = layer(x[:, 15:], cache)
    torch.testing.assert_close(tail, out.detach()[:, 15:], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="divisible"):
        DilatedAttention(30, 4, [8], [1])
    with pytest.raises(ValueError, match="multiple of num_kv_heads"):
        DilatedAttention(32, 4, [8], [1], num_kv_heads=3)


@pytest.mark.parametrize("gather_below", [0, 10**9])
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_execution_paths_agree_with_reference(monkeypatch, gather_below, layout):
    """Every way a level is run: strided head groups or gathered heads; batch rows
    folded into one call or one call per row (inputs transposed from [B, N, H, D], as
    transformers passes them); the head-major first level (M = N, N % w == 0)."""
    monkeypatch.setattr(plan_module, "_GATHER_BELOW", gather_below)
    plan_module._plan.cache_clear()  # plans are cached per shape
    request_cleanup = plan_module._plan.cache_clear
    cases = [  # (B, Hq, Hkv, M, N, ws, rs)
        (2, 4, 4, 64, 64, [16, 32, 64], [1, 2, 4]),  # head-major first level
        (2, 6, 2, 30, 64, [16, 32, 64], [1, 2, 4]),  # GQA, M < N
        (3, 4, 1, 50, 50, [10, 30], [1, 3]),  # ragged, r does not divide w
        (2, 8, 4, 40, 40, [8, 40], [2, 16]),  # first level r > 1, r > Hq
    ]
    for B, Hq, Hkv, M, N, ws, rs in cases:
        q, k, v = _qkv(B, Hq, Hkv, M, N, 8, seed=N + Hq, requires_grad=True)
        if layout == "transposed":
            q, k, v = (x.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_() for x in (q, k, v))
        out, lse = dilated_attention(q, k, v, ws, rs, return_lse=True)
        ref, ref_lse = reference_dilated(q.detach(), k.detach(), v.detach(), ws, rs)
        torch.testing.assert_close(out, ref, atol=1e-12, rtol=0)
        _same_lse(lse, ref_lse, 1e-12)
        g = torch.randn(out.shape, dtype=F64)
        got = torch.autograd.grad((out * g).sum(), (q, k, v))
        q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
        ref, _ = reference_dilated(q2, k2, v2, ws, rs)
        want = torch.autograd.grad((ref * g).sum(), (q2, k2, v2))
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    request_cleanup()


def test_plain_torch_fallback_matches_reference(monkeypatch):
    """The fallback used where no fused kernel applies (e.g. unsupported GPU shapes),
    forced here on CPU, in small chunks."""
    monkeypatch.setattr(dilated_module, "_kernel_fwd", kernels_module._math_fwd)
    monkeypatch.setattr(dilated_module, "_kernel_bwd", kernels_module._math_bwd)
    monkeypatch.setattr(kernels_module, "_MATH_CHUNK_ELEMENTS", 500)
    ws, rs = [8, 16, 64], [1, 2, 4]
    q, k, v = _qkv(2, 6, 3, 25, 50, 8, seed=11, requires_grad=True)
    out, lse = dilated_attention(q, k, v, ws, rs, return_lse=True)
    ref, ref_lse = reference_dilated(q.detach(), k.detach(), v.detach(), ws, rs)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)  # the fallback computes in float32
    _same_lse(lse, ref_lse, 1e-5)
    g = torch.randn(out.shape, dtype=F64)
    got = torch.autograd.grad((out * g).sum() + lse.sum(), (q, k, v))
    q2, k2, v2 = (x.detach().clone().requires_grad_() for x in (q, k, v))
    ref, ref_lse = reference_dilated(q2, k2, v2, ws, rs)
    want = torch.autograd.grad((ref * g).sum() + ref_lse.sum(), (q2, k2, v2))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_head_major_first_level_is_taken(monkeypatch):
    calls = []
    real = dilated_module._head_major_first_level

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(dilated_module, "_head_major_first_level", spy)
    q, k, v = _qkv(1, 4, 4, 64, 64, 8)
    dilated_attention(q, k, v, [16, 64], [1, 4])
    dilated_attention(q[:, :, -10:], k, v, [16, 64], [1, 4])  # M < N: not applicable
    assert calls == [True, False]


# --------------------------------------------------------------------------- sliding window


def assert_same_values_and_gradients(got, want, inputs):
    """(out, lse) pairs equal, and so are the gradients of one loss over both."""
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    loss = lambda out, lse: (out ** 2).sum() + lse.sum()
    for a, b in zip(torch.autograd.grad(loss(*got), inputs),
                    torch.autograd.grad(loss(*want), inputs)):
        torch.testing.assert_close(a, b)


def _reference_sliding(q, k, v, window, scale=None):
    """Brute force: query at position t sees keys j with t - window < j <= t."""
    B, H, M, D = q.shape
    N = k.shape[2]
    rep = H // k.shape[1]
    ke, ve = k.repeat_interleave(rep, 1).double(), v.repeat_interleave(rep, 1).double()
    t = torch.arange(N - M, N)[:, None]
    j = torch.arange(N)[None, :]
    scores = (q.double() @ ke.transpose(-1, -2)) * (scale or D ** -0.5)
    scores = scores.masked_fill(~((j <= t) & (j > t - window)), float("-inf"))
    return torch.softmax(scores, -1) @ ve, torch.logsumexp(scores, -1)


@pytest.mark.parametrize("n_keys,n_queries,window", [
    (10, 10, 3), (17, 5, 4), (17, 17, 100), (9, 1, 4), (23, 23, 8), (23, 7, 5), (12, 12, 1)])
def test_sliding_window_values_and_gradients(monkeypatch, n_keys, n_queries, window):
    monkeypatch.setattr(sliding_module, "_SLIDING_CHUNK", 4)  # several chunks, all three kinds
    sliding_module._sliding_plan.cache_clear()
    gen = torch.Generator().manual_seed(n_keys * 100 + window)
    q = torch.randn(2, 6, n_queries, 8, generator=gen, requires_grad=True)
    k = torch.randn(2, 2, n_keys, 8, generator=gen, requires_grad=True)
    v = torch.randn(2, 2, n_keys, 8, generator=gen, requires_grad=True)
    out, lse = sliding_window_attention(q, k, v, window)
    ref_out, ref_lse = _reference_sliding(q, k, v, window)
    torch.testing.assert_close(out.double(), ref_out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse.double(), ref_lse, atol=1e-5, rtol=1e-5)
    d_out, d_lse = torch.randn_like(out), torch.randn_like(lse)
    got = torch.autograd.grad((out * d_out).sum() + (lse * d_lse).sum(), (q, k, v))
    want = torch.autograd.grad((ref_out * d_out.double()).sum() + (ref_lse * d_lse.double()).sum(),
                               (q, k, v))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5)
    sliding_module._sliding_plan.cache_clear()


def test_sliding_window_covering_the_sequence_is_causal_sdpa():
    q, k, v = (torch.randn(1, 4, 40, 16) for _ in range(3))
    out, _ = sliding_window_attention(q, k, v, 40)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, is_causal=True),
                               atol=1e-5, rtol=1e-5)


def test_local_window_level_mixes_with_far_levels_by_eq10():
    gen = torch.Generator().manual_seed(5)
    q = torch.randn(1, 6, 40, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(1, 2, 40, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(1, 2, 40, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(6, 3, dtype=torch.float64, generator=gen, requires_grad=True)
    out, lse = dilated_attention(q, k, v, [8, 16, 32], [1, 2, 4], local_window=6,
                                 level_bias=bias, return_lse=True)
    local_out, local_lse = _reference_sliding(q, k, v, 6)  # level 0: the window, brute force
    outs, lses = [local_out], [local_lse]
    for w, r in ((16, 2), (32, 4)):
        o, l = reference_level(q, k, v, w, r)
        outs.append(o)
        lses.append(l)
    ref_out, ref_lse = merge_levels(outs, lses, level_bias=bias)
    assert_same_values_and_gradients((out, lse), (ref_out, ref_lse), (q, k, v, bias))


def test_local_window_needs_a_dense_causal_level_0():
    q = k = v = torch.randn(1, 2, 8, 4)
    with pytest.raises(ValueError, match="rate 1"):
        dilated_attention(q, k, v, [4, 8], [2, 4], local_window=4)
    with pytest.raises(ValueError, match="is_causal"):
        dilated_attention(q, k, v, [4, 8], [1, 2], local_window=4, is_causal=False)
    with pytest.raises(ValueError, match=">= 1"):
        sliding_window_attention(q, k, v, 0)


def test_attention_sinks_join_the_window_in_one_softmax():
    """Sinks without rotary: the first S keys stay visible after the window has passed
    them, in level 0's softmax; values and gradients against brute force."""
    gen = torch.Generator().manual_seed(6)
    q = torch.randn(1, 6, 30, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    k = torch.randn(1, 2, 30, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    v = torch.randn(1, 2, 30, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    bias = torch.randn(6, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    out, lse = dilated_attention(q, k, v, [5, 16], [1, 4], local_window=5, attention_sinks=3,
                                 level_bias=bias, return_lse=True)
    t = torch.arange(30)[:, None]
    j = torch.arange(30)[None, :]
    level0 = (j <= t) & ((j > t - 5) | (j < 3))
    ke, ve = k.repeat_interleave(3, 1), v.repeat_interleave(3, 1)
    scores = (q @ ke.transpose(-1, -2)) * 8 ** -0.5
    scores = scores.masked_fill(~level0, float("-inf"))
    ref0 = (torch.softmax(scores, -1) @ ve, torch.logsumexp(scores, -1))
    far = reference_level(q, k, v, 16, 4)
    ref_out, ref_lse = merge_levels([ref0[0], far[0]], [ref0[1], far[1]], level_bias=bias)
    assert_same_values_and_gradients((out, lse), (ref_out, ref_lse), (q, k, v, bias))
    with pytest.raises(ValueError, match="local_window"):
        dilated_attention(q, k, v, [5, 16], [1, 4], attention_sinks=2)
