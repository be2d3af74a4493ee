"""longnet.attention.hf: dilated attention inside transformers models."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

import longnet.attention.hf as lhf
from longnet.attention import dilated_attention


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture(scope="module")
def tiny_llama():
    lhf.register()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def _generate(model, implementation, ids, levels=None, attention_mask=None, new_tokens=12):
    model.set_attn_implementation(implementation)
    if levels is None:
        for name in ("longnet_segment_lengths", "longnet_dilation_rates"):
            if hasattr(model.config, name):
                delattr(model.config, name)
    else:
        model.config.longnet_segment_lengths, model.config.longnet_dilation_rates = levels
    with torch.no_grad():
        return model.generate(ids, attention_mask=attention_mask, max_new_tokens=new_tokens,
                              do_sample=False, pad_token_id=0)


def test_register_is_idempotent_and_returns_name():
    assert lhf.register() == "longnet_dilated"
    assert lhf.register() == "longnet_dilated"
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    assert AttentionInterface._global_mapping["longnet_dilated"] is lhf.dilated_attention_forward
    assert AttentionMaskInterface._global_mapping["longnet_dilated"] is lhf.padding_mask


def test_one_level_generation_is_token_identical_to_sdpa(tiny_llama):
    ids = torch.randint(3, 128, (1, 24), generator=torch.Generator().manual_seed(1))
    want = _generate(tiny_llama, "sdpa", ids)
    got = _generate(tiny_llama, "longnet_dilated", ids, levels=([1024], [1]))
    assert torch.equal(got, want)
    # the default levels are a single dense level below 2048 tokens
    assert torch.equal(_generate(tiny_llama, "longnet_dilated", ids), want)


def test_logits_match_sdpa_and_dilated_levels_are_really_used(tiny_llama):
    ids = torch.randint(3, 128, (2, 40), generator=torch.Generator().manual_seed(2))
    tiny_llama.set_attn_implementation("sdpa")
    with torch.no_grad():
        dense = tiny_llama(ids).logits
    tiny_llama.set_attn_implementation("longnet_dilated")
    tiny_llama.config.longnet_segment_lengths, tiny_llama.config.longnet_dilation_rates = [64], [1]
    with torch.no_grad():
        one_level = tiny_llama(ids).logits
        tiny_llama.config.longnet_segment_lengths, tiny_llama.config.longnet_dilation_rates = [8, 16], [1, 2]
        dilated = tiny_llama(ids).logits
    torch.testing.assert_close(one_level, dense, atol=1e-5, rtol=0)
    assert (dilated - dense).abs().max() > 1e-3  # a different attention pattern really ran


def test_left_padded_batch_equals_each_prompt_alone(tiny_llama):
    """Padding must still apply: each padded row generates what it generates alone."""
    gen = torch.Generator().manual_seed(3)
    long, short = torch.randint(3, 128, (1, 21), generator=gen), torch.randint(3, 128, (1, 13), generator=gen)
    batch = torch.zeros(2, 21, dtype=torch.long)
    mask = torch.zeros(2, 21, dtype=torch.long)
    batch[0], mask[0] = long[0], 1
    batch[1, 8:], mask[1, 8:] = short[0], 1
    levels = ([8, 16], [1, 2])
    padded = _generate(tiny_llama, "longnet_dilated", batch, levels, attention_mask=mask)
    alone_long = _generate(tiny_llama, "longnet_dilated", long, levels)
    alone_short = _generate(tiny_llama, "longnet_dilated", short, levels)
    assert torch.equal(padded[0, 21:], alone_long[0, 21:])
    assert torch.equal(padded[1, 21:], alone_short[0, 13:])
    # and with one level covering everything, the padded batch matches sdpa's
    sdpa = _generate(tiny_llama, "sdpa", batch, attention_mask=mask)
    one_level = _generate(tiny_llama, "longnet_dilated", batch, ([1024], [1]), attention_mask=mask)
    assert torch.equal(one_level, sdpa)


def test_attention_forward_compacts_padding_and_zeroes_pad_queries():
    """Direct check of the attention function: right and left padding, GQA."""
    gen = torch.Generator().manual_seed(4)
    q = torch.randn(2, 4, 10, 8, generator=gen, dtype=torch.float64)
    k = torch.randn(2, 2, 10, 8, generator=gen, dtype=torch.float64)
    v = torch.randn(2, 2, 10, 8, generator=gen, dtype=torch.float64)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[0, :3] = False  # left padding
    mask[1, 7:] = False  # right padding
    module = torch.nn.Module()
    module.config = LlamaConfig(longnet_segment_lengths=[4, 8], longnet_dilation_rates=[1, 2])
    out, weights = lhf.dilated_attention_forward(module, q, k, v, lhf.padding_mask(2, 10, 10, attention_mask=mask))
    assert weights is None and out.shape == (2, 10, 4, 8)
    want0 = dilated_attention(q[:1, :, 3:], k[:1, :, 3:], v[:1, :, 3:], [4, 8], [1, 2])
    torch.testing.assert_close(out[0, 3:], want0[0].transpose(0, 1), atol=1e-12, rtol=0)
    assert (out[0, :3] == 0).all()
    want1 = dilated_attention(q[1:, :, :7], k[1:, :, :7], v[1:, :, :7], [4, 8], [1, 2])
    torch.testing.assert_close(out[1, :7], want1[0].transpose(0, 1), atol=1e-12, rtol=0)
    assert (out[1, 7:] == 0).all()


def test_default_levels_and_bad_config():
    assert lhf.default_levels(100) == ([2048], [1])
    assert lhf.default_levels(5000) == ([2048, 4096, 8192], [1, 2, 4])
    module = torch.nn.Module()
    module.config = LlamaConfig(longnet_segment_lengths=[8, 16], longnet_dilation_rates=[1])
    with pytest.raises(ValueError, match="one rate per segment length"):
        lhf.levels_for(module, 10)


def test_padding_mask_builder():
    assert lhf.padding_mask(1, 4, 4, attention_mask=torch.ones(1, 4, dtype=torch.long)) is None
    mask = lhf.padding_mask(1, 1, 5, attention_mask=torch.tensor([[0, 1, 1, 1]]))
    assert mask.tolist() == [[False, True, True, True, False]]


@pytest.mark.real_model
def test_real_model_generation_identical_to_sdpa(model_dir, tokenizer):
    lhf.register()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Name three colours."}],
                                           tokenize=False, add_generation_prompt=True)
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    outputs = {}
    for implementation in ("sdpa", "longnet_dilated"):
        model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation=implementation,
                                                     local_files_only=True).eval()
        model.config.longnet_segment_lengths, model.config.longnet_dilation_rates = [8192], [1]
        with torch.no_grad():
            outputs[implementation] = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert torch.equal(outputs["longnet_dilated"], outputs["sdpa"])


def test_local_window_from_config_matches_longnet_lm(tiny_llama):
    """config.longnet_local_window: level 0 is the sliding window, as in LongNetLM."""
    ids = torch.randint(3, 128, (1, 40), generator=torch.Generator().manual_seed(3))
    tiny_llama.set_attn_implementation("longnet_dilated")
    config = tiny_llama.config
    config.longnet_segment_lengths, config.longnet_dilation_rates = [6, 16], [1, 4]
    try:
        with torch.no_grad():
            absolute = tiny_llama(ids).logits
            config.longnet_local_window = 6
            window = tiny_llama(ids).logits
    finally:
        for name in ("longnet_local_window", "longnet_segment_lengths", "longnet_dilation_rates"):
            if hasattr(config, name):
                delattr(config, name)
    from longnet.model import LongNetConfig, LongNetLM

    lm = LongNetLM(LongNetConfig.from_hf(config.to_dict(), segment_lengths=(6, 16),
                                         dilation_rates=(1, 4), local_window=6,
                                         position_mode="absolute")).eval()
    state = {k.removeprefix("model."): v for k, v in tiny_llama.state_dict().items()}
    lm.load_state_dict(state, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(lm(ids), window, atol=1e-4, rtol=1e-4)
    assert (window - absolute).abs().max() > 1e-3  # the window really replaced level 0
