"""Use dilated attention inside Hugging Face transformers models.

    import longnet.attention.hf
    longnet.attention.hf.register()
    model = AutoModelForCausalLM.from_pretrained(path, attn_implementation="longnet_dilated")

``register()`` adds ``"longnet_dilated"`` to transformers' ``AttentionInterface`` (the
attention itself) and ``masking_utils.AttentionMaskInterface`` (the mask builder). The
mask builder hands the attention a 2-D ``[B, kv_len]`` padding mask (None when nothing
is padded) instead of a dense 4-D one: causality and the dilated pattern are built
into the kernel, and padding must not vanish.

Levels come from the model config: ``config.longnet_segment_lengths`` and
``config.longnet_dilation_rates`` (lists of equal length), and optionally
``config.longnet_local_window`` (level 0 then is a dense sliding window of that many
tokens, as in ``LongNetLM``). Without them the levels are ``w = 2048 * 2^i, r = 2^i`` up
to the first ``w >= kv_len``, so sequences of at most 2048 tokens get exact dense causal
attention.

Padding: each padded batch row is attended as if its padding were not there (its real
tokens compacted, in order, then dilated attention, so segments count real tokens
only); query rows that are padding give 0. Left padding (generation) and right
padding both work. Sliding-window or other custom mask functions are not applied.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from longnet.attention.dilated import dilated_attention

NAME = "longnet_dilated"
DEFAULT_BASE_SEGMENT = 2048


def default_levels(n_keys: int, base: int = DEFAULT_BASE_SEGMENT) -> tuple[list[int], list[int]]:
    """``w = base * 2^i, r = 2^i`` until ``w >= n_keys`` (at least one level)."""
    ws, rs, w, r = [base], [1], base, 1
    while w < n_keys:
        w, r = w * 2, r * 2
        ws.append(w)
        rs.append(r)
    return ws, rs


def levels_for(module: torch.nn.Module, n_keys: int) -> tuple[Sequence[int], Sequence[int]]:
    config = getattr(module, "config", None)
    ws = getattr(config, "longnet_segment_lengths", None)
    rs = getattr(config, "longnet_dilation_rates", None)
    if ws is None and rs is None:
        return default_levels(n_keys)
    if ws is None or rs is None or len(ws) != len(rs):
        raise ValueError("config.longnet_segment_lengths and config.longnet_dilation_rates must be "
                         f"given together with one rate per segment length; got {ws!r} and {rs!r}")
    return list(ws), list(rs)


def _valid_keys(attention_mask: Optional[torch.Tensor], n_keys: int) -> Optional[torch.Tensor]:
    """``[B, n_keys]`` bool, True for real tokens; None when nothing is masked."""
    if attention_mask is None:
        return None
    if attention_mask.dim() == 4:
        # A prepared 4-D mask: the last query row sees every real key at or before it.
        last = attention_mask[:, 0, -1, :]
        valid = last if last.dtype == torch.bool else last > torch.finfo(last.dtype).min / 2
    elif attention_mask.dim() == 2:
        valid = attention_mask.bool()
    else:
        raise ValueError(f"unsupported attention_mask of shape {tuple(attention_mask.shape)}")
    if valid.shape[-1] < n_keys:  # a cache longer than the mask: the rest is unused
        valid = torch.nn.functional.pad(valid, (0, n_keys - valid.shape[-1]), value=False)
    valid = valid[:, -n_keys:] if valid.shape[-1] > n_keys else valid
    return None if bool(valid.all()) else valid


def dilated_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: q ``[B, Hq, M, D]``, k/v ``[B, Hkv, N, D]`` ->
    ``([B, M, Hq, D], None)``."""
    if dropout:
        raise NotImplementedError("longnet_dilated does not implement attention dropout; "
                                  "set config.attention_dropout = 0")
    is_causal = kwargs.get("is_causal")
    is_causal = getattr(module, "is_causal", True) if is_causal is None else bool(is_causal)
    n_keys, n_queries = key.shape[2], query.shape[2]
    ws, rs = levels_for(module, n_keys)
    window = getattr(getattr(module, "config", None), "longnet_local_window", None)
    valid = _valid_keys(attention_mask, n_keys)
    if valid is None:
        out = dilated_attention(query, key, value, ws, rs, is_causal=is_causal, scale=scaling,
                                local_window=window)
        return out.transpose(1, 2).contiguous(), None

    out = query.new_zeros(query.shape)
    unpadded = valid.all(dim=-1)
    if bool(unpadded.any()):
        rows = unpadded.nonzero().squeeze(-1)
        out[rows] = dilated_attention(query[rows], key[rows], value[rows], ws, rs,
                                      is_causal=is_causal, scale=scaling, local_window=window)
    for b in (~unpadded).nonzero().squeeze(-1).tolist():
        keys = valid[b].nonzero().squeeze(-1)
        query_rows = valid[b, n_keys - n_queries:].nonzero().squeeze(-1)
        if keys.numel() == 0 or query_rows.numel() == 0:
            continue  # nothing real to attend from or to: the rows stay 0
        # The real queries are the last real keys (queries are the last positions), so
        # the compacted problem keeps dilated_attention's bottom-right alignment.
        part = dilated_attention(query[b:b + 1, :, query_rows], key[b:b + 1, :, keys],
                                 value[b:b + 1, :, keys], ws, rs, is_causal=is_causal,
                                 scale=scaling, local_window=window)
        out[b, :, query_rows] = part[0]
    return out.transpose(1, 2).contiguous(), None


def padding_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    q_offset: int = 0,
    kv_offset: int = 0,
    mask_function=None,
    attention_mask: Optional[torch.Tensor] = None,
    **kwargs,
) -> Optional[torch.Tensor]:
    """transformers mask builder: the 2-D ``[B, kv_length]`` bool padding mask, or None."""
    if attention_mask is None:
        return None
    mask = attention_mask.bool()
    needed = kv_offset + kv_length
    if mask.shape[-1] < needed:
        mask = torch.nn.functional.pad(mask, (0, needed - mask.shape[-1]), value=False)
    mask = mask[:, kv_offset:needed]
    return None if bool(mask.all()) else mask


def register(name: str = NAME) -> str:
    """Register dilated attention (and its mask builder) with transformers under
    ``name``; returns the name to pass as ``attn_implementation``. Idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(name, dilated_attention_forward)
    AttentionMaskInterface.register(name, padding_mask)
    return name
