"""Memory: chunked appends equal one full forward pass, the state is bounded, and it
saves and loads atomically, refusing a state made by another model or config."""

from __future__ import annotations

import json
import math
import os
import random

import pytest
import torch

from longnet.memory import Memory, MemoryMismatchError, token_stream_hash
from longnet.model import LongNetConfig, LongNetLM

LEVELS = {
    "geometric": ((4, 8, 16, 32), (1, 2, 4, 8)),
    "ragged": ((5, 12, 30), (1, 3, 7)),  # r need not divide w
}

pytestmark = pytest.mark.usefixtures("single_torch_thread")



def small_model(mode="dilated", levels="geometric", seed=0, **extra) -> LongNetLM:
    torch.manual_seed(seed)
    segments, rates = LEVELS[levels]
    config = LongNetConfig(vocab_size=64, hidden_size=48, num_layers=2, num_heads=6,
                           num_kv_heads=2, head_dim=8, intermediate_size=64,
                           segment_lengths=segments, dilation_rates=rates,
                           position_mode=mode, **extra)
    return LongNetLM(config).eval()


def random_chunks(total: int, rng: random.Random, largest: int = 24) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(min(rng.randint(1, largest), total - sum(sizes)))
    return sizes


def append_in_chunks(memory: Memory, ids: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    outs, begin = [], 0
    for size in sizes:
        outs.append(memory.append(ids[begin:begin + size]))
        begin += size
    return torch.cat(outs)


def assert_same_state(a: Memory, b: Memory):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and sa
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], atol=1e-6, rtol=1e-5, msg=key)


@pytest.mark.parametrize("mode", ["absolute", "dilated"])
@pytest.mark.parametrize("levels", sorted(LEVELS))
def test_any_chunking_gives_the_full_forward(mode, levels):
    model = small_model(mode, levels)
    rng = random.Random(f"{mode}-{levels}")
    ids = torch.randint(0, 64, (90,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids[None])[0]
    reference = None
    for trial in range(4):
        memory = model.memory()
        memory.chunk_size = rng.choice([5, 16, 4096])  # internal splitting too
        memory.few_queries = (0, 4096, 10, 10)[trial]  # both attention paths, and mixed
        sizes = [90] if trial == 0 else random_chunks(90, rng)
        logits = append_in_chunks(memory, ids, sizes)
        torch.testing.assert_close(logits, full, atol=2e-5, rtol=1e-5)
        assert memory.tokens == 90
        if reference is None:
            reference = memory
        else:
            assert_same_state(memory, reference)


def test_state_holds_only_the_current_segments_selected_rows():
    model = small_model("absolute")
    c = model.config
    group = c.num_heads // c.num_kv_heads
    memory = model.memory()
    memory.append(torch.randint(0, 64, (77,)))
    for level, (w, r) in enumerate(zip(c.segment_lengths, c.dilation_rates)):
        state = memory.states[0][level]
        start = (77 // w) * w
        if start == 77:
            assert state is None
            continue
        assert state.start == start
        bound_rows = min(group, r) * math.ceil(w / r)
        rows = memory.state_dict()[f"layers.0.levels.{level}.k"]
        assert rows.shape[:2] == (c.num_kv_heads, min(group, r))  # [Hkv, slots, blocks, D]
        assert rows.shape[1] * rows.shape[2] <= bound_rows
        assert rows.shape[2] == math.ceil((77 - start) / r)


def test_state_grows_with_levels_not_with_history():
    """Bounded by Σ_levels min(G, r)·ceil(w/r) rows per kv head, whatever the length."""
    model = small_model("dilated")
    c = model.config
    group = c.num_heads // c.num_kv_heads
    bound = sum(min(group, r) * math.ceil(w / r)
                for w, r in zip(c.segment_lengths, c.dilation_rates))
    bytes_per_row = 2 * c.num_layers * c.num_kv_heads * c.head_dim * 4
    memory = model.memory()
    sizes = []
    for _ in range(12):
        memory.append(torch.randint(0, 64, (37,)), return_logits=False)
        sizes.append(memory.nbytes)
        assert memory.nbytes <= bound * bytes_per_row
    assert memory.tokens == 12 * 37 and max(sizes) > 0


def test_save_load_resume_equals_uninterrupted(tmp_path):
    model = small_model("dilated", "ragged")
    ids = torch.randint(0, 64, (100,), generator=torch.Generator().manual_seed(5))
    straight = model.memory()
    expected = straight.append(ids)

    memory = model.memory()
    first = memory.append(ids[:47], stream_offset=470)
    memory.save(tmp_path / "memory", stored_dtype=torch.float32)
    memory.append(ids[47:60])  # read but never saved: lost in the "crash"
    del memory
    loaded = Memory.load(tmp_path / "memory", model)
    assert loaded.tokens == 47 and loaded.stream_offset == 470
    assert loaded.stream_hash == token_stream_hash(ids[:47].tolist())
    rest = loaded.append(ids[47:])
    torch.testing.assert_close(torch.cat([first, rest]), expected, atol=2e-5, rtol=1e-5)
    assert_same_state(loaded, straight)
    assert loaded.stream_hash == straight.stream_hash == token_stream_hash(ids.tolist())


def test_metadata_contract(tmp_path):
    model = small_model()
    memory = model.memory()
    memory.append(torch.randint(0, 64, (30,)))
    memory.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "memory.json").read_text())
    for key in ("tokens", "model_id", "weights_hash", "config", "stream_offset",
                "stream_hash", "format_version"):
        assert key in meta
    assert meta["tokens"] == 30 and meta["weights_hash"] == model.weights_hash
    assert meta["config"]["segment_lengths"] == list(model.config.segment_lengths)
    states = list((tmp_path / "m").glob("state-*.safetensors"))
    assert [p.name for p in states] == [meta["state_file"]]


def test_crash_during_save_keeps_the_previous_save(tmp_path, monkeypatch):
    model = small_model()
    memory = model.memory()
    ids = torch.randint(0, 64, (60,))
    memory.append(ids[:20])
    memory.save(tmp_path / "m")
    memory.append(ids[20:])

    real_replace = os.replace

    def crash_on_metadata(src, dst):
        if str(dst).endswith("memory.json"):
            raise OSError("simulated power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_metadata)
    with pytest.raises(OSError, match="power cut"):
        memory.save(tmp_path / "m")
    monkeypatch.setattr(os, "replace", real_replace)
    loaded = Memory.load(tmp_path / "m", model)
    assert loaded.tokens == 20
    loaded.append(ids[20:])
    assert_same_state(loaded, memory)
    memory.save(tmp_path / "m")  # a later save cleans the leftovers
    assert len(list((tmp_path / "m").glob("state-*"))) == 1
    assert not list((tmp_path / "m").glob(".*.tmp"))


def test_loading_into_another_model_or_config_is_refused(tmp_path):
    model = small_model()
    memory = model.memory()
    memory.append(torch.randint(0, 64, (25,)))
    memory.save(tmp_path / "m")
    with pytest.raises(MemoryMismatchError, match="not by the loaded model"):
        Memory.load(tmp_path / "m", small_model(seed=1))
    other_levels = small_model(levels="ragged")
    other_levels.load_state_dict(model.state_dict())
    other_levels._weights_hash = None
    with pytest.raises(MemoryMismatchError, match="segment_lengths"):
        Memory.load(tmp_path / "m", other_levels)
    with pytest.raises(FileNotFoundError, match="no saved memory"):
        Memory.load(tmp_path / "nothing", model)
    (tmp_path / "m" / "memory.json").write_text("{broken")
    with pytest.raises(MemoryMismatchError, match="damaged"):
        Memory.load(tmp_path / "m", model)


def test_bad_token_ids_are_refused():
    memory = small_model().memory()
    with pytest.raises(ValueError, match="token ids"):
        memory.append([1, 2, 64])
    assert memory.tokens == 0


def test_bfloat16_state():
    model = small_model("absolute")
    memory = Memory(model, dtype="bfloat16")
    ids = torch.randint(0, 64, (50,))
    logits = memory.append(ids)
    assert all(s.kv.dtype == torch.bfloat16 for layer in memory.states for s in layer if s)
    with torch.no_grad():
        full = model(ids[None])[0]
    assert (logits - full).abs().max() < 0.1


def test_level_gates_reach_the_memory():
    """A bias per (layer, head, level) on each level's lse: the memory applies it exactly
    as the full forward does, on both attention paths."""
    gated = small_model("dilated", level_gates=True)
    with torch.no_grad():
        for block in gated.layers:
            block.self_attn.level_bias.normal_(std=2.0)
    ids = torch.randint(0, 64, (70,), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        full = gated(ids[None])[0]
        plain = small_model("dilated")(ids[None])[0]
    assert (full - plain).abs().max() > 1e-3  # the gates change what rows read
    for few in (0, 4096):
        memory = gated.memory()
        memory.few_queries = few
        logits = append_in_chunks(memory, ids, [30, 1, 1, 38])
        torch.testing.assert_close(logits, full, atol=2e-5, rtol=1e-5)


# --------------------------------------------------------------------------- sliding window


@pytest.mark.parametrize("mode", ["absolute", "dilated"])
@pytest.mark.parametrize("window,levels,gate,sinks", [(7, "geometric", -1.0, 0),
                                                      (5, "ragged", 0.0, 4),
                                                      (12, "geometric", 0.5, 1)])
def test_sliding_window_memory_gives_the_full_forward(mode, window, levels, gate, sinks):
    """Level 0 as a sliding window (with attention sinks): any chunking, both attention
    paths, the same logits and the same state as one forward pass."""
    model = small_model(mode, levels, local_window=window, level_gates=True, far_gate_init=gate,
                        attention_sinks=sinks)
    rng = random.Random(f"{mode}-{window}")
    ids = torch.randint(0, 64, (90,), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full = model(ids[None])[0]
    reference = None
    for trial in range(4):
        memory = model.memory()
        memory.chunk_size = rng.choice([5, 16, 4096])
        memory.few_queries = (0, 4096, 10, 10)[trial]
        sizes = [90] if trial == 0 else random_chunks(90, rng)
        torch.testing.assert_close(append_in_chunks(memory, ids, sizes), full,
                                   atol=2e-5, rtol=1e-5)
        if reference is None:
            reference = memory
        else:
            assert_same_state(memory, reference)
    # The window's state is bounded: the last window - 1 rows per layer.
    state = reference.state_dict()
    assert state["layers.0.local.k"].shape == (2, window - 1, 8)
    if sinks:  # the sinks really take part
        assert state["layers.0.sinks.k"].shape == (2, sinks, 8)
        plain = small_model(mode, levels, local_window=window, level_gates=True,
                            far_gate_init=gate)
        with torch.no_grad():
            assert (plain(ids[None])[0] - full).abs().max() > 1e-3


def test_sliding_window_state_saves_loads_and_forks(tmp_path):
    model = small_model("dilated", local_window=6, level_gates=True, far_gate_init=-2.0,
                        attention_sinks=2)
    ids = torch.randint(0, 64, (70,), generator=torch.Generator().manual_seed(4))
    memory = model.memory()
    memory.append(ids[:50])
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    memory.save(tmp_path / "m", stored_dtype=torch.float32)
    loaded = Memory.load(tmp_path / "m", model)
    # A fork reads the state but leaves it as it was.
    fork = memory.fork()
    fork_logits = fork.append(ids[50:])
    for key, value in memory.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    torch.testing.assert_close(loaded.append(ids[50:]), fork_logits, atol=2e-5, rtol=1e-5)
    with torch.no_grad():
        full = model(ids[None])[0, 50:]
    torch.testing.assert_close(fork_logits, full, atol=2e-5, rtol=1e-5)


def history_and_turn(model, seed: int):
    """A memory of 70 random tokens read by ``model`` and a 9-token turn to follow it."""
    history = torch.randint(0, 64, (70,), generator=torch.Generator().manual_seed(seed))
    turn = torch.randint(0, 64, (9,), generator=torch.Generator().manual_seed(seed + 1))
    memory = model.memory()
    memory.append(history)
    return memory, turn


def test_isolated_turn_reads_itself_like_the_plain_model():
    """fork(isolate_window=True): the turn's window starts empty and its own first tokens
    are its sinks, so with the far gates shut the turn's logits are the model's on the
    turn alone; the history still reaches it through the far levels once they open."""
    shut = small_model("dilated", local_window=6, level_gates=True, far_gate_init=-1e4,
                       attention_sinks=2)
    memory, turn = history_and_turn(shut, seed=5)
    with torch.no_grad():
        alone = shut(turn[None])[0]
    torch.testing.assert_close(memory.fork(isolate_window=True).append(turn), alone,
                               atol=1e-5, rtol=1e-5)
    assert (memory.fork().append(turn) - alone).abs().max() > 1e-3  # the window sees history
    with pytest.raises(RuntimeError, match="fork"):
        memory.fork(isolate_window=True).save("unused")
    with torch.no_grad():
        for block in shut.layers:
            block.self_attn.level_bias[:, 1:] = 0.0  # open gates: the far levels read history
    opened, _ = history_and_turn(shut, seed=5)
    with torch.no_grad():
        alone = shut(turn[None])[0]
    assert (opened.fork(isolate_window=True).append(turn) - alone).abs().max() > 1e-3


@pytest.mark.parametrize("window", [None, 6])
def test_a_reserved_fork_writes_in_place_and_changes_nothing(tmp_path, window):
    """fork(reserve_tokens=n) gives the memory's buffers room for the turn once, so the
    turn writes past the memory's rows instead of copying the state; the memory's rows,
    the turn's logits and the memory's own later appends are all unchanged by it."""
    extra = dict(local_window=window, attention_sinks=2) if window else {}
    model = small_model("dilated", level_gates=True, far_gate_init=-2.0, **extra)
    ids = torch.randint(0, 64, (90,), generator=torch.Generator().manual_seed(7))
    made = model.memory()
    made.append(ids[:66])
    made.save(tmp_path / "m", stored_dtype=torch.float32)
    memory = Memory.load(tmp_path / "m", model)  # loaded buffers hold exactly their rows
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    with torch.no_grad():
        full = model(ids[None])[0]

    dense_local = bool(window)  # (a dense level 0 would keep the whole turn: not full[])
    plain = memory.fork(dense_local=dense_local).append(ids[66:78])
    reserved = memory.fork(dense_local=dense_local, reserve_tokens=12)
    # Levels whose segment goes on past the turn keep their buffers (the others start
    # new segments, in new buffers, as they must).
    lasting = [level for level, w in enumerate(model.config.segment_lengths)
               if level and 66 // w == 77 // w and memory.states[0][level] is not None]
    assert lasting

    def pointers(mem):
        return [mem.states[layer][level].kv.data_ptr() for layer in range(2) for level in lasting]

    buffers = pointers(reserved)
    turn = reserved.append(ids[66:78])
    torch.testing.assert_close(turn, plain, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(turn, full[66:78], atol=2e-5, rtol=1e-5)
    # In place: the fork's levels still sit in the memory's (reserved) buffers.
    assert pointers(reserved) == buffers == pointers(memory)
    if window:
        assert reserved.local[0].kv.data_ptr() == memory.local[0].kv.data_ptr()
    for key, value in memory.state_dict().items():
        torch.testing.assert_close(value, before[key], msg=key)
    # The memory reads on over the fork's leftovers exactly.
    torch.testing.assert_close(memory.append(ids[66:]), full[66:], atol=2e-5, rtol=1e-5)


def test_far_levels_shut_for_a_turn_and_put_back():
    """model.far_levels_shut(): inside, an isolated turn reads as the plain model on the
    turn alone although the far gates are open (-2); after, the gates are as before."""
    model = small_model("dilated", local_window=6, level_gates=True, far_gate_init=-2.0,
                        attention_sinks=2)
    memory, turn = history_and_turn(model, seed=8)
    gates = [layer.self_attn.level_bias.detach().clone() for layer in model.layers]
    with model.far_levels_shut():
        shut = memory.fork(isolate_window=True).append(turn)
        with torch.no_grad():
            alone = model(turn[None])[0]
    torch.testing.assert_close(shut, alone, atol=1e-5, rtol=1e-5)
    for layer, before in zip(model.layers, gates):
        torch.testing.assert_close(layer.self_attn.level_bias, before)
    assert (memory.fork(isolate_window=True).append(turn) - alone).abs().max() > 1e-3


def test_shut_levels_are_skipped_exactly_and_still_stored():
    """Far levels shut in every layer and head weigh exactly 0 in eq. 10: a turn skips
    them (same logits as attending to them, and a scratch turn stores none of their rows,
    refusing to read on once they open); the memory itself still stores their rows."""
    model = small_model("dilated", local_window=6, level_gates=True, far_gate_init=-2.0,
                        attention_sinks=2)
    memory, turn = history_and_turn(model, seed=11)
    with model.far_levels_shut():
        assert memory._shut_levels() == frozenset(range(1, model.config.num_levels))
        buffers = [s.kv.data_ptr() for layer in memory.states for s in layer if s is not None]
        memory.fork(isolate_window=True, reserve_tokens=50)  # shut levels get no room
        assert buffers == [s.kv.data_ptr() for layer in memory.states for s in layer
                           if s is not None]
        fork = memory.fork(isolate_window=True)
        skipped = torch.cat([fork.append(turn[:4]), fork.append(turn[4:5]), fork.append(turn[5:])])
        assert fork._skipped_levels == set(range(1, model.config.num_levels))
        attended = memory.fork(isolate_window=True)
        attended._shut_levels = frozenset  # attend to every level, as before the skip
        reference = attended.append(turn)
    torch.testing.assert_close(skipped, reference, atol=1e-6, rtol=1e-6)
    with pytest.raises(RuntimeError, match="new fork"):
        fork.append(turn[:1])  # the gates are open again and the fork lacks those rows

    history = torch.randint(0, 64, (70,), generator=torch.Generator().manual_seed(11))
    skipping, attending = model.memory(), model.memory()
    attending._shut_levels = frozenset
    with model.far_levels_shut():
        for reader in (skipping, attending):
            reader.append(history)
    assert all(skipping.states[layer][level] is not None for layer in range(2)
               for level in range(1, model.config.num_levels))
    assert_same_state(skipping, attending)
    # One head left open keeps the level in play.
    with model.far_levels_shut():
        model.layers[0].self_attn.level_bias.data[0, 2] = 0.0
        assert 2 not in skipping._shut_levels() and 1 in skipping._shut_levels()


def test_saved_state_is_16_bit_half_the_bytes_and_reads_the_same(tmp_path):
    """A float32 memory is saved in float16: half the bytes on disk of a float32 save,
    loaded back as float32, and what it reads next differs from the unsaved memory's by
    float16 rounding only."""
    model = small_model("dilated", local_window=6, level_gates=True, far_gate_init=-2.0,
                        attention_sinks=2)
    ids = torch.randint(0, 64, (90,), generator=torch.Generator().manual_seed(11))
    memory = model.memory(dtype=torch.float32)
    memory.append(ids[:70])
    memory.save(tmp_path / "half")
    memory.save(tmp_path / "full", stored_dtype=torch.float32)
    half = json.loads((tmp_path / "half" / "memory.json").read_text())
    full = json.loads((tmp_path / "full" / "memory.json").read_text())
    assert half["stored_dtypes"] == ["float16"] and full["stored_dtypes"] == ["float32"]
    assert half["stored_bytes"] == (tmp_path / "half" / half["state_file"]).stat().st_size
    from safetensors.torch import load_file

    def data_bytes(folder, meta):
        return sum(t.numel() * t.element_size()
                   for t in load_file(str(folder / meta["state_file"])).values())

    assert data_bytes(tmp_path / "half", half) * 2 == data_bytes(tmp_path / "full", full)
    loaded = Memory.load(tmp_path / "half", model)
    assert loaded.dtype == torch.float32
    expected = memory.fork().append(ids[70:])
    got = loaded.append(ids[70:])
    assert not torch.equal(got, expected)  # rounded, not the float32 rows
    torch.testing.assert_close(got, expected, atol=1e-2, rtol=1e-2)
