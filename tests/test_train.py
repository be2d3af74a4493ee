"""longnet.training on tiny random models: the loop learns, LoRA trains only what it should,
the gates get gradients, recall windows are built as stated, and a run killed (SIGKILL)
or stopped (Ctrl-C) resumes to exactly the weights of an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from longnet.model import LongNetConfig, LongNetLM
from longnet.training import (
    CHECKPOINT_FILE,
    RecallItem,
    TrainConfig,
    TrainingError,
    TrainingInterrupted,
    WindowPlan,
    gate_parameters,
    load_adapter,
    read_checkpoint,
    recall_window,
    save_adapter,
    train,
    trainable_state,
    window_loss,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")

REPO = Path(__file__).resolve().parent.parent
TINY = {"vocab_size": 64, "hidden_size": 32, "num_layers": 2, "num_heads": 4,
        "num_kv_heads": 2, "intermediate_size": 64, "segment_lengths": (16, 32, 64),
        "dilation_rates": (1, 2, 4), "level_gates": True}


def tiny_model(seed: int = 0) -> LongNetLM:
    torch.manual_seed(seed)
    return LongNetLM(LongNetConfig(**TINY))


def pattern_stream(n: int = 2400) -> np.ndarray:
    return np.tile(np.arange(1, 13, dtype=np.uint32), n // 12)


def passkeys(rng: np.random.Generator) -> RecallItem:
    key = int(rng.integers(20, 60))
    return RecallItem(np.array([5, key, 6]), np.array([7, 8]), np.array([key, 9]), "passkey")


def test_loss_falls_on_a_repeated_pattern(tmp_path):
    model = tiny_model()
    result = train(model, pattern_stream(), TrainConfig(steps=25, seq_len=64, lr=1e-2, full=True,
                                                        checkpoint_every=100), tmp_path)
    assert result.steps == 25 and len(result.losses) == 25
    assert np.mean(result.losses[-5:]) < 0.6 * result.losses[0]
    assert result.ppl_after < 0.5 * result.ppl_before
    assert result.validation_tokens == 64 and result.train_tokens == 2400 - 64


def test_lora_trains_only_adapters_and_gates(tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, pattern_stream(600), TrainConfig(steps=3, seq_len=48, lr=1e-2), tmp_path)
    trained = trainable_state(model)
    assert set(trained) == ({n for n in trained if ".lora_A." in n or ".lora_B." in n}
                            | set(gate_parameters(model)))
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trained if ".lora_" in n}
    assert adapted == {"q_proj", "k_proj", "v_proj", "o_proj"}
    after = model.state_dict()
    for name, tensor in before.items():
        if name.endswith("level_bias"):
            assert not torch.equal(after[name], tensor), name  # the gates moved
        else:  # every base weight (wrapped by peft or not) is as it was
            base = name.replace("_proj.weight", "_proj.base_layer.weight")
            key = base if base in after else name
            assert torch.equal(after[key], tensor), name
    assert any(not torch.all(t == 0) for n, t in trained.items() if ".lora_B." in n)


def test_every_gate_gets_a_gradient():
    model = tiny_model()
    ids = torch.as_tensor(pattern_stream(200)[:129].astype(np.int64))
    loss = window_loss(model, ids[:-1], ids[1:], torch.ones(128, dtype=torch.bool), chunk=32)
    loss.backward()
    for name, gate in gate_parameters(model).items():
        assert gate.grad is not None and torch.all(gate.grad != 0), name


def test_full_trains_every_weight(tmp_path):
    model = tiny_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train(model, pattern_stream(600), TrainConfig(steps=2, seq_len=48, full=True, lr=1e-3),
          tmp_path)
    after = model.state_dict()
    assert set(after) == set(before)  # no adapters: the plain architecture
    assert all(not torch.equal(after[k], before[k]) for k in before if "norm" not in k)


def test_recall_window_puts_the_fact_far_back_and_scores_only_the_answer():
    item = RecallItem(np.array([50, 51, 52]), np.array([60, 61]), np.array([62, 63]))
    filler = np.arange(1, 200)
    window = recall_window(item, filler, 40, np.random.default_rng(3))
    full = np.concatenate([window.input_ids, window.targets[-1:]])
    assert len(window.input_ids) == len(window.targets) == len(window.mask) == 40
    start = int(np.flatnonzero(full == 50)[0])
    assert start <= 20 and list(full[start:start + 3]) == [50, 51, 52]  # first half
    assert list(full[-4:]) == [60, 61, 62, 63]
    assert list(window.targets[window.mask]) == [62, 63]


def test_window_plan_mixes_recall_at_the_stated_ratio_and_never_reads_validation():
    tokens = pattern_stream(12_000)
    plan = WindowPlan(tokens, 10_000, 64, seed=1, recall=passkeys, recall_ratio=0.25)
    kinds = [plan.window(m).kind for m in range(400)]
    assert 0.18 < kinds.count("passkey") / 400 < 0.32
    starts = [plan.text_start(m) for m in range(500)]
    assert max(starts) + 65 <= 10_000 and len(set(starts[:plan.windows])) == plan.windows
    again = WindowPlan(tokens, 10_000, 64, seed=1, recall=passkeys, recall_ratio=0.25)
    assert all(np.array_equal(plan.window(m).input_ids, again.window(m).input_ids)
               for m in (0, 7, 133))


def test_a_checkpoint_of_another_run_is_refused(tmp_path):
    settings = {"steps": 2, "seq_len": 48, "checkpoint_every": 1}
    with pytest.raises(TrainingInterrupted):
        train(tiny_model(), pattern_stream(600), TrainConfig(**settings), tmp_path,
              progress=lambda p: _stop_at(p, 1))
    with pytest.raises(TrainingError, match="another run"):
        train(tiny_model(), pattern_stream(600), TrainConfig(**settings, lr=1e-3), tmp_path)
    with pytest.raises(TrainingError, match="too little"):
        train(tiny_model(), pattern_stream(12), TrainConfig(**settings), tmp_path / "x")


def _stop_at(progress, step):
    if progress.phase == "train" and progress.step == step:
        raise KeyboardInterrupt


RESUME_SETTINGS = {"steps": 6, "seq_len": 48, "accumulate": 2, "checkpoint_every": 2,
                   "lr": 5e-3, "lora_dropout": 0.1, "recall_ratio": 0.5}


def _final_weights(out_dir, resume=True, progress=None, **settings):
    model = tiny_model()
    train(model, pattern_stream(900), TrainConfig(**{**RESUME_SETTINGS, **settings}), out_dir,
          recall=passkeys, resume=resume, progress=progress)
    return trainable_state(model)


def test_ctrl_c_then_resume_gives_the_uninterrupted_weights(tmp_path):
    reference = _final_weights(tmp_path / "straight")
    with pytest.raises(TrainingInterrupted) as stopped:
        _final_weights(tmp_path / "stopped", progress=lambda p: _stop_at(p, 3))
    assert stopped.value.step == 3
    assert read_checkpoint(tmp_path / "stopped")["state"]["step"] == 3
    resumed = _final_weights(tmp_path / "stopped")
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


KILLED_RUN = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    import test_train as t
    def kill_at_step_3(p):
        if p.phase == "train" and p.step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    t._final_weights({out!r}, progress=kill_at_step_3, full=True)  # full: no peft import
""")


def test_sigkill_then_resume_gives_the_uninterrupted_weights(tmp_path):
    out = tmp_path / "killed"
    script = KILLED_RUN.format(tests=str(REPO / "tests"), out=str(out))
    run = subprocess.run([sys.executable, "-c", script], check=False, cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == -9, run.stderr[-2000:]
    assert read_checkpoint(out)["state"]["step"] == 2  # the checkpoint before the kill
    assert not list(out.glob(".*.tmp")) or read_checkpoint(out) is not None
    resumed = _final_weights(out, full=True)
    reference = _final_weights(tmp_path / "straight", full=True)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


@pytest.mark.parametrize("merge", [True, False])
def test_saved_adapter_on_a_fresh_model_gives_the_trained_logits(tmp_path, merge):
    model = tiny_model()
    result = train(model, pattern_stream(600), TrainConfig(steps=3, seq_len=48, lr=1e-2),
                   tmp_path / "run")
    save_adapter(model, tmp_path / "adapter", result.config, {"note": "test"})
    meta = json.loads((tmp_path / "adapter" / "adapter.json").read_text())
    assert meta["kind"] == "lora" and meta["lora"]["rank"] == 16 and meta["note"] == "test"
    fresh = tiny_model()
    load_adapter(fresh, tmp_path / "adapter", merge=merge)
    ids = torch.as_tensor(pattern_stream(120)[:100].astype(np.int64))[None]
    with torch.no_grad():
        expected, got = model(ids), fresh(ids)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    if merge:  # the plain architecture again
        assert set(fresh.state_dict()) == set(tiny_model().state_dict())
    (tmp_path / "adapter" / "adapter.safetensors").write_bytes(b"damaged")
    with pytest.raises(TrainingError, match="does not match"):
        load_adapter(tiny_model(), tmp_path / "adapter")


def test_checkpoint_is_written_atomically(tmp_path):
    train(tiny_model(), pattern_stream(600), TrainConfig(steps=2, seq_len=48), tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).is_file()
    assert not list(tmp_path.glob(".*.tmp"))
    assert read_checkpoint(tmp_path)["state"]["done"] is True


HEAP_PROBE = """
import os, sys, torch
from longnet.training import keep_heap_small
if not keep_heap_small():
    print("not glibc"); sys.exit(0)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
big = torch.ones(6 << 20); del big  # a freed 24 MB block: glibc's own limit would rise to it
block = torch.ones(4 << 20)         # 16 MB, written, so resident
before = rss(); del block; after = rss()
print((before - after) >> 20)
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux's /proc")
def test_training_gives_freed_activations_back_to_the_system():
    # Without keep_heap_small glibc serves the 16 MB block from its heap and keeps it
    # after the free (0 MB given back, measured); with it the block goes back at once.
    run = subprocess.run([sys.executable, "-c", HEAP_PROBE], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    if run.stdout.strip() == "not glibc":
        pytest.skip("the C library is not glibc: keep_heap_small changes nothing there")
    assert int(run.stdout) >= 12
