"""`memex memory status / build / rebuild` over a real store with the tiny random Llama
turned LongNet: the memory reaches the stream, survives Ctrl-C, honours the rebuild flag."""

from __future__ import annotations

import json

from test_engine import journal_home, tiny_model_dir  # noqa: F401  (fixtures)
from typer.testing import CliRunner

from assistant.cli import app

runner = CliRunner()


def invoke(home, *args):
    return runner.invoke(app, ["--home", str(home), *args])


def status(home) -> dict:
    result = invoke(home, "memory", "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_build_brings_memory_up_to_the_stream(journal_home):
    before = status(journal_home)
    assert {"tokens", "stream_tokens", "state_bytes"} <= set(before)
    assert before["tokens"] == 0 and before["stream_tokens"] > 0
    assert before["lag_tokens"] == before["stream_tokens"]
    result = invoke(journal_home, "memory", "build", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tokens"] == summary["stream_tokens"] == before["stream_tokens"]
    after = status(journal_home)
    assert after["tokens"] == after["stream_tokens"] and after["lag_tokens"] == 0
    assert after["state_bytes"] > 0
    # Every token's rows were kept (memory_rows is on by default), one per token.
    rows = after["rows"]
    assert (rows["from_token"], rows["to_token"]) == (0, after["tokens"])
    assert summary["rows_bytes"] == rows["bytes"] and rows["bytes"] % after["tokens"] == 0
    again = json.loads(invoke(journal_home, "memory", "build", "--json").stdout)
    assert again["added_tokens"] == 0


def test_ctrl_c_saves_progress_and_a_rerun_resumes(journal_home, monkeypatch):
    import assistant.engine.memory as engine_memory
    from longnet.memory import Memory

    monkeypatch.setattr(engine_memory, "CATCH_UP_CHUNK", 32)
    real_append = Memory.append
    calls = []

    def interrupted_append(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_append(self, *args, **kwargs)

    monkeypatch.setattr(Memory, "append", interrupted_append)
    result = invoke(journal_home, "memory", "build")
    assert result.exit_code == 130
    assert "progress saved at 64 tokens" in result.output
    assert status(journal_home)["tokens"] == 64
    monkeypatch.setattr(Memory, "append", real_append)
    resumed = json.loads(invoke(journal_home, "memory", "build", "--json").stdout)
    assert resumed["added_tokens"] == resumed["stream_tokens"] - 64
    assert status(journal_home)["lag_tokens"] == 0


def test_rebuild_flag_starts_from_scratch(journal_home):
    import ingest

    assert invoke(journal_home, "memory", "build").exit_code == 0
    store = ingest.open_store(journal_home)
    store.mark_memory_rebuild("forgot notes/biscuit.md")
    store.close()
    assert status(journal_home)["rebuild_needed"] == "forgot notes/biscuit.md"
    result = invoke(journal_home, "memory", "build", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["added_tokens"] == summary["stream_tokens"]  # read again from token 0
    assert status(journal_home)["rebuild_needed"] is None
    rebuilt = json.loads(invoke(journal_home, "memory", "rebuild", "--json").stdout)
    assert rebuilt["added_tokens"] == rebuilt["stream_tokens"]


def test_status_on_an_empty_home(home):
    info = status(home)
    assert info["tokens"] == 0 and info["stream_tokens"] == 0 and info["exists"] is False


def test_build_computes_in_the_dtype_asked_and_saves_16_bits(journal_home):
    """--dtype bfloat16 builds in bfloat16 (saved as it is, 16 bits); answers then read the
    state back as float32; an unknown dtype is a one-line error."""
    import torch

    from assistant.config import load_config
    from assistant.engine import Engine

    bad = invoke(journal_home, "memory", "build", "--dtype", "int3")
    assert bad.exit_code == 1 and "unknown --dtype" in bad.output
    result = invoke(journal_home, "memory", "build", "--json", "--dtype", "bfloat16")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["dtype"] == "bfloat16" and summary["tokens"] == summary["stream_tokens"]
    meta = json.loads((journal_home / "memory" / "memory.json").read_text())
    assert meta["dtype"] == "bfloat16" and meta["stored_dtypes"] == ["bfloat16"]
    rate = json.loads((journal_home / "memory-rate.json").read_text()) \
        if (journal_home / "memory-rate.json").exists() else None
    assert rate is None or rate["dtype"] == "bfloat16"  # (few tokens: no rate kept)
    engine = Engine(journal_home, load_config(journal_home))
    assert engine.load_memory().dtype == torch.float32
    assert engine.load_memory().tokens == summary["tokens"]
