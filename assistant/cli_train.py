"""`memex train`: fine-tune the LongNet model on your own token stream (LoRA + level gates,
or every weight with --full), with the recall curriculum; `memex train --status`."""

from __future__ import annotations

import json
import time

import typer

# Default steps: a 16K-token step of SmolLM2-135M on a 2-core CPU is ~13 TFLOP of matmuls
# (forward, recomputation, backward) plus attention: several minutes at ~100 GFLOP/s, so 20
# steps is roughly the two hours the issue allows (an estimate; bench/results/train-cpu.txt
# has what a loaded machine measured). A GPU runs 64K-token steps in seconds
# (bench/results/train-cuda.txt).
CPU_STEPS = 20
CUDA_STEPS = 200


def _fail(message: str, code: int = 1):
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _fmt_ppl(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


# --------------------------------------------------------------------------- status


def train_status(home) -> dict:
    """What `memex train --status --json` prints."""
    import ingest
    from assistant.trained import adapter_meta, train_dir
    from longnet.train import TrainingError, read_checkpoint

    meta = adapter_meta(home)
    info = {"trained": meta is not None, "path": str(train_dir(home)), "in_progress": None}
    try:
        checkpoint = read_checkpoint(train_dir(home))
    except TrainingError as error:
        checkpoint, info["checkpoint_error"] = None, str(error)
    if checkpoint is not None and not checkpoint["state"].get("done"):
        info["in_progress"] = {"step": checkpoint["state"]["step"],
                               "steps": checkpoint["config"]["steps"],
                               "seconds": round(checkpoint["state"]["seconds"], 1),
                               "ppl_before": checkpoint["state"]["ppl_before"]}
    stream_now = None
    if (home / "memex.db").exists():
        store = ingest.open_store(home)
        try:
            stream_now = len(store.stream)
        finally:
            store.close()
    info["stream_tokens_now"] = stream_now
    if meta is None:
        return info
    stream = meta.get("stream", {})
    info.update({
        "trained_at": meta.get("trained_at"), "model": meta.get("model_id"),
        "kind": meta.get("kind"), "lora_rank": (meta.get("lora") or {}).get("rank"),
        "steps": meta.get("steps"), "seq_len": meta.get("settings", {}).get("seq_len"),
        "recall_ratio": meta.get("recall_ratio"), "recall_windows": meta.get("recall_windows"),
        "stream_tokens": stream.get("tokens"), "train_tokens": stream.get("train_tokens"),
        "validation_tokens": stream.get("validation_tokens"),
        "stream_sha256": stream.get("sha256"), "tokens_seen": meta.get("tokens_seen"),
        "wall_time_s": meta.get("wall_time_s"), "ppl_before": meta.get("ppl_before"),
        "ppl_after": meta.get("ppl_after"), "device": meta.get("device"),
        "train_tokens_per_s": meta.get("train_tokens_per_s"),
        "base_weights_hash": meta.get("base_weights_hash"),
        "adapter_sha256": meta.get("adapter_sha256"),
        "new_tokens_since": (max(0, stream_now - stream.get("tokens", 0))
                             if stream_now is not None else None),
    })
    return info


def _print_status(info: dict) -> None:
    if info["in_progress"]:
        run = info["in_progress"]
        typer.echo(f"run in progress: step {run['step']}/{run['steps']} after "
                   f"{_duration(run['seconds'])} (`memex train` goes on)")
    if not info["trained"]:
        typer.echo("not trained yet: `memex train` fine-tunes the model on your notes")
        return
    typer.echo(f"trained:        {info['trained_at']} ({info['kind']}"
               + (f", LoRA rank {info['lora_rank']}" if info["lora_rank"] else "") + ")")
    typer.echo(f"model:          {info['model']} (base weights {info['base_weights_hash'][:12]})")
    typer.echo(f"trained on:     {info['train_tokens']:,} of {info['stream_tokens']:,} stream "
               f"tokens (stream {info['stream_sha256'][:12]}), last "
               f"{info['validation_tokens']:,} held out")
    typer.echo(f"steps:          {info['steps']} × {info['seq_len']:,}-token windows, "
               f"{info['recall_windows']} recall examples, {_duration(info['wall_time_s'])} "
               f"on {info['device']}")
    typer.echo(f"perplexity:     {_fmt_ppl(info['ppl_before'])} before → "
               f"{_fmt_ppl(info['ppl_after'])} after (held-out tail)")
    if info.get("new_tokens_since"):
        typer.echo(f"since then:     {info['new_tokens_since']:,} new stream tokens")


# --------------------------------------------------------------------------- progress


class _Display:
    """A rich progress bar (loss, tokens/s, ETA) on a terminal; a line now and then
    elsewhere; nothing with --json."""

    def __init__(self, quiet: bool):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.quiet = quiet
        self.bar = None
        self.task = None
        self.last_line = 0.0

    def __enter__(self):
        if self.console.is_terminal and not self.quiet:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(),
                                MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.console)
            self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def say(self, message: str) -> None:
        if not self.quiet:
            self.console.print(message)

    def __call__(self, p) -> None:
        if p.phase in ("validate-before", "validate-after"):
            what = "before" if p.phase == "validate-before" else "after"
            self.say(f"measuring validation perplexity ({what} training) …")
            return
        if p.phase != "train":
            return
        info = (f"loss {p.loss:.3f}  {p.tokens_per_s:,.0f} tok/s" if p.tokens_per_s
                else f"loss {p.loss:.3f}")
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("train", total=p.steps, completed=0, info="")
            self.bar.update(self.task, completed=p.step, total=p.steps, info=info)
        elif not self.quiet and (time.monotonic() - self.last_line > 10 or p.step == p.steps):
            eta = f", ETA {_duration(p.eta_s)}" if p.eta_s is not None else ""
            self.console.print(f"train: step {p.step}/{p.steps}, {info}{eta}")
            self.last_line = time.monotonic()


# --------------------------------------------------------------------------- training


def _memory_eta_line(home, stream_tokens: int, meta: dict) -> str:
    from assistant.cli_memory import estimated_build_seconds

    seconds, source = estimated_build_seconds(home, stream_tokens,
                                              fallback_rate=meta.get("forward_tokens_per_s"))
    when = f"about {_duration(seconds)} ({source})" if seconds is not None else "time unknown"
    return (f"the memory must be rebuilt for the trained model: `memex memory build` reads "
            f"{stream_tokens:,} tokens again, {when}")


def run_training(home, settings, recall: bool, resume: bool, say=None, progress=None) -> dict:
    """Train on the stream of ``home`` and save the adapter beside the memory; returns
    the adapter's metadata. Raises TrainingInterrupted on Ctrl-C (checkpoint saved)."""
    import ingest
    from assistant.config import load_config
    from assistant.home import model_cache_dir
    from assistant.trained import REBUILD_REASON, RecallExamples, load_base_model, train_dir
    from longnet.train import (
        CHECKPOINT_FILE,
        TrainConfig,
        holdout_tokens,
        read_checkpoint,
        save_adapter,
        train,
    )
    from longnet.weights import load_tokenizer

    say = say or (lambda _m: None)
    config = load_config(home)
    folder = train_dir(home)
    checkpoint = read_checkpoint(folder) if resume else None
    if not resume or (checkpoint is not None and checkpoint["state"].get("done")):
        (folder / CHECKPOINT_FILE).unlink(missing_ok=True)  # a finished run: train anew
        checkpoint = None
    store = ingest.open_store(home)
    try:
        stream = store.stream
        total = len(stream)
        if total == 0:
            raise ValueError("nothing ingested yet: add a folder and run `memex ingest` first")
        if checkpoint is not None:
            # Resume the run as it was started: its settings, and the data it started
            # with even if notes were added since.
            total = min(total, int(checkpoint["fingerprint"]["stream_tokens"]))
            settings = TrainConfig.from_dict({**checkpoint["config"], "device": settings.device})
            recall = bool(checkpoint["fingerprint"].get("recall"))
            say(f"resuming at step {checkpoint['state']['step']}/{settings.steps} with that "
                "run's settings (`memex train --fresh` starts over)")
        tokens = stream.read(0, total)
        tokenizer = load_tokenizer(config.model, model_cache_dir())
        if stream.tokenizer_hash:
            from ingest.stream import tokenizer_identity

            if tokenizer_identity(tokenizer)[1] != stream.tokenizer_hash:
                raise ValueError("the stream was made with another tokenizer than the model's")
        model = load_base_model(config, settings.device)
        source = None
        if recall:
            source = RecallExamples(store, tokenizer, total - holdout_tokens(total, settings),
                                    today=_today(config))
            say(f"recall curriculum: {settings.recall_ratio:.0%} of windows "
                f"({len(source):,} entries to draw from, 1 in 4 a passkey)")
        result = train(model, tokens, settings, folder, recall=source, resume=resume,
                       progress=progress)
        losses = result.losses
        meta = {
            "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model_id": config.model, "base_weights_hash": result.base_weights_hash,
            "model_config": model.config.to_dict(),
            "stream": {"tokens": total, "train_tokens": result.train_tokens,
                       "validation_tokens": result.validation_tokens,
                       "sha256": result.stream_sha256, "stream_id": stream.stream_id},
            "settings": {k: v for k, v in vars(result.config).items()},
            "steps": result.steps, "tokens_seen": result.tokens_seen,
            "recall_ratio": result.config.recall_ratio if source is not None else 0.0,
            "recall_windows": result.recall_windows, "wall_time_s": result.seconds,
            "ppl_before": result.ppl_before, "ppl_after": result.ppl_after,
            "final_loss": round(sum(losses[-5:]) / len(losses[-5:]), 4) if losses else None,
            "device": result.config.device, "dtype": result.config.dtype,
            "train_tokens_per_s": (round(result.tokens_seen / result.seconds, 1)
                                   if result.seconds else None),
            "forward_tokens_per_s": (round(result.forward_tokens_per_s, 1)
                                     if result.forward_tokens_per_s else None),
        }
        save_adapter(model, folder, result.config, meta)
        store.mark_memory_rebuild(REBUILD_REASON)
        meta["memory_note"] = _memory_eta_line(home, len(stream), meta)
        return meta
    finally:
        store.close()


def _today(config):
    from datetime import date

    return date.fromisoformat(config.today) if config.today else None


def train_command(
    steps: int | None = typer.Option(
        None, "--steps", help=f"Optimizer steps (default {CPU_STEPS} on CPU, {CUDA_STEPS} on CUDA)."),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="Tokens per training window (default 16384 on CPU, 65536 on CUDA)."),
    rank: int = typer.Option(16, "--lora-rank", "--rank", help="LoRA rank."),
    full: bool = typer.Option(False, "--full", help="Train every weight instead of LoRA + gates."),
    no_recall: bool = typer.Option(False, "--no-recall",
                                   help="Next-token training only, no recall examples."),
    recall_ratio: float = typer.Option(0.25, "--recall-ratio",
                                       help="Share of windows that are recall examples."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate "
                                       "(default 2e-4 LoRA, 2e-5 full; gates max(0.05, 8/steps))."),
    accumulate: int = typer.Option(1, "--accumulate", help="Windows per optimizer step."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every",
        help="Save a resumable checkpoint every N steps (default 1; 10 with --full, whose "
             "checkpoint holds every weight). Ctrl-C always saves."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype",
                              help="auto (bf16 on CUDA, fp32 on CPU), float32 or bfloat16."),
    resume: bool = typer.Option(True, "--resume/--fresh",
                                help="Go on from an interrupted run, or start over."),
    status: bool = typer.Option(False, "--status", help="Show what the model was trained on."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Fine-tune the model on your own notes so the memory learns to recall them
    (resumable; Ctrl-C saves a checkpoint)."""
    from assistant.config import ConfigError
    from assistant.home import get_home
    from longnet.train import TrainConfig, TrainingError, TrainingInterrupted

    home = get_home()
    if status:
        info = train_status(home)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
        else:
            _print_status(info)
        return
    if steps is None:
        from longnet.model import choose_device

        try:
            on_cuda = choose_device(None if device == "auto" else device).type == "cuda"
        except RuntimeError as error:
            _fail(str(error))
        steps = CUDA_STEPS if on_cuda else CPU_STEPS
    if checkpoint_every is None:
        checkpoint_every = 10 if full else 1
    settings = TrainConfig(steps=steps, seq_len=seq_len, lora_rank=rank, full=full, lr=lr,
                           accumulate=accumulate, checkpoint_every=checkpoint_every,
                           recall_ratio=recall_ratio, device=None if device == "auto" else device,
                           dtype=None if dtype == "auto" else dtype)
    try:
        settings.check()
        resolved = settings.resolve()  # an unknown device or dtype fails here, before loading
    except (TrainingError, RuntimeError, ValueError) as error:
        _fail(str(error))
    if resolved.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            _fail("--device cuda: no CUDA device is available here")
    try:
        with _Display(quiet=as_json) as display:
            meta = run_training(home, settings, recall=not no_recall, resume=resume,
                                say=display.say, progress=display)
    except TrainingInterrupted as stop:
        typer.secho(f"\nstopped at step {stop.step}/{stop.steps}: checkpoint saved; run "
                    "`memex train` to go on", fg="yellow", err=True)
        raise typer.Exit(130)
    except (TrainingError, ConfigError, ValueError, FileNotFoundError) as error:
        _fail(str(error))
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    typer.echo(f"trained {meta['steps']} steps on {meta['stream']['train_tokens']:,} tokens in "
               f"{_duration(meta['wall_time_s'])}: validation perplexity "
               f"{_fmt_ppl(meta['ppl_before'])} → {_fmt_ppl(meta['ppl_after'])}")
    typer.echo(meta["memory_note"])


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
