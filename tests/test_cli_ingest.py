"""`memex add | ingest | watch | status | forget | compact | search` through the real CLI."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ingest_helpers import journal_tree, wait_until, write
from typer.testing import CliRunner

from assistant.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def memex(*args, input=None):
    result = runner.invoke(app, [str(a) for a in args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def status_json() -> dict:
    result = memex("status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_add_records_the_source_before_the_tokenizer_loads(home, tmp_path, monkeypatch):
    """A Ctrl-C while `memex add` loads the tokenizer keeps the source it was given; the
    next `memex ingest` reads it."""
    import assistant.cli.ingest as cli_ingest
    import ingest

    tree = journal_tree(tmp_path / "journal")
    loading = cli_ingest._load_tokenizer

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_ingest, "_load_tokenizer", interrupted)
    stopped = runner.invoke(app, ["add", str(tree), "--no-embed"])
    assert stopped.exit_code != 0
    store = ingest.open_store(home)
    try:
        assert [str(source.path) for source in store.sources()] == [str(tree)]
    finally:
        store.close()
    monkeypatch.setattr(cli_ingest, "_load_tokenizer", loading)
    assert memex("ingest", "--no-embed").exit_code == 0
    assert status_json()["documents"] == 7


def test_add_status_search_and_rescan(home, tmp_path):
    tree = journal_tree(tmp_path / "journal")
    write(tree / "broken.pdf", b"not a pdf")
    result = memex("add", tree, "--no-embed")
    assert result.exit_code == 0, result.output
    assert "7 new" in result.stdout and "skipped broken.pdf: not a PDF" in result.stdout
    # it ends with how long the memory build will take (no build measured yet: a typical rate)
    assert "new tokens to read: `memex memory build` takes about" in result.stdout
    assert "the first build measures yours" in result.stdout
    # Piped output: progress comes as plain lines, not bars.
    assert "stream: started" in result.stderr and "\x1b[" not in result.stderr

    info = status_json()
    assert info["documents"] == 7 and info["stream_tokens"] > 0 and info["memory_tokens"] == 0
    assert info["skipped"] == [{"path": "broken.pdf", "root": str(tree),
                                "reason": "not a PDF file (no %PDF header)"}]
    assert info["date_range"] == {"first": "2023-12-30", "last": "2024-04-01"}
    assert info["by_format"] == {"markdown": 4, "text": 1, "org": 1, "html": 1}
    assert info["by_status"] == {"live": 7, "skipped": 1} and info["last_ingest"]
    assert info["embeddings"] == {"done": 0, "missing": info["chunks"]}
    for path in home.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path

    human = memex("status")
    assert "documents" in human.stdout and "broken.pdf: not a PDF" in human.stdout

    found = memex("search", "Lisbon castle", "--json")
    results = json.loads(found.stdout)["results"]
    assert results[0]["path"] == "2024-03-05.md" and results[0]["date"] == "2024-03-05"
    assert set(results[0]) >= {"path", "date", "snippet", "score"}
    assert "Lisbon" in results[0]["snippet"]
    dated = json.loads(memex("search", "snow fireworks", "--json", "--since", "2023-12-31",
                             "--until", "2023-12-31").stdout)["results"]
    assert [r["date"] for r in dated] == ["2023-12-31"]
    for query in ['"', "AND", "title:x", "-", "NEAR(", "a OR", "*"]:
        odd = memex("search", query, "--json")
        assert odd.exit_code == 0 and "results" in json.loads(odd.stdout)
    assert "no matches" in memex("search", "xylophone").stdout
    assert memex("search", "x", "--since", "not a date at all").exit_code == 2

    again = memex("ingest", "--json", "--no-embed")
    report = json.loads(again.stdout)
    assert report["unchanged"] == 8 and report["tokens_appended"] == 0

    assert "already covered" in memex("add", tree / "notes", "--no-embed").stdout
    missing = memex("add", tmp_path / "nope", "--no-embed")
    assert missing.exit_code == 1 and "no such file or folder" in missing.stderr


def test_status_reads_memory_tokens_and_works_on_an_empty_home(home):
    empty = status_json()
    assert empty["documents"] == 0 and empty["skipped"] == [] and empty["date_range"] is None
    (home / "memory").mkdir(mode=0o700)
    (home / "memory" / "memory.json").write_text(json.dumps({"tokens": 1234}))
    assert status_json()["memory_tokens"] == 1234
    result = memex("ingest")
    assert result.exit_code == 1 and "memex add" in result.stderr


def test_a_damaged_database_gives_a_clear_error(home):
    home.mkdir(mode=0o700)
    (home / "memex.db").write_bytes(b"this is not sqlite " * 200)
    result = memex("status")
    assert result.exit_code == 1 and "cannot open" in result.stderr
    assert "Traceback" not in result.output


def test_forget_asks_first_then_removes_and_compact_rewrites(home, tmp_path):
    tree = journal_tree(tmp_path / "journal")
    memex("add", tree, "--no-embed")
    target = tree / "2024-03-05.md"
    rows = home / "memory" / "rows.f16"  # every token's keys and values (a built memory's)
    rows.parent.mkdir(parents=True, exist_ok=True)
    rows.write_bytes(b"\x01" * 64)
    declined = memex("forget", target, input="n\n")
    assert declined.exit_code == 1 and status_json()["documents"] == 7
    assert rows.is_file()
    done = memex("forget", target, "--yes")
    assert done.exit_code == 0 and "forgot 1 document" in done.stdout
    assert not rows.exists()  # the forgotten text's rows went with it
    info = status_json()
    assert info["documents"] == 6 and info["memory_rebuild"] == "text was forgotten"
    assert json.loads(memex("search", "Lisbon", "--json").stdout)["results"] == []
    nowhere = memex("forget", tmp_path / "elsewhere.md", "--yes")
    assert nowhere.exit_code == 1 and "not inside any source" in nowhere.stderr

    rows.write_bytes(b"\x01" * 64)
    compacted = memex("compact")
    assert compacted.exit_code == 0 and "→" in compacted.stdout
    assert not rows.exists()  # its positions are the old stream's
    after = status_json()
    assert after["dead_tokens"] == 0 and after["stream_tokens"] < info["stream_tokens"]
    assert "nothing to compact" in memex("compact").stdout


def test_global_home_option_and_embeddings_in_search(tmp_path):
    tree = journal_tree(tmp_path / "journal")
    other = tmp_path / "other-home"
    added = memex("--home", other, "add", tree)  # embeddings on (the default)
    assert added.exit_code == 0 and "chunks embedded" in added.stdout
    assert (other / "memex.db").is_file()
    info = json.loads(memex("--home", other, "status", "--json").stdout)
    assert info["embeddings"]["missing"] == 0 and info["embeddings"]["done"] > 0
    semantic = json.loads(memex("--home", other, "search", "trip to Portugal", "--json").stdout)
    assert semantic["results"][0]["path"] == "2024-03-05.md"
    words_only = memex("--home", other, "search", "trip to Portugal", "--json", "--no-embed")
    assert json.loads(words_only.stdout)["results"] == []


def test_rich_progress_draws_bars_on_a_terminal():
    from rich.console import Console

    from ingest.progress import RichProgress, progress_for_terminal

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=100)
    progress = progress_for_terminal(console)
    assert isinstance(progress, RichProgress)
    progress.phase("stream", 10, "entries")
    progress.advance(10, tokens=1234)
    progress.close()
    assert "stream (entries)" in buffer.getvalue() and "10/10" in buffer.getvalue()


def test_examples_journal_ingests_cleanly(home):
    examples = REPO / "examples" / "journal"
    if not examples.is_dir() or not any(examples.iterdir()):
        pytest.skip("examples/journal is not there yet")
    result = memex("add", examples, "--no-embed")
    assert result.exit_code == 0, result.output
    info = status_json()
    assert info["documents"] > 0 and info["date_range"] is not None
    assert info["stream_tokens"] > info["documents"]
    assert all(item["reason"] for item in info["skipped"])


@pytest.mark.slow
def test_watch_stops_cleanly_on_ctrl_c(home, tmp_path):
    import ingest

    tree = journal_tree(tmp_path / "journal")
    assert memex("add", tree, "--no-embed").exit_code == 0
    env = {**os.environ, "MEMEX_HOME": str(home)}
    watch = subprocess.Popen([sys.executable, "-m", "assistant.cli", "watch", "--no-embed",
                              "--no-memory", "--debounce", "0.2"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)

    def documents() -> int:
        with ingest.open_store(home) as store:
            return store.status()["documents"]

    try:
        assert watch.stdout.readline().startswith("watching 1 source(s)")
        time.sleep(1.0)  # the first pass and the observer start
        write(tree / "2024-05-01.md", "Written while memex watches.\n")
        assert wait_until(lambda: documents() == 8, timeout=60, interval=0.2)
        watch.send_signal(signal.SIGINT)
        out, err = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    assert watch.returncode == 0, err
    assert "stopped" in out and "Traceback" not in err
    assert "1 new" in out


def test_the_build_estimate_uses_the_last_build_speed(tmp_path):
    from assistant.engine.memory_build import RATE_FILE, memory_behind_text

    (tmp_path / "memory").mkdir()
    (tmp_path / "memory" / "memory.json").write_text(json.dumps({"stream_offset": 50}))
    (tmp_path / RATE_FILE).write_text(json.dumps({"tokens_per_s": 100.0}))
    line = memory_behind_text(tmp_path, 1050, "smollm2-135m-instruct")
    assert line == ("the memory has 1,000 new tokens to read: `memex memory build` takes about "
                    "0m10s (at 100 tokens/s, the last build's speed)")
    assert memory_behind_text(tmp_path, 50, "smollm2-135m-instruct") is None  # up to date
    (tmp_path / RATE_FILE).unlink()
    other = memory_behind_text(tmp_path, 1050, str(tmp_path / "some-model"))
    assert other.endswith("`memex memory build` reads them (no speed measured yet)")
