"""`memex memory build --distributed`: the LongNet memory built by several processes.

Run under torchrun, one process per GPU (NCCL) or per group of CPU cores (gloo)::

    torchrun --nproc-per-node 4 -m assistant.cli.memory_distributed [--fresh] [--json]
    # several machines: the same on each, with torchrun's rendezvous flags, e.g.
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 --rdzv-id memex -m assistant.cli.memory_distributed

Rank 0 owns the data home: it reads the config and the token stream, makes the same
rebuild decisions as ``memex memory build`` (forgotten or compacted text, ``--fresh``),
loads or starts the memory, and saves it to ``<home>/memory/`` exactly as the single
process does (every minute, on Ctrl-C and at the end). The other ranks only need the
model (each resolves it from its own model cache; all must hold identical weights,
which is checked). The stream is read in rounds of ``tokens_per_rank × world size``
tokens; each round is split across the ranks and read with
``longnet.distributed.memory_append``, which leaves every rank with the state one
process reading the same tokens would hold. A round's activations are bounded by
``tokens_per_rank``, so any history fits. With the default configuration of a
pretrained model (level 0 a sliding window of its trained context, W tokens) each rank
also reads the previous W - 1 rows from the memory's window and the earlier ranks, and
every rank ends the round holding the same window rows (``Memory.local``); the stream's
first tokens, kept visible as attention sinks (``attention_sinks``, 4 by default), are
read from the memory (``Memory.sinks``, written by the first round's first ranks) or
exchanged from the ranks holding them.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

SAVE_EVERY_S = 60.0


class DistributedBuildError(RuntimeError):
    """The build could not start or go on (on every rank, with rank 0's reason)."""


def _settings(config, model_name):
    from assistant.config import model_overrides

    return {"model": model_name or config.model, "overrides": model_overrides(config),
            "device": config.device}


def _device(requested: str):
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    if requested == "cuda":
        raise DistributedBuildError("the config asks for cuda but the process group runs gloo "
                                    "(no GPU here); set `memex config set device cpu`")
    return torch.device("cpu")


def _share(value, src: int = 0):
    """Rank ``src``'s picklable ``value`` on every rank."""
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src)
    return box[0]


def _fail_together(problem: str | None) -> None:
    """Raise on every rank when rank 0 hit ``problem`` (others would wait forever)."""
    problem = _share(problem)
    if problem:
        raise DistributedBuildError(problem)


def _progress(enabled: bool, total: int, start: int):
    """A rich progress bar on a terminal, else a line every 10 s; returns (update, close)."""
    from rich.console import Console

    err = Console(stderr=True)
    began = time.perf_counter()
    if enabled and err.is_terminal:
        from rich.progress import (
            BarColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(TextColumn("[bold]memory[/]"), BarColumn(), TaskProgressColumn(),
                       TextColumn("{task.completed:,.0f}/{task.total:,.0f} tokens"),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn(), console=err)
        task = bar.add_task("memory", total=total, completed=start, rate="")
        bar.start()

        def update(position):
            elapsed = time.perf_counter() - began
            rate = (position - start) / elapsed if elapsed > 0 else 0
            bar.update(task, completed=position, rate=f"{rate:,.0f} tok/s")

        return update, bar.stop
    last = [0.0]

    def update(position):
        if enabled and time.perf_counter() - last[0] > 10:
            err.print(f"memory: {position:,}/{total:,} tokens")
            last[0] = time.perf_counter()

    return update, lambda: None


def build_memory_distributed(home: Path | str | None = None, model_name: str | None = None, *,
                             fresh: bool = False, tokens_per_rank: int = 8192,
                             as_json: bool = False, backend: str | None = None) -> dict:
    """Bring ``<home>/memory`` up to the stream with every rank of the torchrun job.

    Call it on every rank (it joins the process group torchrun describes, or runs as a
    group of one). Returns on every rank the summary ``memex memory build --json``
    prints (``tokens, stream_tokens, added_tokens, state_bytes, seconds,
    tokens_per_s``) plus ``ranks``. Raises ``DistributedBuildError`` on every rank if
    rank 0 cannot start (unreadable config, a memory made by another model, ...)."""
    import torch.distributed as dist

    from assistant.engine.memory_build import start_memory
    from assistant.home import get_home, model_cache_dir, set_home
    from longnet import LongNetLM
    from longnet.distributed import (
        broadcast_memory,
        broadcast_tokens,
        init_distributed,
        memory_append,
    )

    owns_group = not dist.is_initialized()
    rank, world = init_distributed(backend)
    try:
        home = set_home(home) if home is not None else get_home()
        engine = problem = settings = None
        if rank == 0:
            try:
                from assistant.config import load_config
                from assistant.engine import Engine

                engine = Engine(home, load_config(home))
                if model_name:
                    engine.config.model = model_name
                settings = _settings(engine.config, model_name)
                settings["rebuild"] = engine.memory_needs_rebuild()
                settings["stream_tokens"] = engine.stream_tokens()
            except Exception as exc:  # noqa: BLE001 -- any failure must reach every rank
                problem = f"rank 0 could not open {home}: {exc}"
        _fail_together(problem)
        settings = _share(settings)

        device = _device(settings["device"])
        problem = None
        try:
            model = LongNetLM.from_pretrained(settings["model"], cache_dir=model_cache_dir(home),
                                              device=device, **settings["overrides"])
            # The memory is written by the base weights only: `memex train`'s reader acts
            # on a turn's tokens, never on the history (issue 18).
        except Exception as exc:  # noqa: BLE001 -- any failure must reach every rank
            problem = f"rank {rank} could not load model {settings['model']!r}: {exc}"
        problems = [None] * world
        dist.all_gather_object(problems, problem)
        if any(problems):
            raise DistributedBuildError("; ".join(p for p in problems if p))
        hashes = [None] * world
        dist.all_gather_object(hashes, model.weights_hash)
        if len(set(hashes)) != 1:
            raise DistributedBuildError(
                f"the ranks hold different weights for {settings['model']!r} "
                f"({sorted({h[:12] for h in hashes})}): install the same model everywhere")

        memory = None
        if rank == 0:
            engine._longnet = model
            reason = settings["rebuild"]
            try:
                memory = start_memory(
                    engine, fresh, reason,
                    say=None if as_json else (lambda text: print(text, file=sys.stderr)))
            except Exception as exc:  # noqa: BLE001 -- another model or config, or damaged
                problem = f"{exc}\nrun `memex memory rebuild` to start it again"
        _fail_together(problem)
        if rank != 0:
            memory = model.memory()
        broadcast_memory(memory)

        total = settings["stream_tokens"]
        start_offset = memory.stream_offset
        started = time.perf_counter()
        update, close = _progress(rank == 0 and not as_json, total, start_offset)
        last_save = time.monotonic()
        round_tokens = max(1, tokens_per_rank) * world
        try:
            while memory.stream_offset < total:
                begin = memory.stream_offset
                end = min(total, begin + round_tokens)
                ids = engine.store.stream.read(begin, end) if rank == 0 else None
                ids = broadcast_tokens(ids, device=device)
                memory_append(memory, ids, stream_offset=end)
                if rank == 0:
                    update(end)
                    if time.monotonic() - last_save > SAVE_EVERY_S:  # a kill loses little
                        engine.save_memory(memory)
                        last_save = time.monotonic()
        finally:
            close()
            if rank == 0:  # Ctrl-C keeps every round read so far
                engine.save_memory(memory)
        elapsed = time.perf_counter() - started
        added = memory.stream_offset - start_offset
        summary = {"tokens": memory.tokens, "stream_tokens": total, "added_tokens": added,
                   "state_bytes": memory.nbytes, "seconds": round(elapsed, 2),
                   "tokens_per_s": round(added / elapsed, 1) if elapsed > 0 and added else None,
                   "ranks": world}
        if rank == 0:
            engine.close()
        return summary
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _unlocked(home) -> bool:
    """Rank 0 reads the data home: an encrypted one is unlocked with MEMEX_PASSPHRASE (a
    torchrun job has no prompt). False, with the reason said, when it cannot be."""
    import vault
    from assistant.home import ensure_home
    from vault.convert import recover

    home = ensure_home(home)
    recover(home)
    if not vault.is_encrypted(home):
        return True
    passphrase = os.environ.get("MEMEX_PASSPHRASE")
    if not passphrase:
        print(f"error: {home} is encrypted: set MEMEX_PASSPHRASE for the job", file=sys.stderr)
        return False
    try:
        vault.remember(home, vault.unlock(home, passphrase))
    except vault.VaultError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m assistant.cli.memory_distributed [--home DIR] [--fresh] [--json]``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m assistant.cli.memory_distributed",
        description="Build the LongNet memory of the stream with every rank of a torchrun job.")
    parser.add_argument("--home", default=os.environ.get("MEMEX_HOME"),
                        help="data home (default: MEMEX_HOME, else ~/.local/share/memex)")
    parser.add_argument("--model", default=None, help="model name or folder (default: config)")
    parser.add_argument("--fresh", action="store_true", help="throw the memory away and read the "
                        "whole stream again (memex memory rebuild)")
    parser.add_argument("--tokens-per-rank", type=int, default=8192,
                        help="tokens each rank reads per round (bounds its memory use)")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                        help="default: nccl with CUDA, else gloo")
    parser.add_argument("--json", action="store_true", help="print a JSON summary (rank 0)")
    args = parser.parse_args(argv)
    if int(os.environ.get("RANK", "0")) == 0 and not _unlocked(args.home):
        return 2
    try:
        summary = build_memory_distributed(args.home, args.model, fresh=args.fresh,
                                           tokens_per_rank=args.tokens_per_rank,
                                           as_json=args.json, backend=args.backend)
    except DistributedBuildError as exc:
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        if int(os.environ.get("RANK", "0")) == 0:
            print("\nstopped: progress saved; run it again to go on", file=sys.stderr)
        return 130
    if int(os.environ.get("RANK", "0")) == 0:
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print(f"memory: {summary['tokens']:,} of {summary['stream_tokens']:,} stream tokens "
                  f"(+{summary['added_tokens']:,} with {summary['ranks']} ranks), "
                  f"state {summary['state_bytes']:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
