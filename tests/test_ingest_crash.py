"""Crash safety: ingest, compact and forget killed with SIGKILL at random moments.

After every kill the store must pass SQLite's integrity check and agree with the
stream; after a final uninterrupted run it must equal a store built without any
interruption: nothing lost, nothing twice.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_ingest_helpers import check_consistency, disk_documents, live_documents, write

import ingest

CHILD = r"""
import sys
from tokenizers import Tokenizer
import ingest
import ingest.pipeline.append
import ingest.pipeline.sync

home, root, tokenizer_file, action, target = sys.argv[1:6]
# Small steps, so that a kill lands inside a run of many transactions.
ingest.pipeline.sync.READ_BATCH_FILES = 8
ingest.pipeline.append.STREAM_BATCH_ENTRIES = 10
ingest.pipeline.sync.CHECKPOINT_THREAD_MIN_BYTES = 0  # checkpoints from a second connection too
tokenizer = Tokenizer.from_file(tokenizer_file)
store = ingest.open_store(home, tokenizer)
if not store.sources():
    ingest.add_source(store, root)
print("ready", flush=True)
if action == "ingest":
    ingest.run(store, tokenizer)
elif action == "compact":
    ingest.compact(store)
elif action == "forget":
    ingest.forget(store, target)
print("done", flush=True)
"""

WORDS = ("morning coffee river walk Anna Tomás garden rain tram castle letter dinner friends "
         "work meeting tired happy slept badly read book music market bread sea wind").split()


def make_corpus(root: Path, files: int, seed: int) -> None:
    rng = random.Random(seed)
    for i in range(files):
        day = f"20{20 + i % 5}-{1 + i % 12:02d}-{1 + i % 28:02d}"
        paragraphs = ["\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) + "."
                                for _ in range(3)) for _ in range(rng.randint(3, 8))]
        folder = root / f"{day[:4]}"
        write(folder / f"{day}-{i}.md", f"Entry {i}.\n\n" + "\n\n".join(paragraphs) + "\n")


def run_child(home, root, tokenizer_file, action="ingest", target="", kill_after=None) -> bool:
    """Run one child; kill it ``kill_after`` seconds after it is ready. True if it finished."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(home), str(root), str(tokenizer_file), action,
         str(target)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    try:
        line = child.stdout.readline()
        assert line.strip() == "ready", child.stderr.read()
        if kill_after is None:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            return True
        time.sleep(kill_after)
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate(timeout=30)
        return "done" in out
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def assert_sound(home, tokenizer) -> None:
    with ingest.open_store(home) as store:  # opening recovers: cuts the stream, redoes zeroing
        check_consistency(store, tokenizer)


def entries_by_path(home) -> list[tuple]:
    with ingest.open_store(home) as store:
        return sorted(store.db.execute(
            "SELECT d.path, e.date, e.ordinal, (SELECT group_concat(text, '') FROM (SELECT text "
            "FROM chunks WHERE entry_id = e.id ORDER BY ordinal)) FROM entries e "
            "JOIN documents d ON d.id = e.document_id WHERE e.status = 'live'").fetchall())


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_nothing_and_doubles_nothing(tmp_path, tokenizer,
                                                                       model_dir):
    rng = random.Random(1234)
    tokenizer_file = model_dir / "tokenizer.json"
    root = tmp_path / "journal"
    home = tmp_path / "home"
    make_corpus(root, 200, seed=1)

    for delay in (0.05, 0.3, 0.6):  # first build, killed again and again
        run_child(home, root, tokenizer_file, kill_after=delay * rng.uniform(0.8, 1.2))
        assert_sound(home, tokenizer)
    run_child(home, root, tokenizer_file)
    assert_sound(home, tokenizer)

    # Edits, deletes, moves and new files, then more kills (compaction among them).
    for i in range(0, 200, 10):
        path = next((root / f"20{20 + i % 5}").glob(f"*-{i}.md"))
        path.write_text(path.read_text() + "\nAn edit made later.\n")
    for i in range(5, 200, 15):
        next((root / f"20{20 + i % 5}").glob(f"*-{i}.md")).unlink()
    shutil.move(root / "2023", root / "moved-2023")
    make_corpus(root / "new", 30, seed=2)
    for action in ("ingest", "compact", "ingest", "compact"):
        run_child(home, root, tokenizer_file, action, kill_after=rng.uniform(0.02, 0.25))
        assert_sound(home, tokenizer)
    run_child(home, root, tokenizer_file)
    run_child(home, root, tokenizer_file, "compact")
    assert_sound(home, tokenizer)

    # A forget killed part way: once the store is opened again no byte of it is left.
    marker = "Zzqvcrashmarker"
    secret = write(root / "secret" / "2024-01-01.md", f"The word {marker} must go.\n")
    run_child(home, root, tokenizer_file)
    for _ in range(2):
        run_child(home, root, tokenizer_file, "forget", secret, kill_after=rng.uniform(0, 0.3))
        assert_sound(home, tokenizer)
    with ingest.open_store(home) as store:
        if store.db.execute("SELECT count(*) FROM documents WHERE path LIKE 'secret/%'"
                            ).fetchone()[0]:
            ingest.forget(store, secret)
    for path in home.rglob("*"):
        if path.is_file():
            assert marker.encode() not in path.read_bytes(), path
    secret.unlink()

    # The result equals a store that was never interrupted.
    clean = tmp_path / "clean-home"
    run_child(clean, root, tokenizer_file)
    run_child(home, root, tokenizer_file)
    with ingest.open_store(home) as store:
        assert live_documents(store) == disk_documents(root)
        assert store.db.execute("SELECT count(*) FROM entries WHERE status = 'pending'"
                                ).fetchone()[0] == 0
    assert entries_by_path(home) == entries_by_path(clean)
