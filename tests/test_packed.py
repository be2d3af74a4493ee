"""Packed decode weights: int4 only where a weight is already 4-bit, float16 copies
otherwise, used for one-row inputs inside ``packed_decoding`` and nowhere else."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longnet.memory import Memory
from longnet.model import LongNetConfig, LongNetLM
from longnet.packed import PackedLinear, int4_codes, int4_kernel_available

pytestmark = pytest.mark.usefixtures("single_torch_thread")
needs_int4 = pytest.mark.skipif(not int4_kernel_available(), reason="no int4 CPU kernel")


def four_bit(rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    """A weight as a Q4_1 GGUF dequantises: per 32 inputs, float16 scale·code + float16 min."""
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 16, (rows, cols // 32, 32), generator=g).float()
    scale = (torch.rand(rows, cols // 32, 1, generator=g) * 0.01).half().float()
    low = (torch.randn(rows, cols // 32, 1, generator=g) * 0.05).half().float()
    codes[..., 0], codes[..., 1] = 0, 15  # quantising puts the block's min and max there
    return (codes * scale + low).reshape(rows, cols)


def test_int4_codes_give_back_four_bit_weights_and_refuse_others():
    weight = four_bit(64, 96)
    codes, scale_and_zero = int4_codes(weight)
    assert codes.dtype == torch.int32 and int(codes.min()) >= 0 and int(codes.max()) <= 15
    scale = scale_and_zero[..., 0].t().repeat_interleave(32, 1)
    zero = scale_and_zero[..., 1].t().repeat_interleave(32, 1)
    torch.testing.assert_close((codes - 8) * scale + zero, weight, atol=1e-6, rtol=0)
    assert int4_codes(torch.randn(64, 96)) is None  # real-valued weights: not 4-bit
    assert int4_codes(four_bit(64, 96)[:, :80]) is None  # inputs not a multiple of 32


@pytest.mark.parametrize("kind, tolerance", [("int4", 1e-2), ("float16", 2e-3), ("float32", 0)])
def test_packed_linear_matches_the_float32_product(kind, tolerance):
    if kind == "int4" and not int4_kernel_available():
        pytest.skip("no int4 CPU kernel")
    weight, bias = four_bit(128, 64, seed=1), torch.randn(128)
    packed = PackedLinear(weight, bias, kind)
    assert packed.kind == kind
    x = torch.randn(1, 1, 64)
    exact = F.linear(x, weight, bias)
    got = packed(x)
    assert got.shape == exact.shape and got.dtype == torch.float32
    assert (got - exact).abs().max() <= tolerance * exact.abs().max()
    nbytes = {"int4": 64 * 128 // 2, "float16": 64 * 128 * 2, "float32": 64 * 128 * 4}[kind]
    assert packed.nbytes >= nbytes and (kind != "int4" or packed.nbytes < 64 * 128)


def test_int4_falls_back_to_float16_for_weights_that_are_not_four_bit():
    packed = PackedLinear(torch.randn(64, 64), None, "int4")
    assert packed.kind == "float16"


def test_float16_overflow_reads_the_float32_weight():
    weight = torch.full((16, 32), 1000.0)
    packed = PackedLinear(weight, None, "float16")
    x = torch.full((1, 32), 10.0)  # 320,000 per output: beyond float16
    torch.testing.assert_close(packed(x), F.linear(x, weight))


def four_bit_model() -> LongNetLM:
    torch.manual_seed(0)
    config = LongNetConfig(vocab_size=64, hidden_size=64, num_layers=2, num_heads=4,
                           num_kv_heads=2, head_dim=16, intermediate_size=128,
                           segment_lengths=(8, 16), dilation_rates=(1, 2))
    model = LongNetLM(config).eval()
    with torch.no_grad():
        for index, module in enumerate(model.modules()):
            if isinstance(module, torch.nn.Linear) and module is not model.lm_head:
                module.weight.copy_(four_bit(*module.weight.shape, seed=index))
    return model


@needs_int4
def test_packed_decoding_only_for_one_row_and_only_inside():
    model = four_bit_model()
    ids = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(ids)
        one = model(ids[:, :1])
        with model.packed_decoding("int4"):
            kinds = {m.packed.kind for m in model.modules() if getattr(m, "packed", None)}
            assert kinds == {"int4", "float16"}  # the lm head is tied to real-valued embeddings
            torch.testing.assert_close(model(ids), full, atol=0, rtol=0)  # prefill: float32
            packed_one = model(ids[:, :1])
    assert all(getattr(m, "packed", None) is None for m in model.modules())
    assert (packed_one - one).abs().max() > 0  # the packed copies were read ...
    torch.testing.assert_close(packed_one, one, atol=2e-2, rtol=2e-2)  # ... and agree


@needs_int4
def test_packed_copies_follow_weight_changes():
    model = four_bit_model()
    with model.packed_decoding("int4"):
        first = model.layers[0].mlp.up_proj.packed
    with model.packed_decoding("int4"):
        assert model.layers[0].mlp.up_proj.packed is first  # kept between turns
    with torch.no_grad():
        model.layers[0].mlp.up_proj.weight.mul_(2.0)
    with model.packed_decoding("int4"):
        assert model.layers[0].mlp.up_proj.packed is not first
    with pytest.raises(ValueError, match="decode weights"), model.packed_decoding("int8"):
        pass


@needs_int4
def test_generation_with_packed_weights_matches_float32_on_a_clear_choice():
    """The prompt reads float32 weights, each new token the packed ones: with a model whose
    next token is clear, greedy answers are the same."""
    model = four_bit_model()
    prompt = torch.randint(0, 64, (20,), generator=torch.Generator().manual_seed(3))
    memory: Memory = model.memory()
    memory.append(prompt[:10])
    exact = memory.generate(prompt[10:], max_new_tokens=8, decode_weights="float32")
    packed = memory.generate(prompt[10:], max_new_tokens=8, decode_weights="int4")
    half = memory.generate(prompt[10:], max_new_tokens=8, decode_weights="float16")
    assert len(exact) == 8 and exact[0] == packed[0] == half[0]  # the first token: prefill
    assert sum(a == b for a, b in zip(exact, half)) >= 6


@needs_int4
def test_copies_of_a_converted_folder_are_kept_and_read_back(tmp_path):
    """A model folder memex converted keeps the decode copies of its weights as loaded
    (in a subfolder: the folder's *.safetensors stay the weights alone); copies read back
    give the same products; another hash or changed weights are packed anew."""
    from safetensors.torch import save_file

    from longnet.packed import weights_key
    from longnet.weights import CONVERSION_MARKER

    model = four_bit_model()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    folder = tmp_path / "converted"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    (folder / CONVERSION_MARKER).write_text("{}")
    model.model_dir, model._weights_hash = folder, "abc"
    model._loaded_key = weights_key([m.weight for m in linears])  # as from_pretrained sets it

    (folder / "decode-cache").mkdir(mode=0o700)
    (folder / "decode-cache" / "int4-torch0.0.1.safetensors").write_bytes(b"an older torch's")
    fresh = model.pack_for_decoding("int4")
    assert [p.name for p in (folder / "decode-cache").iterdir()] == \
        [f"int4-torch{torch.__version__.replace('+', '-')}.safetensors"]  # the old one gone
    assert [p.name for p in folder.glob("*.safetensors")] == ["model.safetensors"]
    del model.__dict__["_packed"]
    read_back = model.pack_for_decoding("int4")
    assert read_back is not fresh and [c.kind for c in read_back] == [c.kind for c in fresh]
    for a, b in zip(fresh, read_back):
        rows = torch.randn(1, a.weight.shape[1], generator=torch.Generator().manual_seed(5))
        torch.testing.assert_close(a(rows), b(rows), atol=0, rtol=0)
    from longnet.packed import cache_file, load_copies

    kept = cache_file(folder, "int4")
    assert load_copies(kept, "another model", linears) is None  # copies of other weights
    assert load_copies(kept, "abc", linears[:-1]) is None  # another shape of model
    kept.write_bytes(b"damaged")
    assert load_copies(kept, "abc", linears) is None

    # Weights changed since loading (a merged adapter): packed from them, the file unread.
    del model.__dict__["_packed"]
    up = model.layers[0].mlp.up_proj
    with torch.no_grad():
        up.weight.mul_(2.0)
    changed = model.pack_for_decoding("int4")[linears.index(up)]
    rows = torch.randn(1, 64)
    torch.testing.assert_close(changed(rows), F.linear(rows, up.weight), atol=2e-2, rtol=2e-2)
