"""The memory's row store and the recall fork (issue 18: the memory reads what retrieval
finds), on tiny random models and real files: every token's rows as the writer made them,
kept in step with the saved memory, and read back into a turn's window."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longnet.memory import ROWS_FILE, Memory, RowStore
from longnet.model import LongNetConfig, LongNetLM

pytestmark = pytest.mark.usefixtures("single_torch_thread")

TINY = {"vocab_size": 64, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
        "num_kv_heads": 2, "intermediate_size": 64, "local_window": 64, "attention_sinks": 2,
        "segment_lengths": (64, 256), "dilation_rates": (1, 4), "level_gates": True,
        "far_gate_init": -8.0}


def tiny_model(**changes) -> LongNetLM:
    torch.manual_seed(0)
    return LongNetLM(LongNetConfig(**{**TINY, **changes}))


def tokens(n: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 64, size=n)


@pytest.mark.parametrize("positions", ["dilated", "absolute"])
def test_recalling_the_whole_history_reads_as_the_window_does(tmp_path, positions):
    """While the history fits the window, a recall fork of all of it holds what the window
    holds (rows kept in float16: equal to rounding), in one span or cut in two."""
    model = tiny_model(position_mode=positions)
    memory = model.memory(dtype=torch.float32)
    memory.keep_rows(tmp_path)
    history = tokens(40)
    memory.append(history[:17], return_logits=False)  # two appends: rows in order
    memory.append(history[17:], return_logits=False)
    assert memory.rows.end == memory.tokens == 40
    question = torch.tensor([3, 4, 5])
    with torch.inference_mode():
        plain = memory.fork()._step(question)
        whole = memory.recall_fork([(0, 40)], reserve_tokens=3)._step(question)
        halves = memory.recall_fork([(0, 20), (20, 40)], reserve_tokens=3)._step(question)
        other = memory.recall_fork([(20, 40)], reserve_tokens=3)._step(question)
    torch.testing.assert_close(whole, plain, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(halves, plain, atol=1e-3, rtol=1e-3)
    assert (other - plain).abs().max() > 1e-2  # half the history is not all of it


def test_a_far_span_is_read_from_its_stored_rows(tmp_path):
    """Far past the window, a recall fork reads exactly the rows the writer made for the
    span (compared with a memory that kept them in its own window), and the memory itself
    is unchanged by the turn."""
    model = tiny_model()
    memory = model.memory(dtype=torch.float32)
    memory.keep_rows(tmp_path)
    history = tokens(300)
    memory.append(history, return_logits=False)
    # The rows of tokens 100..110 as the window held them right after reading them.
    early = model.memory(dtype=torch.float32)
    early.append(history[:110], return_logits=False)
    stored = memory.rows.read(100, 110)
    for layer in range(model.config.num_layers):
        window = early.local[layer]
        at = 100 - window.first
        values = window.kv[1, :, at:at + 10]
        torch.testing.assert_close(stored[layer, 1].float(), values, atol=2e-3, rtol=2e-3)
    before = {k: v.clone() for k, v in memory.state_dict().items()}
    fork = memory.recall_fork([(100, 110), (150, 160)], reserve_tokens=4)
    assert fork.recalled == [(100, 110), (150, 160)]
    with torch.inference_mode():
        fork._step(torch.tensor([1, 2, 3, 4]))
    for name, tensor in memory.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_rows_follow_the_saved_memory(tmp_path):
    """Saved and loaded, the rows match the tokens the state holds: rows written after the
    last save are dropped on load and written again, the same; a torn row is dropped."""
    model = tiny_model()
    memory = model.memory(dtype=torch.float32)
    memory.keep_rows(tmp_path)
    history = tokens(60)
    memory.append(history[:30], return_logits=False)
    memory.save(tmp_path, stored_dtype=torch.float32)
    memory.append(history[30:], return_logits=False)  # not saved: a crash here
    complete = memory.rows.read(0, 60).clone()
    with open(tmp_path / ROWS_FILE, "ab") as handle:
        handle.write(b"\x01\x02\x03")  # half a row, as a torn write leaves it
    loaded = Memory.load(tmp_path, model)
    assert loaded.tokens == 30 and loaded.rows.end == 30
    loaded.append(history[30:], return_logits=False)
    assert torch.equal(loaded.rows.read(0, 60), complete)
    loaded.save(tmp_path)
    again = Memory.load(tmp_path, model)
    assert again.rows.end == 60
    # A memory whose rows file is gone (forget deleted it) loads without rows.
    (tmp_path / ROWS_FILE).unlink()
    assert Memory.load(tmp_path, model).rows is None


def test_rows_kept_from_the_middle_cover_only_what_comes_after(tmp_path):
    model = tiny_model()
    memory = model.memory(dtype=torch.float32)
    memory.append(tokens(30), return_logits=False)
    memory.keep_rows(tmp_path)
    memory.append(tokens(20, seed=2), return_logits=False)
    assert (memory.rows.start, memory.rows.end) == (30, 50)
    assert not memory.rows.covers(10, 20) and memory.rows.covers(35, 50)
    fork = memory.recall_fork([(10, 20), (35, 45)], reserve_tokens=2)
    assert fork.recalled == [(35, 45)]  # what has no rows is left out
    with pytest.raises(ValueError, match="no rows"):
        memory.rows.read(10, 20)


def test_recall_keeps_the_spans_nearest_the_turn_when_they_do_not_fit(tmp_path):
    model = tiny_model(local_window=16, segment_lengths=(16, 256))
    memory = model.memory(dtype=torch.float32)
    memory.keep_rows(tmp_path)
    memory.append(tokens(100), return_logits=False)
    fork = memory.recall_fork([(0, 10), (20, 30), (40, 46)], reserve_tokens=4)
    # 16-token window: 15 rows a token can see, 4 for the turn, 2 for the sinks.
    assert fork.recalled == [(27, 30), (40, 46)]
    with torch.inference_mode():
        logits = fork._step(torch.tensor([5, 6, 7, 8]))
    assert torch.isfinite(logits).all()


def test_zeroed_rows_read_back_as_zeros(tmp_path):
    store = RowStore(tmp_path / ROWS_FILE, layers=2, kv_heads=1, head_dim=4)
    rows = torch.randn(6, 2, 2, 1, 4)
    store.append(rows)
    assert store.zero(2, 4) == 2
    read = store.read(0, 6)  # [layers, 2, heads, n, dim]
    assert torch.equal(read[:, :, :, 2:4], torch.zeros_like(read[:, :, :, 2:4]))
    torch.testing.assert_close(read[:, :, :, :2], rows[:2].permute(1, 2, 3, 0, 4).half())
    with pytest.raises(ValueError, match="expected"):
        store.append(torch.zeros(1, 3, 2, 1, 4))
