"""Reading, parsing and tokenizing in worker processes (and the word cache's fast path):
the store and the stream must come out exactly as from one process, whatever the
timing, a dead worker, or ids that were never pre-tokenized; workers never outlive a
killed parent."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from test_ingest_helpers import check_consistency, write
from test_ingest_stream_contents import PINNED_STREAM_SHA256, tricky_tree

import ingest
from ingest.pipeline import checkpoint, sync
from ingest.pipeline import workers as pool
from ingest.pipeline.tokens import PreTokens


def stream_digest(store) -> str:
    tokens = np.ascontiguousarray(store.stream.read(), dtype="<u4")
    return hashlib.sha256(tokens.tobytes()).hexdigest()


def rows(store) -> list[tuple]:
    return store.db.execute(
        "SELECT d.path, e.date, e.ordinal, c.ordinal, c.text, c.token_start, c.token_end "
        "FROM chunks c JOIN entries e ON e.id = c.entry_id JOIN documents d "
        "ON d.id = c.document_id ORDER BY c.token_start").fetchall()


def build(tmp_path, name, tokenizer, root, **options):
    store = ingest.open_store(tmp_path / name, tokenizer)
    ingest.add_source(store, root)
    report = ingest.run(store, **options)
    return store, report


def build_tricky_tree_as_pinned(tmp_path, tokenizer, workers: int):
    """Ingest the tricky tree: its stream must be the pinned one, its store consistent."""
    store, report = build(tmp_path, "home", tokenizer, tricky_tree(tmp_path / "journal"),
                          workers=workers)
    assert not report.skipped
    assert stream_digest(store) == PINNED_STREAM_SHA256
    check_consistency(store, tokenizer)
    return store


def test_two_workers_write_the_same_store_and_stream_as_one_process(tmp_path, tokenizer,
                                                                     monkeypatch):
    monkeypatch.setattr(pool, "WORKER_TASK_FILES", 2)  # many tasks, round-robin
    root = tricky_tree(tmp_path / "journal")
    alone, _ = build(tmp_path, "alone", tokenizer, root, workers=0)
    with alone:
        workers, report = build(tmp_path, "workers", tokenizer, root, workers=2)
        with workers:
            assert not report.skipped
            assert stream_digest(workers) == stream_digest(alone) == PINNED_STREAM_SHA256
            assert rows(workers) == rows(alone)
            check_consistency(workers, tokenizer)


def test_entries_left_pending_by_an_earlier_run_are_tokenized_from_their_text(
        tmp_path, tokenizer):
    """No pre-tokenized ids (a run without a tokenizer, as after a crash): the stream
    phase encodes the stored chunk texts and writes the same stream."""
    root = tricky_tree(tmp_path / "journal")
    with ingest.open_store(tmp_path / "home") as store:  # no tokenizer: entries stay pending
        ingest.add_source(store, root)
        ingest.run(store)
        assert store.stream_tokens() == 0
        assert store.db.execute("SELECT count(*) FROM entries WHERE status = 'pending'"
                                ).fetchone()[0] > 0
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        report = ingest.run(store)
        assert report.new == 0 and report.tokens_appended > 0
        assert stream_digest(store) == PINNED_STREAM_SHA256
        check_consistency(store, tokenizer)


def test_pre_tokens_are_found_by_entry_and_kept_in_an_unnamed_file(tmp_path):
    with PreTokens(tmp_path) as pretokens:
        assert pretokens.take(1) is None  # nothing recorded yet
        pretokens.add(5, np.array([7, 8, 9], dtype=np.uint32), np.array([2, 1]),
                      "# 2024-01-02 · j/é.md\n\n", np.array([3, 4], dtype=np.uint32))
        pretokens.add(4, np.array([1], dtype=np.uint32), np.array([1]))  # ids only grow
        pretokens.add(9, np.array([], dtype=np.uint32), np.array([0]))
        ids, per_chunk, header_ids = pretokens.take(5, "# 2024-01-02 · j/é.md\n\n")
        assert ids.tolist() == [7, 8, 9] and per_chunk.tolist() == [2, 1]
        assert header_ids.tolist() == [3, 4]
        # kept for another header (the file moved since): the header is encoded again
        ids, per_chunk, header_ids = pretokens.take(5, "# 2024-01-02 · j/moved.md\n\n")
        assert ids.tolist() == [7, 8, 9] and header_ids is None
        assert pretokens.take(4) is None and pretokens.take(6) is None
        assert pretokens.take(9)[1].tolist() == [0] and pretokens.take(9)[2] is None
        assert not [name for name in os.listdir(tmp_path)]  # the file has no name


def test_a_worker_that_dies_leaves_the_rest_to_this_process(tmp_path, tokenizer,
                                                            monkeypatch):
    monkeypatch.setattr(pool, "WORKER_TASK_FILES", 2)
    start = pool._Workers.__init__

    def start_then_kill_one(self, *args):
        start(self, *args)
        self.processes[1].kill()

    monkeypatch.setattr(pool._Workers, "__init__", start_then_kill_one)
    build_tricky_tree_as_pinned(tmp_path, tokenizer, workers=2).close()


def test_the_word_cache_fast_path_cuts_only_where_a_space_starts_a_pre_token(tokenizer):
    from ingest.stream import tokenizing as stream

    plain = stream._plain_backend(tokenizer)
    encoder = stream._word_cache_encoder(plain)
    assert encoder.keys("It was a good day.") == [("It",), "was", "a", "good", "day."]
    assert encoder.keys("end.\n\nNext day\n") == [("end.",), ("\n\nNext",), "day", ("\n",)]
    assert encoder.keys("a \n\nb") == [("a",), "\n\nb"]  # no cut after a space
    # a space after whitespace may belong to that whitespace: the pre-token split
    for text in ("two  spaces", "line\n indented", "nbsp\u00a0 space", "ideo\u3000 space"):
        assert all(isinstance(key, tuple) for key in encoder.keys(text)), text
    texts = ["a \u00a0 b", "x\u3000 y", "end.  Next", " lead", "trail ", "é ü ", "\t x",
             "word.\n\nNext one", "Ünïcode wörds here", "\u2009 thin", "x\u0301 y"]
    expected = [enc.ids for enc in plain.encode_batch(texts, add_special_tokens=False)]
    flat, lengths = stream.encode_flat(tokenizer, texts)
    assert flat.tolist() == [i for ids in expected for i in ids]
    assert lengths.tolist() == [len(ids) for ids in expected]


WORKER_CHILD = r"""
import sys
from tokenizers import Tokenizer
import ingest, ingest.pipeline.workers
home, root, tokenizer_file = sys.argv[1:4]
ingest.pipeline.workers.WORKER_TASK_FILES = 1
store = ingest.open_store(home, Tokenizer.from_file(tokenizer_file))
ingest.add_source(store, root)
ingest.run(store, workers=2)
print("done", flush=True)
"""


@pytest.mark.slow
def test_workers_die_with_a_sigkilled_parent_and_a_rerun_finishes(tmp_path, tokenizer,
                                                                  model_dir):
    psutil = pytest.importorskip("psutil")
    root = tmp_path / "journal"
    for i in range(300):
        write(root / f"2023-01-{1 + i % 28:02d}-{i}.md",
              f"Entry {i}.\n\n" + "Words of a day, one after another. " * 300 + "\n")
    home = tmp_path / "home"
    parent = subprocess.Popen([sys.executable, "-c", WORKER_CHILD, str(home), str(root),
                               str(model_dir / "tokenizer.json")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        workers = []
        while time.monotonic() < deadline and len(workers) < 2:
            workers = [p for p in psutil.Process(parent.pid).children()
                       if "_worker_main" in " ".join(p.cmdline())]
            time.sleep(0.05)
        assert len(workers) == 2, parent.stderr.read() if parent.poll() is not None else ""
        time.sleep(0.5)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive
    finally:
        if parent.poll() is None:
            parent.kill()
    with ingest.open_store(home, tokenizer) as store:
        check_consistency(store, tokenizer)
        ingest.run(store, workers=2)
        check_consistency(store, tokenizer)
        assert store.db.execute("SELECT count(*) FROM documents WHERE status = 'live'"
                                ).fetchone()[0] == 300
        assert store.db.execute("SELECT count(*) FROM entries WHERE status = 'pending'"
                                ).fetchone()[0] == 0
    clean = tmp_path / "clean"
    with ingest.open_store(clean, tokenizer) as store:
        ingest.add_source(store, root)
        ingest.run(store, workers=0)
        clean_digest = stream_digest(store)
    with ingest.open_store(home, tokenizer) as store:  # killed or not: the same stream
        assert stream_digest(store) == clean_digest


def test_pre_tokens_whose_chunk_count_differs_from_the_store_are_not_used(tmp_path, tokenizer,
                                                                        monkeypatch):
    """Ids recorded for an entry whose rows no longer match (one chunk fewer here):
    the stream phase tokenizes the stored text instead, and the stream is unchanged."""
    add = PreTokens.add

    def add_one_chunk_short(self, entry_id, ids, per_chunk, *header):
        if len(per_chunk) > 1:
            ids, per_chunk = ids[:-int(per_chunk[-1]) or None], per_chunk[:-1]
        add(self, entry_id, ids, per_chunk, *header)

    monkeypatch.setattr(PreTokens, "add", add_one_chunk_short)
    root = tricky_tree(tmp_path / "journal")
    store, _ = build(tmp_path, "home", tokenizer, root, workers=0)
    with store:
        assert stream_digest(store) == PINNED_STREAM_SHA256
        check_consistency(store, tokenizer)


def test_checkpoints_from_a_thread_leave_the_same_store_and_switch_back(tmp_path, tokenizer,
                                                                        monkeypatch):
    """A large run copies the log into the database from a second connection (here any
    run): same rows and stream, the writer's automatic checkpoints back on, thread gone."""
    import threading

    monkeypatch.setattr(sync, "CHECKPOINT_THREAD_MIN_BYTES", 0)
    monkeypatch.setattr(checkpoint._Checkpointer, "INTERVAL_S", 0.001)
    with build_tricky_tree_as_pinned(tmp_path, tokenizer, workers=0) as store:
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL again
        assert (store.home / "memex.db-wal").stat().st_size < 64 * 1024  # cut back at the end
        assert not [t for t in threading.enumerate() if t.name == "memex-checkpoint"]
