"""The arithmetic of the ceilings the benchmarks print: bench/attention.py --ceiling (what
speedup the kernel's rate allows) and bench/memory.py --bound (what tokens/s the machine's
read bandwidth allows). Small shapes; the figures themselves are not checked, only that the
derived columns follow from the measured ones."""

from __future__ import annotations

import argparse
import re

import pytest
import torch
from bench_loader import load_bench

from longnet.model import LongNetConfig, LongNetLM

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def table_rows(report: str) -> list[list[str]]:
    rows = [line for line in report.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[1:]]


def test_ceiling_speedup_is_the_flop_ratio_times_the_rate_ratio():
    attention = load_bench("attention")
    report = attention.kernel_ceiling(4096, 1)
    rows = table_rows(report)
    assert [row[0][:5] for row in rows] == ["dense", "dilat", "level", "the s"]
    sdpa, dilated, _, unmasked = (float(row[2]) for row in rows)
    # Levels (2048, 1) and (4096, 2): each query reaches 2048/2 + 2048/2/2 keys on
    # average, against 4096/2 dense: a ratio of 4/3.
    ratio = attention.dense_flops(4096) / attention.dilated_flops(4096)
    assert ratio == pytest.approx(4 / 3)
    assert f"useful flops at N = 4,096: {ratio:.2f}" in report
    measured = re.search(r"of SDPA's rate -> ([\d.]+)x;", report)
    best = re.search(r"\(\d+% of SDPA's\) -> ([\d.]+)x at most", report)
    assert float(measured.group(1)) == pytest.approx(ratio * dilated / sdpa, rel=0.05, abs=0.06)
    assert float(best.group(1)) == pytest.approx(ratio * unmasked / sdpa, rel=0.05, abs=0.06)
    # 8x at 4K would need 600% of SDPA's rate; 30x at 16K (ratio 16384/3840) 703%.
    assert "a 8x speedup at N = 4,096 (flop ratio 1.33) needs 600% of SDPA's rate" in report
    assert "a 30x speedup at N = 16,384 (flop ratio 4.27) needs 703% of SDPA's rate" in report


def test_decode_ceiling_is_the_read_rate_over_the_bytes_a_token_reads():
    memory_bench = load_bench("memory")
    torch.manual_seed(0)
    config = LongNetConfig(vocab_size=4096, hidden_size=256, num_layers=2, num_heads=4,
                           num_kv_heads=2, intermediate_size=512,
                           segment_lengths=(256, 1024, 4096), dilation_rates=(1, 4, 16),
                           local_window=256, attention_sinks=2, level_gates=True,
                           far_gate_init=-8.0)
    model = LongNetLM(config).eval()
    model.model_id = "random-init test model"
    args = argparse.Namespace(decode_weights="float32,float16", decode_tokens=2, repeats=1)
    report = memory_bench.bench_bound(args, model, torch.device("cpu"), torch.float32)
    rate = float(re.search(r"read rate .*: ([\d.]+) GB/s", report).group(1)) * 1e9
    rows = table_rows(report)
    assert [(row[0], row[1]) for row in rows] == [
        (f"{n:,}", kind) for n in (10_000, 100_000, 1_000_000) for kind in ("float32", "float16")]
    float32_mb = sum(p.numel() * 4 for m in model.projections() for p in m.parameters()) / 2 ** 20
    for history, kind, state_mb, weights_mb, ceiling, ceiling_2bytes, measured in rows:
        state_mb, weights_mb = float(state_mb), float(weights_mb)
        assert weights_mb == pytest.approx(float32_mb if kind == "float32" else float32_mb / 2,
                                           abs=0.06)
        total = (state_mb + weights_mb) * 2 ** 20
        assert float(ceiling) == pytest.approx(rate / total, rel=0.05)
        assert float(ceiling_2bytes) == pytest.approx(rate / (total - state_mb * 2 ** 19), rel=0.05)
        assert float(measured) > 0
    for (history, _, state_mb, *_rest) in rows[::2]:  # what the memory holds, in float32
        shaped = memory_bench.synthetic_memory(model, torch.float32, int(history.replace(",", "")))
        assert float(state_mb) == pytest.approx(
            memory_bench.state_bytes_bf16(shaped) * 2 / 2 ** 20, abs=0.06)
