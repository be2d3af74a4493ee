"""LongNetLM: structure, weight loading, and equality with transformers' dense models
when one level covers the sequence."""

from __future__ import annotations

import json

import pytest
import torch

from longnet.model import (
    LongNetConfig,
    LongNetLM,
    autocast,
    choose_device,
    choose_dtype,
    level_schedule,
)


pytestmark = pytest.mark.usefixtures("single_torch_thread")



def small_hf_model(tmp_path, family="llama", **extra):
    """A small random transformers model of ``family`` saved as safetensors."""
    import transformers

    common = dict(vocab_size=96, hidden_size=48, intermediate_size=80, num_hidden_layers=2,
                  num_attention_heads=6, num_key_value_heads=2, max_position_embeddings=512,
                  rms_norm_eps=1e-6, tie_word_embeddings=False, **extra)
    if family == "llama":
        config = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(config)
    elif family == "qwen2":
        config = transformers.Qwen2Config(**common)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.MistralConfig(**common)
        model = transformers.MistralForCausalLM(config)
    torch.manual_seed(0)
    with torch.no_grad():  # biases start at zero: make them count
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(std=0.1)
    folder = tmp_path / family
    model.save_pretrained(folder, safe_serialization=True)
    return model.eval(), folder


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
@pytest.mark.parametrize("mode", ["absolute", "dilated"])
def test_one_level_matches_transformers(tmp_path, family, mode):
    hf, folder = small_hf_model(tmp_path, family)
    T = 40
    model = LongNetLM.from_pretrained(folder, segment_lengths=(64,), dilation_rates=(1,),
                                      position_mode=mode)
    if family == "qwen2":
        assert model.config.attention_bias and model.layers[0].self_attn.q_proj.bias is not None
    ids = torch.randint(0, 96, (2, T), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        got = model(ids)
    assert got.shape == (2, T, 96)
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-5)


def test_tied_embeddings_and_config_translation(tmp_path):
    _, folder = small_hf_model(tmp_path, "llama")
    config = json.loads((folder / "config.json").read_text())
    config["tie_word_embeddings"] = True
    translated = LongNetConfig.from_hf(config)
    assert translated.num_kv_heads == 2 and translated.head_dim == 8
    assert translated.max_position_embeddings == 512
    model = LongNetLM(translated)
    assert model.lm_head.weight is model.embed_tokens.weight


def test_levels_change_what_rows_see():
    """Several levels must give other logits than one dense level (the levels are used)."""
    torch.manual_seed(0)
    dense = LongNetConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                          num_kv_heads=2, intermediate_size=64, segment_lengths=(64,),
                          dilation_rates=(1,))
    model = LongNetLM(dense).eval()
    dilated = LongNetLM(LongNetConfig(**{**dense.to_dict(), "segment_lengths": (8, 16, 32),
                                         "dilation_rates": (1, 2, 4)})).eval()
    dilated.load_state_dict(model.state_dict())
    ids = torch.randint(0, 64, (1, 48))
    with torch.no_grad():
        a, b = model(ids), dilated(ids)
    # The first segment of the smallest level is dense and causal in both: equal there.
    torch.testing.assert_close(a[:, :1], b[:, :1])
    assert (a[:, 20:] - b[:, 20:]).abs().max() > 1e-3


def test_level_schedule_default():
    segments, rates = level_schedule()
    assert segments[0] == 2048 and rates[0] == 1
    assert all(w // r == 2048 for w, r in zip(segments, rates))
    assert segments[-1] >= 1_000_000_000 and segments[-2] < 1_000_000_000
    assert LongNetConfig().segment_lengths == segments
    assert level_schedule(16_384) == ((2048, 4096, 8192, 16384), (1, 2, 4, 8))


@pytest.mark.parametrize("bad, message", [
    ({"num_heads": 6, "num_kv_heads": 4}, "multiple of"),
    ({"segment_lengths": (8, 16), "dilation_rates": (1,)}, "same"),
    ({"position_mode": "sideways"}, "position_mode"),
    ({"dilation_rates": (0,), "segment_lengths": (8,)}, ">= 1"),
])
def test_config_rejects_bad_values(bad, message):
    with pytest.raises(ValueError, match=message):
        LongNetConfig(**{"hidden_size": 48, "num_heads": 6, "num_kv_heads": 2, **bad})


def test_unsupported_family_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unsupported model type"):
        LongNetConfig.from_hf({"model_type": "gpt2"})


def test_device_and_dtype_choice():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device().type == expected
    assert choose_device("cpu").type == "cpu"
    assert choose_dtype("bf16") == torch.bfloat16
    assert choose_dtype(None, "cpu") == torch.float32
    with pytest.raises(ValueError, match="unknown dtype"):
        choose_dtype("float8")


def test_bfloat16_autocast_close_to_float32():
    torch.manual_seed(0)
    config = LongNetConfig(vocab_size=64, hidden_size=32, num_layers=2, num_heads=4,
                           num_kv_heads=2, intermediate_size=64, segment_lengths=(8, 16),
                           dilation_rates=(1, 2))
    model = LongNetLM(config).eval()
    ids = torch.randint(0, 64, (1, 30))
    with torch.no_grad():
        exact = model(ids)
        with autocast(torch.device("cpu"), torch.bfloat16):
            low = model(ids)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), exact, atol=5e-2, rtol=5e-2)


@pytest.mark.real_model
def test_real_model_matches_transformers(model_dir, tokenizer):
    from longnet.weights import load_hf_model

    text = "My sister Ana moved to Lisbon in March. She works at a bakery near the river."
    ids = torch.tensor([tokenizer(text)["input_ids"]])
    model = LongNetLM.from_pretrained(model_dir, segment_lengths=(2048,), dilation_rates=(1,))
    assert model.config.num_layers == 30 and model.config.num_kv_heads == 3
    hf = load_hf_model(model_dir, attn_implementation="eager")
    with torch.no_grad():
        expected = hf(ids).logits
        got = model(ids)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    # A sliding window alone, history within it: the dense model exactly.
    window = LongNetLM.from_pretrained(model_dir, segment_lengths=(8192,), dilation_rates=(1,),
                                       local_window=8192)
    with torch.no_grad():
        torch.testing.assert_close(window(ids), expected, atol=1e-4, rtol=1e-4)
    # The default load: the sliding window of the trained context (less 4 sinks) plus
    # far levels whose gates start nearly closed, so it reads as the dense model does
    # (the far levels add a little, exp(-8) of their weight: no prediction changes).
    default = LongNetLM.from_pretrained(model_dir)
    assert default.config.local_window == 8188 and default.config.attention_sinks == 4
    assert default.config.level_gates
    bias = default.layers[0].self_attn.level_bias
    assert bias.shape == (9, default.config.num_levels)
    assert torch.all(bias[:, 0] == 0) and torch.all(bias[:, 1:] == -8.0)
    with torch.no_grad():
        got = default(ids)
    torch.testing.assert_close(got, expected, atol=0.1, rtol=0)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))
    assert default.weights_hash == model.weights_hash
