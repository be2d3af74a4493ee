"""Sequence-parallel dilated attention: weak scaling and bytes gathered per rank.

    python bench/distributed.py                       # CPU: 1, 2, 4 gloo processes
    python bench/distributed.py --quick               # a short smoke run
    python bench/distributed.py --out bench/results/distributed-cpu.txt
    python bench/distributed.py --backend nccl --ranks 1 2 4 8 --dtype bfloat16   # one GPU per rank

Weak scaling (LongNet §3): every rank holds ``--tokens-per-rank`` tokens, so N grows
with the number of ranks; levels are w = 2048·2^i, r = 2^i until w >= N (issue 3's
schedule), 8 query heads, 8 kv heads, head dim 64, causal. Each configuration runs in a
fresh process group on 127.0.0.1 (gloo on CPU, NCCL on GPUs); times are medians over
``--repeats`` of the slowest rank, forward alone and forward + backward. The
single-process ``longnet.dilated_attention`` on the same N is timed in the same run
for comparison (rank 0, while the others wait at a barrier).

Bytes: what the segment exchanges deliver to a rank per level (measured with
``longnet.distributed.record_communication``), and, for N far beyond the processes at
hand, the same figure from the planner that sizes every exchange (the last rank, which
receives the most): constant in N for every level once the level's segment spans
several ranks (about w/r selected rows per kv head and offset).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from longnet import distributed as D
from longnet.distributed.plan import _plan_level
from longnet.attention import dilated_attention
from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

HEADS, KV_HEADS, HEAD_DIM = 8, 8, 64


def schedule(n: int) -> tuple[list[int], list[int]]:
    ws, rs = [2048], [1]
    while ws[-1] < n:
        ws.append(ws[-1] * 2)
        rs.append(rs[-1] * 2)
    return ws, rs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def worker(rank, world, port, backend, n_local, repeats, dtype_name, out_path):
    if backend == "gloo" and D.loopback_interface():
        os.environ["GLOO_SOCKET_IFNAME"] = D.loopback_interface()
    threads = max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=600))
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    dtype = getattr(torch, dtype_name)
    n = n_local * world
    ws, rs = schedule(n)
    layout = D.ShardLayout((n_local,) * world, rank)
    g = torch.Generator().manual_seed(rank)
    q = torch.randn(1, HEADS, n_local, HEAD_DIM, generator=g).to(device, dtype)
    k = torch.randn(1, KV_HEADS, n_local, HEAD_DIM, generator=g).to(device, dtype)
    v = torch.randn(1, KV_HEADS, n_local, HEAD_DIM, generator=g).to(device, dtype)

    def forward():
        with torch.no_grad():
            D.dilated_attention(q, k, v, ws, rs, layout=layout)

    def forward_backward():
        qs, ks, vs = (x.detach().requires_grad_() for x in (q, k, v))
        D.dilated_attention(qs, ks, vs, ws, rs, layout=layout).sum().backward()

    def slowest(fn):
        times = []
        for _ in range(repeats):
            dist.barrier()
            mine = torch.tensor([timed(fn, device)], device=device, dtype=torch.float64)
            dist.all_reduce(mine, op=dist.ReduceOp.MAX)
            times.append(float(mine))
        return statistics.median(times)

    forward()  # warm up plans, kernels and connections
    forward_backward()
    with D.record_communication() as stats:
        forward()
    result = {"fwd_s": slowest(forward), "fwd_bwd_s": slowest(forward_backward),
              "gathered": {str(k): v for k, v in stats["gathered_bytes"].items()}}
    everyone = [None] * world
    dist.all_gather_object(everyone, result["gathered"])
    result["gathered_max"] = {str(level): max(int(e.get(str(level), 0)) for e in everyone)
                              for level in range(len(ws))}
    if rank == 0:  # the single-process function on the whole N, others waiting
        full = [torch.randn(1, h, n, HEAD_DIM, generator=g).to(device, dtype)
                for h in (HEADS, KV_HEADS, KV_HEADS)]
        torch.set_num_threads(os.cpu_count() or 1)
        with torch.no_grad():
            dilated_attention(*full, ws, rs)
            result["single_fwd_s"] = statistics.median(
                timed(lambda: dilated_attention(*full, ws, rs), device) for _ in range(repeats))
        Path(out_path).write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


def run(world, args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        mp.spawn(worker, args=(world, free_port(), args.backend, args.tokens_per_rank,
                               args.repeats, args.dtype, str(out)), nprocs=world, join=True)
        return json.loads(out.read_text())


def planned_bytes(n_local: int, world: int, element_size: int) -> dict[int, int]:
    """Bytes the last rank receives per level (the most of any rank, causal), from the
    planner that sizes the real exchanges."""
    ws, rs = schedule(n_local * world)
    layout = D.ShardLayout((n_local,) * world, world - 1)
    result = {}
    for level, (w, r) in enumerate(zip(ws, rs)):
        plan = _plan_level(layout, level, w, r, HEADS, KV_HEADS, True, None)
        rows = sum(sum(ex.recv_sizes) for ex in plan.exchanges)
        result[level] = rows * 2 * HEAD_DIM * element_size  # k and v
    return result


def machine() -> str:
    cpu = cpu_name()
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


def kib(n: int) -> str:
    return "-" if not n else f"{n / 1024:,.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--tokens-per-rank", type=int, default=8192)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    parser.add_argument("--backend", default="gloo", choices=("gloo", "nccl"))
    parser.add_argument("--quick", action="store_true", help="4096 tokens per rank, 3 repeats")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    if args.quick:
        args.tokens_per_rank, args.repeats = 4096, 3
    element_size = torch.empty(0, dtype=getattr(torch, args.dtype)).element_size()

    lines = []

    def say(text=""):
        print(text, flush=True)
        lines.append(text)

    device_name = "CPU" if args.backend == "gloo" else torch.cuda.get_device_name(0)
    say(f"# Sequence-parallel dilated attention, weak scaling ({machine()}; {device_name})")
    say(f"{args.tokens_per_rank:,} tokens per rank, {HEADS} heads / {KV_HEADS} kv heads, d={HEAD_DIM}, "
        f"{args.dtype}, causal, levels w=2048*2^i r=2^i until w >= N; {args.backend} on 127.0.0.1; "
        f"medians of {args.repeats}, slowest rank.")
    if args.backend == "gloo":
        say(f"Ranks are processes sharing this machine's {os.cpu_count()} cores (each gets "
            "cores/ranks threads): beyond that many ranks they queue for a core, so the time "
            "per rank rises for that reason and not because of the sequence length.")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    say(f"Load average when the run began: {load:.1f} (other work on the machine slows every row alike).")
    say()
    results = {}
    header = (f"{'ranks':>5} {'N':>8} {'fwd ms':>9} {'fwd+bwd ms':>11} {'1-proc fwd ms':>14}  "
              "KiB gathered per rank by level (max over ranks)")
    say(header)
    for world in args.ranks:
        result = run(world, args)
        results[world] = result
        n = world * args.tokens_per_rank
        levels = len(schedule(n)[0])
        gathered = " ".join(f"L{lv}:{kib(result['gathered_max'].get(str(lv), 0))}"
                            for lv in range(levels))
        say(f"{world:>5} {n:>8,} {result['fwd_s'] * 1e3:>9.1f} {result['fwd_bwd_s'] * 1e3:>11.1f} "
            f"{result['single_fwd_s'] * 1e3:>14.1f}  {gathered}")
    if hasattr(os, "getloadavg"):
        say(f"Load average when the run ended: {os.getloadavg()[0]:.1f}.")
    say()
    say("Planned bytes per rank per level (KiB received by the last rank, which receives the "
        f"most), {args.tokens_per_rank:,} tokens per rank, from the planner that sizes every exchange:")
    worlds = [2 ** i for i in range(11)]
    plans = {w: planned_bytes(args.tokens_per_rank, w, element_size) for w in worlds}
    top = max(len(p) for p in plans.values())
    say(f"{'ranks':>6} {'N':>11}  " + " ".join(f"{'L' + str(lv):>6}" for lv in range(top)))
    for world in worlds:
        row = plans[world]
        say(f"{world:>6} {world * args.tokens_per_rank:>11,}  "
            + " ".join(f"{kib(row.get(lv, 0)):>6}" for lv in range(top)))
    for world, result in results.items():  # the measured exchanges are the planned ones
        expected = planned_bytes(args.tokens_per_rank, world, element_size)
        measured = {int(k): v for k, v in result["gathered_max"].items()}
        if any(measured.get(lv, 0) != expected.get(lv, 0) for lv in expected):
            say(f"note: {world} ranks measured {measured}, planned {expected}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
