"""The fused attention kernels that every dilated level and the sliding window run on.

``_kernel_fwd`` / ``_kernel_bwd`` call PyTorch's fused attention ops on 4-D
``[batch, heads, n, D]`` operands and return the output with its log-sum-exp (the CPU
flash kernel; on CUDA the flash kernel for half types, else the memory-efficient one),
falling back to plain torch (``_math_fwd`` / ``_math_bwd``, in bounded chunks) where no
fused kernel applies. ``_merge_`` folds one call's result into a running output by an
online log-sum-exp, and ``_augment`` adds the feature columns through which the standard
backward also carries the gradients of the lse and of the level bias.
"""

from __future__ import annotations

import warnings

import torch

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


# --------------------------------------------------------------------------- merging


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


# --------------------------------------------------------------------------- backward columns


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
