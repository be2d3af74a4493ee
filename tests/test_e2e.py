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
