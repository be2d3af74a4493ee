"""Opening a data home and finishing what a killed process left half done.

``open_store`` opens the store and runs ``recover``, as ``run``, ``compact`` and
``forget`` do again under the ingest lock: a compaction killed after its commit is
finished (its new stream file put in place) or one killed before is cleaned up, stream
bytes past the committed length are cut off, forgotten ranges are zeroed, and a
``forget`` killed before its scrub is scrubbed again. The finishing steps of ``compact``
(``finish_pending_compaction``) and ``forget`` (``scrub``) live here so that this module
sits below both."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from ingest.store import Store, StoreError
from ingest.stream.file import HEADER_SIZE, _fsync_dir, read_header

COMPACT_SUFFIX = ".compact"


def open_store(home: Path | str, tokenizer=None) -> Store:
    """Open (creating if needed) the store in the data home ``home``."""
    store = Store(home, tokenizer=tokenizer)
    with contextlib.ExitStack() as stack:
        try:  # with the lock, recovery also removes a killed compaction's file
            stack.enter_context(store.ingest_lock(wait=False))
        except StoreError:
            pass  # another process is ingesting: leave its files alone
        recover(store)
    return store


def recover(store: Store) -> None:
    """Finish or undo whatever a killed process left half done."""
    with store.write():
        pending = store.get_meta("compact_pending")
        if pending:
            finish_pending_compaction(store, pending)
        elif store._holding_ingest_lock:  # else a compaction may be writing it right now
            remove_abandoned_compaction(store)
        committed = store.stream_tokens()
        if store.stream.exists:
            store.stream.reload_header()
            have = store.stream.file_tokens()
            if have > committed or store.stream.file_bytes() != HEADER_SIZE + have * 4:
                store.stream.truncate(committed)
            elif have < committed:
                raise StoreError(
                    f"{store.stream_path} holds {have} tokens but the store committed "
                    f"{committed}: the stream file was damaged or replaced")
        elif committed:
            raise StoreError(f"{store.stream_path} is missing but the store committed "
                             f"{committed} tokens")
        store.zero_forgotten_spans()
        scrub_pending = bool(store.get_meta("scrub_pending"))
    if scrub_pending:  # a `forget` was killed before its text left every page
        scrub(store)


def finish_pending_compaction(store: Store, pending: dict) -> None:
    """Put the compacted file in place (inside a write transaction)."""
    target = store.stream_path.with_name(pending["file"])
    if target.exists():
        os.replace(target, store.stream_path)
        _fsync_dir(store.home)
    elif not (store.stream_path.exists()
              and read_header(store.stream_path).get("stream_id") == pending["stream_id"]):
        raise StoreError("an interrupted `memex compact` lost its new stream file")
    store.stream.reload_header()
    store.delete_meta("compact_pending")


def remove_abandoned_compaction(store: Store) -> None:
    target = store.stream_path.with_name(store.stream_path.name + COMPACT_SUFFIX)
    if target.exists() and not store.get_meta("compact_pending"):
        target.unlink()


def scrub(store: Store, attempts: int = 50) -> bool:
    """Leave no deleted text in the database files: merge FTS, vacuum, truncate the WAL.

    Returns False if another connection kept the WAL from being truncated."""
    with store.write():
        store.db.execute("INSERT INTO chunks_fts(chunks_fts) VALUES ('optimize')")
    checkpoint(store, attempts)
    store.db.execute("VACUUM")
    done = checkpoint(store, attempts)
    if done:
        with store.write():
            store.delete_meta("scrub_pending")
        done = checkpoint(store, attempts)
    return done


def checkpoint(store: Store, attempts: int = 50) -> bool:
    for _ in range(attempts):
        busy, _, _ = store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if not busy:
            return True
        time.sleep(0.1)
    return False
