"""Building the LongNet memory from the stream, apart from how it is shown: where a build
starts (the saved memory, or a fresh one after forget/compact), the speed of the last
build and the ETA of the next, and what `memex memory status` reports. Shared by the
single-process build, the distributed one and `memex train`."""

from __future__ import annotations

import shutil
import time

import vault


def memory_status_dict(engine) -> dict:
    info = engine.memory_info()
    stream = engine.stream_tokens()
    meta = {}
    meta_path = engine.memory_dir / "memory.json"
    if meta_path.is_file():
        try:
            meta = vault.files_for(meta_path).read_json(meta_path)
        except (OSError, ValueError, vault.VaultError):
            meta = {}
    config = meta.get("config") or {}
    offset = int(meta.get("stream_offset", info["tokens"]) or 0)
    return {
        "tokens": info["tokens"],
        "stream_tokens": stream,
        "state_bytes": info["state_bytes"],
        "lag_tokens": max(0, stream - offset),
        "rebuild_needed": engine.memory_needs_rebuild(),
        "exists": info["exists"],
        "path": info["path"],
        "model": meta.get("model_id"),
        "levels": len(config.get("segment_lengths", [])) or None,
        "position_mode": config.get("position_mode"),
        "dtype": meta.get("dtype"),
        "rows": _rows_status(engine.memory_dir, meta),
    }


def _rows_status(memory_dir, meta: dict) -> dict | None:
    """The row store a saved memory records (``Memory.keep_rows``): tokens covered, bytes."""
    rows = meta.get("rows")
    if not rows:
        return None
    path = memory_dir / rows.get("file", "")
    if not path.is_file():
        return None
    return {"from_token": rows.get("start"), "to_token": rows.get("end"),
            "bytes": path.stat().st_size}


def drop_memory_rows(home) -> bool:
    """Delete the memory's row file (every token's keys and values, which could be read
    back into words): after forget, before anything else; after compact, whose new stream
    positions no longer match it. The next build writes it again. True if one was there."""
    from pathlib import Path

    from longnet.memory import ROWS_FILE

    path = Path(home) / "memory" / ROWS_FILE
    if not path.exists():
        return False
    path.unlink()
    return True


def build_dtype(engine, requested: str | None = None):
    """The dtype a memory build computes in: ``requested`` or the ``build_dtype`` setting;
    "auto" is bfloat16 where the device computes it natively (AVX512-BF16 or AMX on a
    CPU, detected at run time; a GPU), else float32. A bfloat16 build on this project's
    2-core EPYC reads 1.3–1.7x the tokens per second of float32 (bench/memory.py
    --precision); on an AVX2-only CPU bfloat16 is emulated and slower, so auto keeps
    float32 there."""
    import torch

    from longnet.device import choose_dtype, fast_dtype

    name = requested or engine.config.build_dtype
    if name in (None, "auto"):
        return fast_dtype(torch.device(engine.device))
    return choose_dtype(name, engine.device)


def start_memory(engine, fresh: bool, reason: str | None, say=None):
    """The memory a build starts from: the saved one, or an empty one when asked
    (``fresh``) or when the store says the old state must go (``reason``: forgotten or
    compacted text). Shared by the single-process and the distributed build."""
    if not (fresh or reason):
        return engine.load_memory()
    if reason and say is not None:
        say(f"rebuilding the memory from scratch: {reason}")
    # The old state may hold forgotten text: it goes before anything else happens.
    shutil.rmtree(engine.memory_dir, ignore_errors=True)
    engine._memory = None
    memory = engine.load_memory()
    engine.save_memory(memory)
    if reason:
        engine.store.clear_memory_rebuild()
    return memory


RATE_FILE = "memory-rate.json"  # in the data home: how fast the last build read the stream


def record_build_rate(home, tokens: int, seconds: float, device: str | None = None,
                      dtype: str | None = None) -> None:
    """Remember the last build's speed, for the next build's ETA (a few tokens say little)."""
    if tokens < 2048 or seconds <= 1:
        return
    path = home / RATE_FILE
    try:
        vault.files_for(path).write_json(path, {
            "tokens_per_s": round(tokens / seconds, 1), "tokens": tokens, "device": device,
            "dtype": dtype, "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, indent=None)
    except (OSError, vault.VaultError):  # only an estimate: never a reason to fail a build
        pass


def estimated_build_seconds(home, tokens: int,
                            fallback_rate: float | None = None) -> tuple[float | None, str]:
    """Seconds to read ``tokens`` into the memory and where the rate comes from: the last
    build's measured speed, else the forward speed `memex train` measured, else unknown."""
    rate, source = None, ""
    try:
        rate = float(vault.files_for(home / RATE_FILE).read_json(home / RATE_FILE)["tokens_per_s"])
        source = f"at {rate:,.0f} tokens/s, the last build's speed"
    except (OSError, ValueError, KeyError, TypeError, vault.VaultError):
        pass
    if not rate:
        if fallback_rate is None:
            from assistant.engine.trained import adapter_meta

            fallback_rate = (adapter_meta(home) or {}).get("forward_tokens_per_s")
        if fallback_rate:
            rate = float(fallback_rate)
            source = f"at {rate:,.0f} tokens/s, the forward speed measured by `memex train`"
    if not rate:
        return None, "no speed measured yet"
    return tokens / rate, source


# What a first build reads with the bundled model on a 2-core CPU, before this machine has
# measured its own (bench/results: ~112–145 tokens/s on this project's AMD EPYC, rows kept).
TYPICAL_CPU_RATE = 120.0


def memory_behind_text(home, stream_tokens: int, model: str) -> str | None:
    """One line for the end of `memex add`: how many tokens the memory has to read and
    about how long `memex memory build` will take (None when it is up to date)."""
    from longnet.weights import DEFAULT_MODEL

    offset = 0
    meta_path = home / "memory" / "memory.json"
    try:
        offset = int(vault.files_for(meta_path).read_json(meta_path).get("stream_offset") or 0)
    except (OSError, ValueError, TypeError, vault.VaultError):
        pass
    behind = max(0, stream_tokens - offset)
    if not behind:
        return None
    seconds, source = estimated_build_seconds(home, behind)
    if seconds is None and model in (DEFAULT_MODEL, "default", "smollm2"):
        seconds = behind / TYPICAL_CPU_RATE
        source = (f"at ~{TYPICAL_CPU_RATE:.0f} tokens/s, a 2-core CPU's speed; the first build "
                  "measures yours")
    if seconds is None:
        return (f"the memory has {behind:,} new tokens to read: `memex memory build` reads "
                f"them ({source})")
    return (f"the memory has {behind:,} new tokens to read: `memex memory build` takes about "
            f"{duration_text(seconds)} ({source})")


def duration_text(seconds: float | None) -> str:
    """``1h05m`` or ``4m09s``; ``?`` when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
