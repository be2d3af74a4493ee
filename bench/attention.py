"""Dilated attention vs dense causal SDPA: time, peak memory, useful GFLOP/s.

    python bench/attention.py                      # CPU, float32 and bfloat16, N = 4K..1M
    python bench/attention.py --quick              # a one-minute smoke run
    python bench/attention.py --device cuda --dtype bfloat16 --max-n 1048576

Setup (issue 3): batch 1, 8 heads, head dim 64, levels w = 2048 * 2^i, r = 2^i until
w >= N. Dense SDPA (``F.scaled_dot_product_attention(is_causal=True)``) runs up to
``--sdpa-max-n`` (128K), dilated alone up to ``--max-n``. For each N the two are timed
interleaved (SDPA, dilated, SDPA, dilated, ...) so that their ratio is fair on a
shared machine; times are medians. Useful flops count causal work once:
dilated ``sum_i 2 N (w_i/r_i) (1/r_i) d H`` (w_i capped at N), SDPA ``2 N^2 d H``.

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` above the inputs; on CPU the
process RSS above what it was before the call, sampled every 5 ms by a psutil thread
(torch's CPU allocator has no peak counter, and tracemalloc does not see it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import psutil
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from longnet.attention import dilated_attention  # noqa: E402
from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

HEADS, HEAD_DIM, BASE_SEGMENT = 8, 64, 2048


def levels_for(n: int) -> tuple[list[int], list[int]]:
    ws, rs, w, r = [], [], BASE_SEGMENT, 1
    while True:
        ws.append(w)
        rs.append(r)
        if w >= n:
            return ws, rs
        w, r = w * 2, r * 2


def dilated_flops(n: int) -> float:
    ws, rs = levels_for(n)
    return sum(2 * n * (min(w, n) / r) * (1 / r) * HEAD_DIM * HEADS for w, r in zip(ws, rs))


def dense_flops(n: int) -> float:
    return 2.0 * n * n * HEAD_DIM * HEADS


class PeakRSS:
    """Peak resident memory above the starting point, sampled by a thread."""

    def __init__(self, interval: float = 0.005):
        self.interval, self.proc = interval, psutil.Process()

    def __enter__(self):
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.extra = self.peak - self.start


def measure(fn, device: torch.device) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, extra peak bytes) of one call. CPU seconds
    (all threads, from time.process_time) barely grow when other jobs crowd the CPU,
    so their ratio is the steadier one on a shared machine; on CUDA they mean little."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start, time.process_time() - cpu_start,
                torch.cuda.max_memory_allocated() - base)
    with PeakRSS() as mem:
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return seconds, cpu, mem.extra


def machine_description(device: torch.device) -> str:
    cpu = cpu_name()
    parts = [f"CPU {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}",
             f"RAM {psutil.virtual_memory().total / 2**30:.0f} GiB",
             f"torch {torch.__version__}, Python {platform.python_version()}"]
    if device.type == "cuda":
        parts.insert(0, f"GPU {torch.cuda.get_device_name(device)}")
    return "; ".join(parts)


def human(n: int) -> str:
    return f"{n // 1048576}M" if n % 1048576 == 0 else f"{n // 1024}K" if n % 1024 == 0 else str(n)


def load_partial(path: Optional[Path]) -> dict:
    """Rows measured by an earlier, interrupted run: {(device, dtype, n): row}."""
    done = {}
    if path is not None and path.exists():
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by the interruption
            done[(row["device"], row["dtype"], row["n"])] = row
    return done


def run(device: torch.device, dtype: torch.dtype, sizes: list[int], sdpa_max: int, repeats: int,
        long_call: float, progress: Progress, partial: Optional[Path], done: dict,
        console: Console) -> list[dict]:
    rows = []
    dtype_name = str(dtype).replace("torch.", "")
    task = progress.add_task(f"{device.type} {dtype_name}", total=len(sizes))
    for n in sizes:
        key = (device.type, dtype_name, n)
        if key in done:  # resumed: measured by an earlier run
            rows.append(done[key])
            progress.advance(task)
            continue
        progress.update(task, description=f"{device.type} {dtype_name} N={human(n)}")
        gen = torch.Generator(device=device).manual_seed(n)
        q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM, generator=gen, device=device, dtype=dtype)
                   for _ in range(3))
        ws, rs = levels_for(n)
        calls = {"dilated": lambda: dilated_attention(q, k, v, ws, rs)}
        if n <= sdpa_max:
            calls["sdpa"] = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        times = {name: [] for name in calls}
        mems = {name: 0 for name in calls}
        cpu_times = {name: [] for name in calls}
        with torch.inference_mode():
            for name, fn in calls.items():  # warm-up (small N only: it costs a full call)
                if n <= 16384:
                    fn()
            for rep in range(repeats):
                for name in sorted(calls, reverse=True):  # sdpa first, then dilated
                    if rep > 0 and times[name] and times[name][0] > long_call:
                        continue  # one run is enough for calls this long
                    seconds, cpu, extra = measure(calls[name], device)
                    times[name].append(seconds)
                    cpu_times[name].append(cpu)
                    mems[name] = max(mems[name], extra)
        row = {"n": n, "levels": len(ws)}
        for name in calls:
            row[name] = statistics.median(times[name])
            row[name + "_runs"] = len(times[name])
            row[name + "_mem"] = mems[name]
            row[name + "_cpu"] = statistics.median(cpu_times[name])
        row.update(device=device.type, dtype=dtype_name)
        rows.append(row)
        if partial is not None:
            with partial.open("a") as f:
                f.write(json.dumps(row) + "\n")
        console.print(f"{device.type} {dtype_name} N={human(n)}: dilated {row['dilated']:.3f} s"
                      + (f", SDPA {row['sdpa']:.3f} s" if "sdpa" in row else ""), markup=False, highlight=False)
        del q, k, v
        progress.advance(task)
    return rows


def format_table(rows: list[dict], device: torch.device, dtype: torch.dtype) -> str:
    by_n = {row["n"]: row for row in rows}
    lines = [f"{'N':>6} {'lv':>2} {'SDPA s':>9} {'dil s':>9} {'speedup':>8} "
             f"{'SDPA GF/s':>9} {'dil GF/s':>9} {'eff':>5} {'t(N)/t(N/4)':>11} "
             f"{'SDPA MiB':>9} {'dil MiB':>9} {'cpu-s x':>7} {'cpu eff':>7} runs"]
    for row in rows:
        n, dil = row["n"], row["dilated"]
        sdpa = row.get("sdpa")
        dil_gf = dilated_flops(n) / dil / 1e9
        sdpa_gf = dense_flops(n) / sdpa / 1e9 if sdpa else None
        quarter = by_n.get(n // 4)
        linear = f"{dil / quarter['dilated']:.2f}" if quarter else "-"
        sdpa_mem = f"{row['sdpa_mem'] / 2**20:.0f}" if sdpa else "-"
        cpu_speedup = cpu_eff = "-"
        if sdpa and row.get("sdpa_cpu") and row.get("dilated_cpu"):
            ratio = row["sdpa_cpu"] / row["dilated_cpu"]
            cpu_speedup = f"{ratio:.1f}x"
            cpu_eff = f"{ratio * dilated_flops(n) / dense_flops(n):.0%}"
        lines.append(
            f"{human(n):>6} {row['levels']:>2} "
            f"{(f'{sdpa:.3f}' if sdpa else '-'):>9} {dil:>9.3f} "
            f"{(f'{sdpa / dil:.1f}x' if sdpa else '-'):>8} "
            f"{(f'{sdpa_gf:.1f}' if sdpa_gf else '-'):>9} {dil_gf:>9.1f} "
            f"{(f'{dil_gf / sdpa_gf:.0%}' if sdpa_gf else '-'):>5} {linear:>11} "
            f"{sdpa_mem:>9} {row['dilated_mem'] / 2**20:>9.0f} {cpu_speedup:>7} {cpu_eff:>7} "
            f"{row.get('sdpa_runs', 0)}/{row['dilated_runs']}")
    compared = [row for row in rows if row.get("sdpa")]
    crossover = None
    for i, row in enumerate(compared):  # smallest N from which dilated stays faster
        if all(r["sdpa"] > r["dilated"] for r in compared[i:]):
            crossover = row["n"]
            break
    if crossover is None:
        lines.append("crossover: dilated was not faster than SDPA at the largest N measured")
    else:
        lines.append(f"crossover: dilated is faster than dense SDPA from N = {human(crossover)} on "
                     f"(at every larger N measured). At N <= {BASE_SEGMENT} there is a single level "
                     "(w >= N, r = 1), which is one dense causal kernel call: the dense path, exact.")
    head = f"{device.type} {str(dtype).replace('torch.', '')}: B=1, H={HEADS}, d={HEAD_DIM}, " \
           f"levels w=2048*2^i, r=2^i until w>=N; median wall times; eff = dilated GF/s / SDPA GF/s; " \
           f"cpu-s x and cpu eff: the same ratios from process CPU seconds ('-' where not recorded)"
    return "\n".join([head] + lines)


def correctness_check(device: torch.device, console: Console) -> bool:
    """Compare the device's results (and gradients) with the brute-force float64
    reference of tests/attention_reference.py on small problems."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from attention_reference import reference_dilated

    cases = [  # (B, Hq, Hkv, M, N, D, ws, rs, causal)
        (1, 8, 8, 300, 300, 64, [64, 128, 512], [1, 2, 4], True),
        (2, 6, 2, 77, 200, 64, [32, 96, 400], [1, 3, 8], True),
        (1, 4, 4, 130, 130, 32, [40, 130], [2, 5], False),
        (2, 9, 3, 1, 257, 64, [64, 128, 256, 512], [1, 2, 4, 8], True),
    ]
    tolerances = {torch.float32: 2e-3, torch.bfloat16: 4e-2, torch.float16: 6e-3}
    ok = True
    for dtype, tol in tolerances.items():
        for B, Hq, Hkv, M, N, D, ws, rs, causal in cases:
            gen = torch.Generator().manual_seed(N)
            cpu = [torch.randn(B, h, n, D, generator=gen, dtype=torch.float64)
                   for h, n in ((Hq, M), (Hkv, N), (Hkv, N))]
            q, k, v = (x.to(device, dtype).requires_grad_() for x in cpu)
            out, lse = dilated_attention(q, k, v, ws, rs, is_causal=causal, return_lse=True)
            grad_out = torch.randn(out.shape, generator=gen, dtype=torch.float64)
            grads = torch.autograd.grad((out.double() * grad_out.to(device)).sum()
                                        + torch.where(torch.isinf(lse), 0, lse).double().sum(), (q, k, v))
            ref_inputs = [x.clone().requires_grad_() for x in cpu]
            ref, ref_lse = reference_dilated(*ref_inputs, ws, rs, is_causal=causal)
            ref_grads = torch.autograd.grad((ref * grad_out).sum()
                                            + torch.where(torch.isinf(ref_lse), 0, ref_lse).sum(), ref_inputs)
            err_out = (out.double().cpu() - ref).abs().max().item()
            finite = torch.isfinite(ref_lse)
            err_lse = (lse.double().cpu()[finite] - ref_lse[finite]).abs().max().item()
            scale = max(g.abs().max().item() for g in ref_grads)
            err_grad = max((g.double().cpu() - r).abs().max().item() for g, r in zip(grads, ref_grads)) / scale
            passed = err_out < tol and err_lse < 4 * tol and err_grad < 4 * tol
            ok &= passed
            console.print(f"check {str(dtype).replace('torch.', ''):8} B={B} Hq={Hq} Hkv={Hkv} M={M} N={N} "
                          f"D={D} causal={causal}: max|out err| {err_out:.2e}, lse {err_lse:.2e}, "
                          f"grad (relative to max grad) {err_grad:.2e} -> {'ok' if passed else 'FAIL'}",
                          markup=False, highlight=False)
    return ok


def kernel_ceiling(n: int, repeats: int) -> str:
    """CPU seconds and useful GFLOP/s at ``n`` (float32) of dense SDPA, the dilated function,
    and its level 0 alone as one bare flash-kernel call over the causal 2,048-row segments:
    how close the dilated path runs to the rate the kernel reaches on such segments."""
    if n % BASE_SEGMENT:
        raise SystemExit(f"--ceiling needs a multiple of {BASE_SEGMENT}")
    q, k, v = (torch.randn(1, HEADS, n, HEAD_DIM) for _ in range(3))
    ws, rs = levels_for(n)
    segments = n // BASE_SEGMENT

    def as_segments(x):
        return x.view(HEADS, segments, BASE_SEGMENT, HEAD_DIM).transpose(0, 1).contiguous()

    qs, ks, vs = as_segments(q), as_segments(k), as_segments(v)
    calls = {
        "dense SDPA (causal)": (lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                dense_flops(n)),
        "dilated_attention, all levels": (lambda: dilated_attention(q, k, v, ws, rs),
                                          dilated_flops(n)),
        f"level 0 alone: one kernel call, {segments} causal {BASE_SEGMENT}-row segments": (
            lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                qs, ks, vs, is_causal=True),
            2.0 * n * BASE_SEGMENT * HEAD_DIM * HEADS),
        # The same segments without the causal mask: every score the kernel computes is
        # used, so this is the best rate it reaches on segment-sized work.
        "the same segments unmasked (no masked work; every score counted)": (
            lambda: torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                qs, ks, vs, is_causal=False),
            4.0 * n * BASE_SEGMENT * HEAD_DIM * HEADS),
    }
    lines = [f"kernel ceiling at N = {n:,}, float32, {HEADS} heads, d = {HEAD_DIM}, "
             f"{torch.get_num_threads()} threads; median CPU seconds of {repeats}",
             "", "| call | CPU s | useful GFLOP/s |", "|---|---:|---:|"]
    rates = []
    for name, (call, flops) in calls.items():
        call()  # warm-up
        times = []
        for _ in range(repeats):
            began = time.process_time()
            call()
            times.append(time.process_time() - began)
        seconds = statistics.median(times)
        rates.append(flops / seconds / 1e9)
        lines.append(f"| {name} | {seconds:.2f} | {rates[-1]:.1f} |")
    # Speedup = (dense flops / dilated flops) x (dilated rate / dense rate): the flop ratio
    # caps it at equal efficiency, and the kernel's best segment rate caps the efficiency.
    ratio = dense_flops(n) / dilated_flops(n)
    sdpa, dilated, _, best = rates
    lines += ["", f"dense / dilated useful flops at N = {n:,}: {ratio:.2f}, so the speedup is "
              f"{ratio:.2f} x (dilated rate / SDPA rate)",
              f"measured: {dilated / sdpa:.0%} of SDPA's rate -> {ratio * dilated / sdpa:.1f}x; "
              f"at the kernel's best rate on {BASE_SEGMENT}-row segments "
              f"({best / sdpa:.0%} of SDPA's) -> {ratio * best / sdpa:.1f}x at most"]
    for target_n, target in ((n, 8.0), (4 * n, 30.0)):
        target_ratio = dense_flops(target_n) / dilated_flops(target_n)
        lines.append(f"a {target:.0f}x speedup at N = {target_n:,} (flop ratio "
                     f"{target_ratio:.2f}) needs {target / target_ratio:.0%} of SDPA's rate")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", default="all", choices=["all", "float32", "bfloat16", "float16"],
                        help="'all' = float32 and bfloat16")
    parser.add_argument("--max-n", type=int, default=1 << 20, help="largest N for dilated")
    parser.add_argument("--min-n", type=int, default=4096)
    parser.add_argument("--sdpa-max-n", type=int, default=1 << 17, help="largest N for dense SDPA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--long-call", type=float, default=20.0,
                        help="calls slower than this many seconds are run once")
    parser.add_argument("--quick", action="store_true", help="N = 2K..16K, two runs: a smoke test")
    parser.add_argument("--out", type=Path, help="also write the table to this file (and keep "
                        "finished rows in <out>.tmp, so that an interrupted run resumes)")
    parser.add_argument("--restart", action="store_true", help="ignore rows kept by an interrupted run")
    parser.add_argument("--note", default="", help="a line added under the table (e.g. load)")
    parser.add_argument("--check", action="store_true",
                        help="first compare results and gradients with the brute-force reference")
    parser.add_argument("--check-only", action="store_true", help="run the check, no benchmark")
    parser.add_argument("--ceiling", type=int, default=None, metavar="N",
                        help="instead: SDPA, dilated and level 0 as one bare kernel call at N "
                             "(CPU seconds, useful GFLOP/s)")
    args = parser.parse_args(argv)
    if args.ceiling:
        report = kernel_ceiling(args.ceiling, args.repeats)
        print(report)
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(report + "\n")
        return 0

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available on this machine", file=sys.stderr)
        return 2
    if args.quick:
        args.min_n, args.max_n, args.sdpa_max_n, args.repeats = 2048, min(args.max_n, 16384), 16384, 2
    dtypes = [torch.float32, torch.bfloat16] if args.dtype == "all" else [getattr(torch, args.dtype)]
    sizes = []
    n = args.min_n
    while n <= args.max_n:
        sizes.append(n)
        n *= 2

    console = Console(stderr=True, width=160)
    if args.check or args.check_only:
        passed = correctness_check(device, console)
        console.print(f"correctness check on {device.type}: {'passed' if passed else 'FAILED'}")
        if args.check_only or not passed:
            return 0 if passed else 1
    # Finished rows are appended to <out>.tmp, so an interrupted run picks up where it
    # stopped when started again with the same --out (unless --restart).
    partial = args.out.with_name(args.out.name + ".tmp") if args.out else None
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
    if partial is not None and args.restart and partial.exists():
        partial.unlink()
    done = load_partial(partial)
    if done:
        console.print(f"resuming: {len(done)} rows already measured in {partial}")
    tables = []
    started = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        for dtype in dtypes:
            rows = run(device, dtype, sizes, args.sdpa_max_n, args.repeats, args.long_call, progress,
                       partial, done, console)
            tables.append(format_table(rows, device, dtype))
            console.print(tables[-1], markup=False, highlight=False)
    load = os.getloadavg()
    text = "\n\n".join(
        [f"machine: {machine_description(device)}",
         f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} "
         f"(the CPU is shared with other jobs, so absolute times are noisy; the two methods "
         f"were timed interleaved); total {time.time() - started:.0f} s"]
        + tables + ([args.note] if args.note else []))
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
        if partial is not None and partial.exists():
            partial.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
