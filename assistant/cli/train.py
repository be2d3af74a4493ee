"""`memex train`: the memory's reader learns from your own notes (``reader_training``); the
older training over whole windows of the stream (LoRA + level gates, or every weight with
--full) stays behind `--window`; `memex train --status`."""

from __future__ import annotations

import json
import time

import typer

from assistant.cli.common import fail
from assistant.engine.memory_build import duration_text

# Default steps: a 16K-token step of SmolLM2-135M on a 2-core CPU is ~13 TFLOP of matmuls
# (forward, recomputation, backward) plus attention: several minutes at ~100 GFLOP/s, so 20
# steps is roughly the two hours the issue allows (an estimate; bench/results/train-cpu.txt
# has what a loaded machine measured). A GPU runs 64K-token steps in seconds
# (bench/results/train-cuda.txt).
CPU_STEPS = 20
CUDA_STEPS = 200


def _fmt_ppl(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


# --------------------------------------------------------------------------- status


def _print_status(info: dict) -> None:
    reader = info.get("reader", "none")
    if reader == "trained" and info.get("reader_kind") == "turns":
        start = info.get("started_from")
        typer.echo(f"reader:         trained on your notes, {info['examples_seen']:,} examples "
                   f"(memory up to {info['trained_up_to']:,} tokens, "
                   f"{duration_text(info['wall_s'])}"
                   + (", from the generic reader" if start == "generic" else "") + ")")
        before, after = info.get("probe_accuracy_before"), info.get("probe_accuracy_after")
        if before is not None and after is not None:
            typer.echo(f"probes:         {100 * before:.0f} % → {100 * after:.0f} % of held-out "
                       "turns answered word for word")
    elif reader == "generic":
        typer.echo("reader:         the generic one memex ships (synthetic journals); "
                   "`memex train` teaches it your notes")
    elif reader == "none":
        typer.echo("reader:         none: `memex train` teaches one to read your memory")
    if info["in_progress"]:
        run = info["in_progress"]
        typer.echo(f"window run in progress: step {run['step']}/{run['steps']} after "
                   f"{duration_text(run['seconds'])} (`memex train --window` goes on)")
    if not info["trained"]:
        return
    typer.echo(f"window training: {info['trained_at']} ({info['kind']}"
               + (f", LoRA rank {info['lora_rank']}" if info["lora_rank"] else "") + ")")
    typer.echo(f"model:          {info['model']} (base weights {info['base_weights_hash'][:12]})")
    typer.echo(f"trained on:     {info['train_tokens']:,} of {info['stream_tokens']:,} stream "
               f"tokens (stream {info['stream_sha256'][:12]}), last "
               f"{info['validation_tokens']:,} held out")
    typer.echo(f"steps:          {info['steps']} × {info['seq_len']:,}-token windows, "
               f"{info['recall_windows']} recall examples, {duration_text(info['wall_time_s'])} "
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
        if getattr(p, "examples_per_s", None):
            info = f"loss {p.loss:.3f}  {p.examples_per_s:.2f} examples/s"
        if self.bar is not None:
            if self.task is None:
                self.task = self.bar.add_task("train", total=p.steps, completed=0, info="")
            self.bar.update(self.task, completed=p.step, total=p.steps, info=info)
        elif not self.quiet and (time.monotonic() - self.last_line > 10 or p.step == p.steps):
            eta = f", ETA {duration_text(p.eta_s)}" if p.eta_s is not None else ""
            self.console.print(f"train: step {p.step}/{p.steps}, {info}{eta}")
            self.last_line = time.monotonic()


# --------------------------------------------------------------------------- training


def train_command(
    steps: int | None = typer.Option(
        None, "--steps", help="Examples the reader learns from (default 1,200: about half "
                              "an hour on 2 CPU cores); with --window, optimizer steps "
                              f"(default {CPU_STEPS} on CPU, {CUDA_STEPS} on CUDA)."),
    window: bool = typer.Option(
        False, "--window",
        help="The older training instead: LoRA over whole windows of the stream with "
             "gradients (hours on a CPU; the options below marked --window are its own)."),
    seq_len: int | None = typer.Option(
        None, "--seq-len", help="(--window) Tokens per training window (default 16384 on CPU, 65536 on CUDA)."),
    rank: int = typer.Option(16, "--lora-rank", "--rank", help="(--window) LoRA rank."),
    full: bool = typer.Option(False, "--full", help="(--window) Train every weight instead of LoRA + gates."),
    no_recall: bool = typer.Option(False, "--no-recall",
                                   help="(--window) Next-token training only, no recall examples."),
    recall_ratio: float = typer.Option(0.25, "--recall-ratio",
                                       help="(--window) Share of windows that are recall examples."),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (the reader: 1e-4; "
                                       "--window: peak 2e-4 LoRA, 2e-5 full)."),
    accumulate: int = typer.Option(1, "--accumulate", help="(--window) Windows per optimizer step."),
    checkpoint_every: int | None = typer.Option(
        None, "--checkpoint-every",
        help="(--window) Save a resumable checkpoint every N steps (default 1; 10 with --full, whose "
             "checkpoint holds every weight). Ctrl-C always saves."),
    device: str = typer.Option("auto", "--device", help="(--window) auto, cpu or cuda."),
    dtype: str = typer.Option("auto", "--dtype",
                              help="auto (bf16 where the CPU or GPU computes it natively, "
                                   "else fp32; --window: fp32 on CPU), float32 or bfloat16."),
    resume: bool = typer.Option(True, "--resume/--fresh",
                                help="Go on from an interrupted run, or start over."),
    status: bool = typer.Option(False, "--status", help="Show what the model was trained on."),
    reader: bool = typer.Option(
        False, "--reader", hidden=True,
        help="The reader's training (what `memex train` does; kept for old scripts)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Teach the memory's reader to answer from your notes: turns made from your own
    sentences, read against the built memory, which stays as it is. Incremental (each run
    goes on from the last reader, with the new entries and replay of the old); resumable
    (Ctrl-C saves a checkpoint)."""
    from assistant.config import ConfigError
    from assistant.home import get_home
    from longnet.training import TrainConfig, TrainingError, TrainingInterrupted

    home = get_home()
    if status:
        from assistant.engine.training import train_status

        info = train_status(home)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
        else:
            _print_status(info)
        return
    if not window:
        # the window training's own options mean nothing to the reader: say so
        given = [name for name, value, default in (
            ("--seq-len", seq_len, None), ("--lora-rank", rank, 16), ("--full", full, False),
            ("--no-recall", no_recall, False), ("--recall-ratio", recall_ratio, 0.25),
            ("--accumulate", accumulate, 1), ("--checkpoint-every", checkpoint_every, None),
            ("--device", device, "auto")) if value != default]
        if given:
            fail(f"{', '.join(given)} belong to the training over whole windows: add --window "
                 "(`memex train` alone trains the reader)")
        _train_reader(home, steps, lr, dtype, resume, as_json)
        return
    if steps is None:
        from longnet.model import choose_device

        try:
            on_cuda = choose_device(None if device == "auto" else device).type == "cuda"
        except RuntimeError as error:
            fail(str(error))
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
        fail(str(error))
    if resolved.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            fail("--device cuda: no CUDA device is available here")
    try:
        with _Display(quiet=as_json) as display:
            from assistant.engine.training import run_training

            meta = run_training(home, settings, recall=not no_recall, resume=resume,
                                say=display.say, progress=display)
    except TrainingInterrupted as stop:
        typer.secho(f"\nstopped at step {stop.step}/{stop.steps}: checkpoint saved; run "
                    "`memex train --window` to go on", fg="yellow", err=True)
        raise typer.Exit(130)
    except (TrainingError, ConfigError, ValueError, FileNotFoundError) as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    typer.echo(f"trained {meta['steps']} steps on {meta['stream']['train_tokens']:,} tokens in "
               f"{duration_text(meta['wall_time_s'])}: validation perplexity "
               f"{_fmt_ppl(meta['ppl_before'])} → {_fmt_ppl(meta['ppl_after'])}")
    typer.echo(meta["memory_note"])


def _train_reader(home, steps, lr, dtype: str, resume: bool, as_json: bool) -> None:
    """`memex train`: see ``assistant.engine.reader_training``."""
    from assistant.engine.reader_training import DEFAULT_LR, DEFAULT_STEPS, run_reader_training
    from assistant.engine.results import EngineError
    from longnet.training import TrainingError, TrainingInterrupted

    with _Display(quiet=as_json) as display:
        def progress(p) -> None:  # a reader step shown as a training step
            display(_ReaderStep(p))

        try:
            meta = run_reader_training(home, steps or DEFAULT_STEPS, lr or DEFAULT_LR,
                                       resume=resume, say=display.say, progress=progress,
                                       dtype=dtype)
        except TrainingInterrupted as stop:
            typer.secho(f"\nstopped at example {stop.step}/{stop.steps}: checkpoint saved; run "
                        "`memex train` to go on", fg="yellow", err=True)
            raise typer.Exit(130)
        except (EngineError, TrainingError, ValueError, FileNotFoundError) as error:
            fail(str(error))
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return

    def share(value):
        return "n/a" if value is None else f"{100 * value:.0f} %"

    typer.echo(f"reader trained on {meta['examples_seen']:,} examples in all (memory up to "
               f"{meta['trained_up_to']:,} tokens, {duration_text(meta['wall_s'])}); held-out "
               f"probes answered word for word: {share(meta['probe_accuracy_before'])} before, "
               f"{share(meta['probe_accuracy_after'])} after. The memory is unchanged.")


class _ReaderStep:
    """A ``ReaderProgress`` in the shape ``_Display`` reads."""

    phase = "train"

    def __init__(self, p):
        self.step, self.steps, self.loss, self.eta_s = p.step, p.steps, p.loss, p.eta_s
        self.tokens_per_s = None
        self.examples_per_s = p.examples_per_s


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
