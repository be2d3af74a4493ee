"""Sequence-parallel dilated attention on torch.distributed: gloo on CPU, 2, 3 and 4
processes on 127.0.0.1.

Each process group runs every check once (one spawn per world size, results written
to JSON per rank) and the tests below read them: outputs, lse and gradients equal the
single-process ``longnet.dilated_attention`` on the concatenated sequence (causal and
not, ragged and empty shards, grouped-query heads, r not dividing w, rotary, level
bias); levels whose segments stay inside a shard communicate nothing; a training step
equals a single-process step; ``memory_append`` leaves the state a single process
builds; and ``python -m assistant.cli.memory_distributed`` under the real ``torchrun``
saves the memory ``memex memory build`` saves. The same with a sliding level 0
(``local_window``) on 2 and 3 processes, shards shorter and longer than the window.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from longnet import distributed as D
from longnet.distributed.plan import _plan_level
from longnet.attention import dilated_attention as single_attention
from longnet.model import LongNetConfig, LongNetLM

REPO = Path(__file__).resolve().parent.parent
F64 = torch.float64

# Shard lengths per world size: ragged, one rank holding a single token, an empty rank.
LENGTHS = {2: [(13, 37), (1, 40)], 4: [(7, 19, 3, 21), (10, 0, 15, 7)]}
ATTENTION = {
    # name: (segment lengths, dilation rates, Hq, Hkv, batch, rotary, level bias)
    "geometric-gqa": ((4, 8, 16, 64), (1, 2, 4, 8), 6, 2, 2, False, False),
    "r-not-dividing-w-rotary-bias": ((5, 12, 30), (1, 3, 7), 6, 2, 1, True, True),
    "mqa-one-long-level": ((6, 100), (1, 5), 3, 1, 1, True, False),
    "no-gqa": ((4, 16), (2, 8), 4, 4, 1, False, False),
}
# (config, causal, index into LENGTHS) run by each world size; 4 processes share 2 cores
# in CI, so they run a subset that still covers every config, both masks and both layouts.
ATTENTION_RUNS = {
    2: [(name, causal, i) for name in ATTENTION for causal in (True, False) for i in (0, 1)],
    4: [("geometric-gqa", True, 0), ("geometric-gqa", False, 1),
        ("r-not-dividing-w-rotary-bias", True, 1), ("r-not-dividing-w-rotary-bias", False, 0),
        ("mqa-one-long-level", True, 0), ("no-gqa", False, 1)],
}
ATTENTION_CHECKS = [(world, f"{name}/{'causal' if causal else 'full'}/{i}")
                    for world, runs in ATTENTION_RUNS.items() for name, causal, i in runs]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def loopback_env() -> dict:
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if D.loopback_interface():
        env["GLOO_SOCKET_IFNAME"] = D.loopback_interface()
    return env


# --------------------------------------------------------------------------- checks (run in workers)


def rotary_for(Hq, d):
    from longnet.model import Rotary

    return Rotary(LongNetConfig(vocab_size=8, hidden_size=Hq * d, num_heads=Hq, num_kv_heads=1,
                                head_dim=d, num_layers=1, intermediate_size=8))


def compare_attention(rank, lengths, ws, rs, Hq, Hkv, B, rotary, bias, causal,
                      dtype=F64, seed=0, window=None, sinks=0) -> dict:
    """Max abs differences between this rank's sharded results and its rows of the
    single-process results (values, lse, and gradients of a random linear loss)."""
    g = torch.Generator().manual_seed(seed)
    N, d = sum(lengths), 8
    q = torch.randn(B, Hq, N, d, generator=g, dtype=dtype)
    k = torch.randn(B, Hkv, N, d, generator=g, dtype=dtype)
    v = torch.randn(B, Hkv, N, d, generator=g, dtype=dtype)
    cotangent = torch.randn(B, Hq, N, d, generator=g, dtype=dtype)
    level_bias = torch.randn(Hq, len(ws), generator=g, dtype=dtype) if bias else None
    rot = rotary_for(Hq, d) if rotary else None

    full = [x.clone().requires_grad_() for x in (q, k, v)]
    full_bias = level_bias.clone().requires_grad_() if bias else None
    out, lse = single_attention(*full, ws, rs, is_causal=causal, return_lse=True, rotary=rot,
                                level_bias=full_bias, local_window=window, attention_sinks=sinks)
    (out * cotangent).sum().backward()

    layout = D.ShardLayout(tuple(lengths), rank)
    a, b = layout.start, layout.end
    mine = [x[:, :, a:b].clone().requires_grad_() for x in (q, k, v)]
    my_bias = level_bias.clone().requires_grad_() if bias else None
    with D.record_communication() as stats:
        out_s, lse_s = D.dilated_attention(*mine, ws, rs, is_causal=causal, return_lse=True,
                                           rotary=rot, level_bias=my_bias, layout=layout,
                                           local_window=window, attention_sinks=sinks)
    (out_s * cotangent[:, :, a:b]).sum().backward()

    def diff(x, y):
        if x is None or x.numel() == 0:
            return 0.0
        both_inf = torch.isinf(x) & torch.isinf(y) & (torch.sign(x) == torch.sign(y))
        return float(torch.where(both_inf, 0.0, (x.double() - y.double()).abs()).max())

    errors = {"out": diff(out_s, out[:, :, a:b]), "lse": diff(lse_s, lse[:, :, a:b])}
    for name, x, ref in zip(("dq", "dk", "dv"), mine, full):
        grad = x.grad if x.grad is not None else torch.zeros_like(x)
        errors[name] = diff(grad, ref.grad[:, :, a:b])
    if bias:  # every rank's share of the bias gradient, summed, is the whole
        summed = my_bias.grad.clone() if my_bias.grad is not None else torch.zeros_like(my_bias)
        dist.all_reduce(summed)
        errors["dbias"] = diff(summed, full_bias.grad)
    errors["gathered_bytes"] = {str(k): v for k, v in stats["gathered_bytes"].items()}
    return errors


def small_model(mode, segments, rates, seed=0, dtype=torch.float32, gates=False, window=None,
                sinks=0):
    torch.manual_seed(seed)
    config = LongNetConfig(vocab_size=64, hidden_size=48, num_layers=2, num_heads=6,
                           num_kv_heads=2, head_dim=8, intermediate_size=64,
                           segment_lengths=segments, dilation_rates=rates, position_mode=mode,
                           level_gates=gates, local_window=window, attention_sinks=sinks)
    model = LongNetLM(config).to(dtype)
    with torch.no_grad():  # gates away from 0, so they weigh the levels differently
        for layer in model.layers:
            if layer.self_attn.level_bias is not None:
                layer.self_attn.level_bias.normal_()
    return model


def check_train_step(rank, world, window=None, mode="dilated", sinks=0) -> dict:
    """Logits, loss, gradients (level gates included) and one SGD step equal one
    process's. ``window``: level 0 a sliding window of that many positions (and
    ``sinks`` attention sinks)."""
    model = small_model(mode, (5, 12, 30), (1, 3, 7), dtype=F64, gates=True, window=window,
                        sinks=sinks)
    ids = torch.randint(0, 64, (2, 42), generator=torch.Generator().manual_seed(1))
    single = small_model(mode, (5, 12, 30), (1, 3, 7), dtype=F64, gates=True, window=window,
                         sinks=sinks)
    logits = single(ids[:, :-1])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), ids[:, 1:].reshape(-1))
    loss.backward()
    reference = {n: p.grad.clone() for n, p in single.named_parameters()}
    torch.optim.SGD(single.parameters(), lr=0.5).step()

    inputs, targets, layout = D.next_token_shard(lambda a, b: ids[:, a:b], 41)
    with torch.no_grad():
        sharded_logits = D.sharded_forward(model, inputs, layout=layout)
    local_loss, mean = D.sequence_parallel_loss(model, inputs, targets, layout=layout)
    local_loss.backward()
    D.all_reduce_gradients(model.parameters())
    errors = {"logits": float((sharded_logits - logits[:, layout.start:layout.end]).abs().max()),
              "loss": abs(float(mean) - float(loss)),
              "grads": max(float((p.grad - reference[n]).abs().max())
                           for n, p in model.named_parameters())}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    result = D.train_step(model, optimizer, inputs, targets, layout=layout)
    errors["step_loss"] = abs(result["loss"] - float(loss))
    errors["params_after_step"] = max(float((p - q).abs().max()) for p, q in
                                      zip(model.parameters(), single.parameters()))
    if window is not None:  # the gates' gradients are part of "grads"; make sure they exist
        errors["level_bias_grad_missing"] = float(any(
            layer.self_attn.level_bias.grad is None or not layer.self_attn.level_bias.grad.any()
            for layer in model.layers))
    return errors


def memory_errors(single, distributed) -> dict:
    a, b = single.state_dict(), distributed.state_dict()
    if a.keys() != b.keys():
        return {"error": f"state keys differ: {sorted(a.keys() ^ b.keys())[:4]}"}
    same = (single.tokens, single.stream_offset, single.stream_hash, single._level_starts(),
            single._window_first()) == \
        (distributed.tokens, distributed.stream_offset, distributed.stream_hash,
         distributed._level_starts(), distributed._window_first())
    return {"state": max(float((a[k] - b[k]).abs().max()) for k in a), "metadata": 0.0 if same else 1.0,
            "keys": len(a)}


def check_memory(rank, world, mode) -> dict:
    model = small_model(mode, (4, 8, 16, 32), (1, 2, 4, 8), gates=True).eval()
    ids = torch.randint(0, 64, (90,), generator=torch.Generator().manual_seed(2))
    single = model.memory()
    single.append(ids)
    memory = model.memory()
    for a, b in ((0, 23), (23, 37), (37, 90)):  # rounds of any size, unaligned
        D.memory_append(memory, ids[a:b])
    return memory_errors(single, memory)


def check_memory_window(rank, world, mode, window, tmp, sinks=0) -> dict:
    """A sliding level 0 (with ``sinks`` attention sinks): the logits of every round and
    the state after it equal one process's (rounds whose shards are shorter and longer
    than the window; the first round reads 3 tokens, so 4 sinks straddle two rounds);
    a single process goes on from the state exactly; the state saves and loads."""
    from longnet.memory import Memory

    model = small_model(mode, (5, 12, 30), (1, 3, 7), gates=True, window=window,
                        sinks=sinks).eval()
    ids = torch.randint(0, 64, (110,), generator=torch.Generator().manual_seed(4))
    single = model.memory()
    reference = single.append(ids[:90])
    memory = model.memory()
    logits_error = 0.0
    for a, b in ((0, 3), (3, 23), (23, 37), (37, 90)):
        logits = D.memory_append(memory, ids[a:b], return_logits=True)
        layout = D.ShardLayout(D.split_lengths(b - a, world, offset=a), rank, a)
        assert logits.shape == (layout.local_length, 64)
        if len(logits):
            logits_error = max(logits_error, float((logits - reference[layout.start:layout.end])
                                                   .abs().max()))
    errors = memory_errors(single, memory)
    errors["logits"] = logits_error
    errors["window_rows"] = float(sum(s.rows for s in memory.local) != 2 * (window - 1))
    errors["sink_rows"] = float([None if s is None else s.shape[2] for s in memory.sinks]
                                != [sinks or None] * 2)
    memory.save(Path(tmp) / f"rank{rank}", stored_dtype=torch.float32)
    loaded = Memory.load(Path(tmp) / f"rank{rank}", model)
    errors["saved"] = memory_errors(memory, loaded)["state"]
    errors["continued"] = float((single.append(ids[90:]) - loaded.append(ids[90:])).abs().max())
    return errors


def check_memory_resume(rank, world, window=None, sinks=0) -> dict:
    """Rank 0 alone reads a prefix (as if loaded from disk), hands it to the others, and
    the ranks go on together."""
    model = small_model("dilated", (5, 12, 30), (1, 3, 7), window=window, sinks=sinks).eval()
    ids = torch.randint(0, 64, (80,), generator=torch.Generator().manual_seed(3))
    single = model.memory()
    single.append(ids)
    memory = model.memory()
    if rank == 0:
        memory.append(ids[:29], stream_offset=29)
    D.broadcast_memory(memory)
    D.memory_append(memory, D.broadcast_tokens(ids[29:].numpy() if rank == 0 else None))
    return memory_errors(single, memory)


def check_aligned_levels(rank, world) -> dict:
    """Shards that are whole segments of level 0: level 0 sends nothing, level 1 does."""
    lengths = (16,) * world
    errors = compare_attention(rank, lengths, (4, 16 * world), (1, 4), 6, 2, 1, False, False, True)
    sent = errors["gathered_bytes"]
    errors["level0_bytes"] = float(sent.get("0", 0))
    errors["level1_has_bytes"] = 0.0 if sent.get("1", 0) > 0 or rank == 0 else 1.0
    return errors


def check_memory_build(rank, world, home) -> dict:
    """``build_memory_distributed`` inside the running process group (rank 0 owns the
    home); the test compares what it saved with ``memex memory build``'s."""
    from assistant.cli.memory_distributed import build_memory_distributed

    summary = build_memory_distributed(home, tokens_per_rank=150, as_json=True)
    return {"summary": summary}


# Sliding level 0 (local_window W, S attention sinks), run by worlds 2 and 3: shard
# lengths and W such that shards are shorter than W (a rank reads rows of several
# earlier ranks), longer, and empty; sinks on rank 0 alone (read by rank 0 itself and
# later ranks) and spread over ranks 0 and 1 (shards shorter than S); (config from
# ATTENTION, lengths, W, S).
WINDOW_RUNS = {
    2: [("r-not-dividing-w-rotary-bias", (13, 37), 16, 0), ("geometric-gqa", (1, 40), 6, 0),
        ("mqa-one-long-level", (30, 20), 64, 0),
        ("r-not-dividing-w-rotary-bias", (13, 37), 16, 4), ("geometric-gqa", (2, 40), 6, 4),
        ("mqa-one-long-level", (30, 20), 6, 1)],
    3: [("r-not-dividing-w-rotary-bias", (5, 9, 30), 12, 0), ("geometric-gqa", (10, 0, 15), 12, 0),
        ("mqa-one-long-level", (20, 3, 2), 4, 0),
        ("r-not-dividing-w-rotary-bias", (2, 3, 30), 4, 4), ("geometric-gqa", (10, 0, 15), 5, 1),
        ("mqa-one-long-level", (20, 3, 2), 4, 4)],
}


def window_check_name(name, lengths, w, sinks):
    return f"window/{name}/{'-'.join(map(str, lengths))}/{w}" + (f"/sinks{sinks}" if sinks else "")


WINDOW_CHECKS = [(world, window_check_name(*run)) for world, runs in WINDOW_RUNS.items()
                 for run in runs]
# (window, sinks) for the model-level checks: shards (~41/world and ~27/world tokens per
# round) longer than 6, shorter than 30.
MODEL_WINDOWS = ((6, 4), (30, 1))


def run_window_checks(rank, world, attempt, tmp) -> None:
    for name, lengths, w, sinks in WINDOW_RUNS[world]:
        ws, rs, Hq, Hkv, B, rotary, bias = ATTENTION[name]
        attempt(window_check_name(name, lengths, w, sinks), compare_attention,
                rank, lengths, ws, rs, Hq, Hkv, B, rotary, bias, True, window=w, sinks=sinks)
    attempt("window/not-causal", refuses_window_without_causal, rank, world)
    for w, sinks in MODEL_WINDOWS:
        attempt(f"window/train-step/{w}", check_train_step, rank, world, window=w, sinks=sinks)
        attempt(f"window/memory/{w}", check_memory_window, rank, world, "dilated", w, tmp,
                sinks=sinks)
    attempt("window/train-step-absolute", check_train_step, rank, world, window=6,
            mode="absolute", sinks=4)
    attempt("window/memory-absolute", check_memory_window, rank, world, "absolute", 6, tmp,
            sinks=4)
    attempt("window/memory-resume", check_memory_resume, rank, world, window=6, sinks=4)


def refuses_window_without_causal(rank, world) -> dict:
    q = torch.zeros(1, 2, 4, 8)
    layout = D.ShardLayout((4,) * world, rank)
    try:
        D.dilated_attention(q, q, q, (4, 8), (1, 2), is_causal=False, local_window=4, layout=layout)
    except ValueError as error:
        return {"refused": 0.0 if "is_causal" in str(error) else 1.0}
    return {"refused": 1.0}


def run_checks(rank, world, home, window_home=None, suite="all", tmp=None) -> dict:
    results = {}

    def attempt(name, fn, *args, **kwargs):
        try:
            results[name] = fn(*args, **kwargs)
        except Exception:  # noqa: BLE001 -- reported by the test that reads it
            results[name] = {"error": traceback.format_exc()}

    if world in WINDOW_RUNS:
        run_window_checks(rank, world, attempt, tmp)
    if window_home is not None:
        attempt("memory-build-window", check_memory_build, rank, world, window_home)
    if suite == "window":
        return results
    for name, causal, i in ATTENTION_RUNS[world]:
        ws, rs, Hq, Hkv, B, rotary, bias = ATTENTION[name]
        attempt(f"{name}/{'causal' if causal else 'full'}/{i}", compare_attention,
                rank, LENGTHS[world][i], ws, rs, Hq, Hkv, B, rotary, bias, causal)
    attempt("aligned-levels-stay-local", check_aligned_levels, rank, world)
    attempt("float32", compare_attention, rank, LENGTHS[world][0], (4, 8, 16, 64), (1, 2, 4, 8),
            6, 2, 1, True, True, True, dtype=torch.float32)
    attempt("train-step", check_train_step, rank, world)
    attempt("memory-absolute", check_memory, rank, world, "absolute")
    attempt("memory-resume", check_memory_resume, rank, world)
    if home is not None:
        attempt("memory-build", check_memory_build, rank, world, home)
    return results


def worker(rank, world, port, out_dir, home, window_home, suite):
    os.environ.update(loopback_env())
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    try:
        results = run_checks(rank, world, home, window_home, suite, out_dir)
    finally:
        dist.destroy_process_group()
    Path(out_dir, f"rank{rank}.json").write_text(json.dumps(results))


def spawn(world: int, out_dir: Path, home: Path | None = None, timeout_s: float = 240,
          window_home: Path | None = None, suite: str = "all") -> list[dict]:
    """Run the checks in ``world`` processes. A start that dies (seen once in ~20 suite
    runs: the free port taken between probe and bind) is tried once more on a new port;
    a check that fails fails both times."""
    try:
        return _spawn_once(world, out_dir, home, timeout_s, window_home, suite)
    except (mp.ProcessExitedException, mp.ProcessRaisedException):
        return _spawn_once(world, out_dir, home, timeout_s, window_home, suite)


def _spawn_once(world, out_dir, home, timeout_s, window_home, suite) -> list[dict]:
    context = mp.spawn(worker, args=(world, free_port(), str(out_dir), home and str(home),
                                     window_home and str(window_home), suite),
                       nprocs=world, join=False)
    deadline = time.monotonic() + timeout_s
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{world} processes did not finish within {timeout_s} s")
    return [json.loads((out_dir / f"rank{r}.json").read_text()) for r in range(world)]


@pytest.fixture(scope="module")
def homes(tmp_path_factory, tokenizer):
    """A data home for the 2-process build and its twin for ``memex memory build``."""
    from assistant.config import set_value

    tmp = tmp_path_factory.mktemp("homes")
    home = make_home(tmp, tokenizer)
    set_value(home, "model", str(tiny_model_folder(tmp)))
    twin = tmp / "twin"
    shutil.copytree(home, twin)
    return home, twin


@pytest.fixture(scope="module")
def window_homes(tmp_path_factory, tokenizer):
    """A data home with the default level schedule ("auto"): the pretrained defaults give
    the model a sliding window with 4 attention sinks (together its trained context, 48
    tokens here) and closed far gates, as for SmolLM2; and its twin for ``memex memory build``."""
    tmp = tmp_path_factory.mktemp("window-homes")
    home = make_home(tmp, tokenizer, levels="auto")
    from assistant.config import set_value

    set_value(home, "model", str(tiny_model_folder(tmp, context=48)))
    twin = tmp / "twin"
    shutil.copytree(home, twin)
    return home, twin


@pytest.fixture(scope="module")
def results(tmp_path_factory, homes, window_homes):
    return {2: spawn(2, tmp_path_factory.mktemp("world2"), homes[0],
                     window_home=window_homes[0]),
            3: spawn(3, tmp_path_factory.mktemp("world3"), suite="window"),
            4: spawn(4, tmp_path_factory.mktemp("world4"))}


def assert_small(per_rank: list[dict], tolerance: float, skip=("gathered_bytes", "keys", "summary")):
    for rank, errors in enumerate(per_rank):
        assert "error" not in errors, f"rank {rank} failed:\n{errors['error']}"
        for name, value in errors.items():
            if name in skip:
                continue
            assert value <= tolerance, f"rank {rank}: {name} differs by {value:.3g} (> {tolerance})"


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("world", "check"), ATTENTION_CHECKS)
def test_sharded_attention_equals_single_process(results, world, check):
    assert_small([r[check] for r in results[world]], 1e-10)


@pytest.mark.parametrize("world", [2, 4])
def test_float32_within_rounding(results, world):
    assert_small([r["float32"] for r in results[world]], 2e-5)


@pytest.mark.parametrize("world", [2, 4])
def test_levels_inside_one_shard_stay_local(results, world):
    per_rank = [r["aligned-levels-stay-local"] for r in results[world]]
    assert_small(per_rank, 1e-10)
    assert any(r["gathered_bytes"].get("1", 0) > 0 for r in per_rank)


@pytest.mark.parametrize("world", [2, 4])
def test_train_step_equals_single_process(results, world):
    assert_small([r["train-step"] for r in results[world]], 1e-10)


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("check", ["memory-absolute", "memory-resume"])
def test_memory_state_equals_single_process(results, world, check):
    per_rank = [r[check] for r in results[world]]
    assert_small(per_rank, 2e-5)
    assert all(r["keys"] > 0 for r in per_rank)


@pytest.mark.parametrize(("world", "check"), WINDOW_CHECKS)
def test_sharded_sliding_window_equals_single_process(results, world, check):
    """Outputs, lse and gradients (q, k, v, level bias) of a sliding level 0 mixed with
    far levels equal ``longnet.dilated_attention(..., local_window=W)``."""
    assert_small([r[check] for r in results[world]], 1e-10)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("check", [f"window/train-step/{w}" for w, _ in MODEL_WINDOWS]
                         + ["window/train-step-absolute"])
def test_sharded_forward_with_window_equals_model(results, world, check):
    """sharded_forward's logits, the loss, every gradient (level gates included) and a
    step equal ``model(whole)``'s with ``config.local_window`` set."""
    assert_small([r[check] for r in results[world]], 1e-10)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("check", [f"window/memory/{w}" for w, _ in MODEL_WINDOWS]
                         + ["window/memory-absolute", "window/memory-resume"])
def test_memory_append_with_window_equals_single_process(results, world, check):
    per_rank = [r[check] for r in results[world]]
    assert_small(per_rank, 2e-5)
    assert all(r["keys"] > 0 for r in per_rank)


@pytest.mark.parametrize("world", [2, 3])
def test_window_needs_causal_attention(results, world):
    assert_small([r["window/not-causal"] for r in results[world]], 0.0)


def test_gathered_rows_do_not_grow_with_sequence_length():
    """Weak scaling: 64 tokens per rank, 2..256 ranks. The rows a rank receives at a
    level (from the planner that sizes every exchange) stop growing once the level's
    segment spans several ranks, and never exceed the segment's selected rows."""
    n_local, Hq, Hkv = 64, 8, 2
    levels = [(64 * 2 ** i, 2 ** i) for i in range(9)]
    received = {i: [] for i in range(len(levels))}
    for world in (2, 4, 8, 16, 64, 256):
        layout = D.ShardLayout((n_local,) * world, world - 1)  # the last rank receives most
        for i, (w, r) in enumerate(levels):
            plan = _plan_level(layout, i, w, r, Hq, Hkv, True, None)
            rows = sum(sum(ex.recv_sizes) for ex in plan.exchanges)
            received[i].append(rows)
            assert rows <= Hkv * min(r, Hq // Hkv) * -(-w // r)
    for i, (w, r) in enumerate(levels):
        spans_all = [n for n, world in zip(received[i], (2, 4, 8, 16, 64, 256)) if world * n_local >= w]
        assert len(set(spans_all)) <= 1, f"level {i}: rows received vary with N: {received[i]}"
    assert received[0] == [0] * 6  # level 0 (w = 64) is local to each shard


def test_one_process_without_a_group_is_the_single_process_function():
    g = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(1, h, 30, 8, generator=g, dtype=F64) for h in (4, 2, 2))
    ours = D.dilated_attention(q, k, v, (4, 16), (1, 4))
    torch.testing.assert_close(ours, single_attention(q, k, v, (4, 16), (1, 4)), rtol=0, atol=0)


def test_split_lengths_and_layout():
    assert D.split_lengths(10, 3) == (3, 3, 4)
    assert D.split_lengths(100, 4, align=16) == (32, 16, 32, 20)
    assert sum(D.split_lengths(5, 8)) == 5
    layout = D.ShardLayout((3, 0, 4), 2, offset=10)
    assert (layout.start, layout.end, layout.total) == (13, 17, 7)
    with pytest.raises(ValueError, match="layout gives this rank"):
        D.dilated_attention(torch.zeros(1, 2, 5, 8), torch.zeros(1, 2, 5, 8),
                            torch.zeros(1, 2, 5, 8), (4,), (1,), layout=D.ShardLayout((4,), 0))


# --------------------------------------------------------------------------- end to end


def make_home(tmp_path: Path, tokenizer, levels: str = "32:1,64:2,128:4,1024:8") -> Path:
    """A data home with a real store and stream (the tokenizer's ids), small levels."""
    import ingest
    from assistant.config import set_value

    notes = tmp_path / "notes"
    notes.mkdir()
    for path in sorted((REPO / "examples" / "journal" / "daily" / "2023").glob("2023-01-*.md"))[:6]:
        shutil.copy(path, notes / path.name)
    home = tmp_path / "home"
    store = ingest.open_store(home, tokenizer)
    ingest.add_source(store, notes)
    ingest.run(store, tokenizer, embed=False)
    store.close()
    set_value(home, "levels", levels)
    return home


def tiny_model_folder(tmp_path: Path, context: int = 8192) -> Path:
    """A small random Llama folder over the real vocabulary (loading the 135M model in
    every process would cost this test most of its budget); ``context``: its trained
    context (max_position_embeddings), the sliding window it loads with by default."""
    from longnet.distributed.train import save_hf_folder

    torch.manual_seed(0)
    config = LongNetConfig(vocab_size=49152, hidden_size=32, num_layers=2, num_heads=4,
                           num_kv_heads=2, intermediate_size=64, max_position_embeddings=context)
    folder = tmp_path / f"tiny-llama-{context}"
    save_hf_folder(LongNetLM(config), folder)
    return folder


def test_distributed_memory_build_saves_what_one_process_saves(results, homes):
    """Two ranks ran ``build_memory_distributed`` on a real store; ``memex memory build``
    on a copy of the home saves the same metadata and (to rounding) the same state."""
    home, twin = homes
    compare_builds([r["memory-build"] for r in results[2]], home, twin)


def test_distributed_build_with_the_default_window_config(results, window_homes):
    """The default (pretrained) configuration has a sliding level 0 with attention sinks:
    two ranks build the memory that ``memex memory build`` builds, window and sink rows
    included."""
    home, twin = window_homes
    # nbytes counts buffer capacity: one process keeps room in its window to grow, the
    # distributed build holds exactly the window's rows (as a loaded memory does).
    ours, state = compare_builds([r["memory-build-window"] for r in results[2]], home, twin,
                                 ignore=("state_file", "nbytes"))
    # The window and its 4 sinks span the trained context (48 tokens here).
    assert ours["config"]["local_window"] == 44 and ours["config"]["attention_sinks"] == 4
    assert ours["tokens"] > 2 * 150
    assert ours["local_first"] == ours["tokens"] - 43
    assert state["layers.0.local.k"].shape[1] == 43
    assert state["layers.0.sinks.k"].shape[1] == 4 and state["layers.1.sinks.v"].any()


def compare_builds(per_rank, home, twin, ignore=("state_file",)):
    """What ``build_memory_distributed`` saved in ``home`` equals what ``memex memory
    build`` saves in ``twin``: metadata, and the state to rounding."""
    from safetensors.torch import load_file

    from assistant.cli.memory import build_memory
    from assistant.config import load_config
    from assistant.engine import Engine

    assert all("error" not in r for r in per_rank), per_rank[0].get("error") or per_rank[1].get("error")
    summary = per_rank[0]["summary"]
    assert summary == {**per_rank[1]["summary"], "seconds": summary["seconds"],
                       "tokens_per_s": summary["tokens_per_s"]}
    assert summary["ranks"] == 2 and summary["tokens"] == summary["stream_tokens"] > 300

    build_memory(Engine(twin, load_config(twin)), as_json=True, dtype="float32")  # as the ranks
    ours = json.loads((home / "memory" / "memory.json").read_text())
    theirs = json.loads((twin / "memory" / "memory.json").read_text())
    # The distributed build keeps no rows (memory answers then read the window); the single
    # process keeps one per token where recall can read them (a sliding window).
    assert "rows" not in ours
    if theirs["config"]["local_window"]:
        assert theirs["rows"]["end"] == theirs["tokens"]
    ignore = (*ignore, "rows")
    assert {k: v for k, v in ours.items() if k not in ignore} == \
        {k: v for k, v in theirs.items() if k not in ignore}
    a = load_file(str(home / "memory" / ours["state_file"]))
    b = load_file(str(twin / "memory" / theirs["state_file"]))
    assert a.keys() == b.keys() and a
    for key in a:
        # both saved in float16: equal to its rounding (a float16 step is 1e-3 of a value)
        torch.testing.assert_close(a[key].float(), b[key].float(), atol=2e-3, rtol=2e-3, msg=key)
    return ours, a


def test_distributed_build_refuses_another_models_memory(tmp_path, tokenizer):
    """A memory made by another model is refused on every rank with the rebuild hint
    (one process here: the refusal path is rank 0's and reaches the others)."""
    from assistant.config import set_value
    from assistant.cli.memory_distributed import DistributedBuildError, build_memory_distributed

    home = make_home(tmp_path, tokenizer)
    set_value(home, "model", str(tiny_model_folder(tmp_path)))
    (home / "memory").mkdir()
    (home / "memory" / "memory.json").write_text(json.dumps(
        {"format_version": 1, "weights_hash": "0" * 64, "model_id": "other"}))
    env_before = {k: os.environ.get(k) for k in loopback_env()}
    os.environ.update(loopback_env())
    try:
        with pytest.raises(DistributedBuildError, match="memex memory rebuild"):
            build_memory_distributed(home, tokens_per_rank=64)
    finally:
        for key, value in env_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    assert not dist.is_initialized()


def test_train_distributed_cli_runs_and_resumes(tmp_path, monkeypatch):
    """The torchrun entry point, here as a group of one process (the spawned groups above
    check that steps on 2 and 4 ranks equal one process's): 2 steps, then 1 more from
    the checkpoint; the result loads with LongNetLM.from_pretrained."""
    from longnet.distributed import train as train_distributed

    for key, value in loopback_env().items():
        monkeypatch.setenv(key, value)
    tokens = tmp_path / "tokens.npy"
    np.save(tokens, np.random.default_rng(0).integers(0, 64, 400).astype(np.uint32))
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps({"vocab_size": 64, "hidden_size": 32, "num_layers": 1,
                                  "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 48,
                                  "segment_lengths": [16, 32, 64], "dilation_rates": [1, 2, 4],
                                  "level_gates": True, "local_window": 24, "far_gate_init": -8.0}))
    out = tmp_path / "run"
    args = ["--tokens", str(tokens), "--config", str(config), "--out", str(out),
            "--seq-len", "96", "--warmup", "1", "--save-every", "1"]
    assert train_distributed.main([*args, "--steps", "2"]) == 0
    assert train_distributed.main([*args, "--steps", "3"]) == 0
    assert not dist.is_initialized()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2, 3]
    assert all(np.isfinite(entry["loss"]) for entry in log)
    fields = json.loads((out / "final" / "longnet.json").read_text())
    model = LongNetLM.from_pretrained(out / "final", **fields)
    assert model.config.segment_lengths == (16, 32, 64) and model.config.local_window == 24
    saved = torch.load(out / "checkpoint.pt", weights_only=False)
    assert saved["step"] == 3
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved["model"][name].float(), msg=name)


def test_train_distributed_rejects_a_short_token_file(tmp_path, monkeypatch):
    from longnet.distributed import train as train_distributed

    for key, value in loopback_env().items():
        monkeypatch.setenv(key, value)
    tokens = tmp_path / "few.npy"
    np.save(tokens, np.arange(10, dtype=np.uint32))
    with pytest.raises(SystemExit, match="a step needs"):
        train_distributed.main(["--tokens", str(tokens), "--out", str(tmp_path / "run"),
                                "--seq-len", "96", "--config", "unused.json"])


def test_cli_memory_build_distributed_flag_as_a_group_of_one(tmp_path, tokenizer, monkeypatch):
    """`memex memory build --distributed` outside torchrun runs as a group of one and
    leaves the memory where `memex memory status` finds it."""
    from typer.testing import CliRunner

    from assistant.cli import app
    from assistant.config import set_value

    home = make_home(tmp_path, tokenizer)
    set_value(home, "model", str(tiny_model_folder(tmp_path)))
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    runner = CliRunner()
    built = runner.invoke(app, ["--home", str(home), "memory", "build", "--distributed", "--json"])
    assert built.exit_code == 0, built.output
    summary = json.loads(built.output[built.output.index("{"):])
    assert summary["ranks"] == 1 and summary["tokens"] == summary["stream_tokens"] > 300
    status = runner.invoke(app, ["--home", str(home), "memory", "status", "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.output)["tokens"] == summary["tokens"]


def test_window_reaching_before_the_offset_needs_the_memory_rows():
    """A shard whose window reaches before ``layout.offset`` cannot compute it without
    the memory's window rows: a clear error naming ``window_prefix``, not a wrong result."""
    x = torch.zeros(1, 2, 4, 8)
    with pytest.raises(ValueError, match="window_prefix"):
        D.dilated_attention(x, x, x, (4, 8), (1, 2), local_window=4,
                            layout=D.ShardLayout((4,), 0, offset=16))
    # Reaching only rows at or after the offset needs nothing else.
    out = D.dilated_attention(x, x, x, (4, 8), (1, 2), local_window=1,
                              layout=D.ShardLayout((4,), 0, offset=16))
    assert out.shape == x.shape


def test_sinks_in_one_process_and_refusals():
    """Without a group the sharded attention with sinks is the single-process one; sinks
    without a window, or sinks before the offset without the memory's rows, are refused
    with errors naming what is missing, not computed wrongly."""
    g = torch.Generator().manual_seed(6)
    q, k, v = (torch.randn(1, h, 30, 8, generator=g, dtype=F64) for h in (4, 2, 2))
    rot = rotary_for(4, 8)
    ours = D.dilated_attention(q, k, v, (4, 16), (1, 4), local_window=6, attention_sinks=3,
                               rotary=rot)
    theirs = single_attention(q, k, v, (4, 16), (1, 4), local_window=6, attention_sinks=3,
                              rotary=rot)
    without = single_attention(q, k, v, (4, 16), (1, 4), local_window=6, rotary=rot)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert (theirs - without).abs().max() > 1e-3  # the sinks change the result
    with pytest.raises(ValueError, match="attention_sinks"):
        D.dilated_attention(q, k, v, (4, 16), (1, 4), attention_sinks=2)
    x = torch.zeros(1, 2, 4, 8)
    window_rows = (torch.zeros(2, 3, 8), torch.zeros(2, 3, 8), 13)
    with pytest.raises(ValueError, match="sink_prefix"):
        D.dilated_attention(x, x, x, (4, 8), (1, 2), local_window=4, attention_sinks=2,
                            window_prefix=window_rows, layout=D.ShardLayout((4,), 0, offset=16))
    sinks = (torch.zeros(2, 2, 8), torch.zeros(2, 2, 8))
    out = D.dilated_attention(x, x, x, (4, 8), (1, 2), local_window=4, attention_sinks=2,
                              window_prefix=window_rows, sink_prefix=sinks,
                              layout=D.ShardLayout((4,), 0, offset=16))
    assert out.shape == x.shape
