"""End to end with the real default model, offline: `memex add` a few files of the example
journal → `memex memory build` → `memex ask` (hybrid) with every network socket blocked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from assistant.cli import app

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "journal"
FILES = ("notes/biscuit-comes-home.md", "daily/2023/2023-02-08.md", "notes/new-bike.md")


@pytest.mark.real_model
def test_add_build_ask_offline(tmp_path, home, no_network):
    journal = tmp_path / "journal"
    for rel in FILES:
        (journal / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / rel, journal / rel)
    runner = CliRunner()

    def memex(*args):
        result = runner.invoke(app, ["--home", str(home), *args])
        assert result.exit_code == 0, result.output
        return result

    memex("add", str(journal))
    memex("config", "set", "max_new_tokens", "24")
    built = json.loads(memex("memory", "build", "--json").stdout)
    assert built["tokens"] == built["stream_tokens"] > 0
    answer = json.loads(memex("ask", "How much was Biscuit's adoption fee?", "--json").stdout)
    assert "185" in answer["answer"]
    assert answer["sources"][0]["path"] == "notes/biscuit-comes-home.md"
    assert answer["sources"][0]["date"] == "2023-03-11"
    assert answer["timings"]["ttft_s"] > 0
    assert no_network == []  # nothing even tried to reach the network
    assert (home.stat().st_mode & 0o777) == 0o700
    for path in home.iterdir():
        if path.is_file():
            assert path.stat().st_mode & 0o077 == 0, path

    # The shipped generic reader reads memory answers of the bundled model from the first
    # minute; `memex train` goes on from it and leaves the memory's files as they were.
    status = json.loads(memex("train", "--status", "--json").stdout)
    assert status["reader"] == "generic" and status["generic_available"] is True
    recalled = json.loads(memex("ask", "How much was Biscuit's adoption fee?", "--mode",
                                "memory", "--json").stdout)
    assert recalled["memory"]["reader"] == "generic"
    assert recalled["memory"]["window"] == "recalled"
    assert recalled["memory"]["far_levels"] == "shut"
    memory_dir = home / "memory"
    before = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}
    trained = json.loads(memex("train", "--steps", "2", "--json").stdout)
    assert trained["started_from"] == "generic" and trained["examples_seen"] == 2
    after = {p.name: p.read_bytes() for p in sorted(memory_dir.iterdir()) if p.is_file()}
    assert after == before
    status = json.loads(memex("train", "--status", "--json").stdout)
    assert status["reader"] == "trained" and status["examples_seen"] == 2
    assert status["trained_up_to"] == built["tokens"] and status["wall_s"] > 0
    assert no_network == []
