"""Running `memex train` apart from how it is shown: train on the stream of a data home and
save the adapter beside the memory (which stays valid: the adapter only reads a turn's
tokens, issue 18); and what `memex train --status` reports."""

from __future__ import annotations

import time

from assistant.engine.trained import (
    RecallExamples,
    adapter_meta,
    load_base_model,
    train_dir,
)


def train_status(home) -> dict:
    """What `memex train --status --json` prints."""
    import ingest
    from longnet.training import TrainingError, read_checkpoint

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
    # Which reader answers (issue 18): `memex train`'s, else what the older window
    # training learned (read on a turn's tokens only), else the generic one memex ships.
    from assistant.config import load_config
    from assistant.engine.reader_training import reader_dir
    from assistant.engine.trained import generic_reader_meta
    from longnet.reader import read_reader_meta

    reader = read_reader_meta(reader_dir(home))
    generic = generic_reader_meta()
    fits = generic is not None and generic.get("model_id") == load_config(home).model
    kind = ("trained" if reader is not None or (meta is not None and meta.get("kind") == "lora")
            else "generic" if fits else "none")
    info.update({"reader": kind, "examples_seen": None, "trained_up_to": None, "wall_s": None,
                 "generic_available": fits})
    if reader is not None:
        info.update({"reader_kind": "turns", "examples_seen": reader.get("examples_seen"),
                     "trained_up_to": reader.get("trained_up_to"),
                     "wall_s": reader.get("wall_s"),
                     "started_from": reader.get("started_from"),
                     "probe_accuracy_before": reader.get("probe_accuracy_before"),
                     "probe_accuracy_after": reader.get("probe_accuracy_after")})
    elif meta is not None:
        info.update({"reader_kind": "windows", "examples_seen": meta.get("steps"),
                     "trained_up_to": (meta.get("stream") or {}).get("tokens"),
                     "wall_s": meta.get("wall_time_s")})
    elif kind == "generic":
        info.update({"reader_kind": "generic", "examples_seen": 0})
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


def _memory_eta_line(home, stream_tokens: int, meta: dict) -> str:
    """What training means for the memory: nothing to rebuild (the writer is frozen)."""
    return ("the memory stays as it is: what was trained reads a question's and an answer's "
            "tokens only, and the memory is always written by the base weights")


def run_training(home, settings, recall: bool, resume: bool, say=None, progress=None) -> dict:
    """Train on the stream of ``home`` and save the adapter beside the memory; returns
    the adapter's metadata. Raises TrainingInterrupted on Ctrl-C (checkpoint saved)."""
    import ingest
    from assistant.config import load_config
    from assistant.home import model_cache_dir
    from longnet.training import (
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
        # The memory stays valid: what was trained reads a turn's tokens only (issue 18).
        meta["memory_note"] = _memory_eta_line(home, len(stream), meta)
        return meta
    finally:
        store.close()


def _today(config):
    from datetime import date

    return date.fromisoformat(config.today) if config.today else None
