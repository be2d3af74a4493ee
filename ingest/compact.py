"""`memex compact`: rewrite the stream with live entries only.

Superseded revisions, deleted files and forgotten (zeroed) ranges leave the
stream; their entries and chunks leave the database (the revision history stays
as metadata). The new file is written beside the old one, then the database
takes the new token offsets in one transaction that also records the pending
rename; the rename follows. A crash before the commit leaves the old stream in
use (the half-written file is removed on the next open); a crash after it is
finished by ``finish_pending_compaction`` when the store next opens.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass

import numpy as np

from ingest.progress import NullProgress
from ingest.recovery import COMPACT_SUFFIX, finish_pending_compaction, recover, scrub
from ingest.store import Store, StoreError
from ingest.stream.file import HEADER_SIZE, TOKEN_BYTES, create_stream_file

COPY_TOKENS = 1 << 22


@dataclass
class CompactReport:
    tokens_before: int = 0
    tokens_after: int = 0
    entries_kept: int = 0
    entries_dropped: int = 0


def compact(store: Store, progress=None) -> CompactReport:
    progress = progress or NullProgress()
    report = CompactReport()
    with store.ingest_lock():
        recover(store)
        report.tokens_before = store.stream_tokens()
        if not store.stream.exists or not report.tokens_before:
            return report
        dead = store.db.execute("SELECT count(*) FROM spans WHERE status != 'live'").fetchone()[0]
        spans = store.db.execute("SELECT id, token_start, token_end, entry_id FROM spans "
                                 "WHERE status = 'live' ORDER BY token_start").fetchall()
        if not dead and sum(e - s for _, s, e, _ in spans) == report.tokens_before:
            report.tokens_after = report.tokens_before
            report.entries_kept = len(spans)
            return report
        target = store.stream_path.with_name(store.stream_path.name + COMPACT_SUFFIX)
        header = store.stream.header
        meta = create_stream_file(target, header["tokenizer_id"], header["tokenizer_hash"],
                                  uuid.uuid4().hex)
        progress.phase("compact", report.tokens_before, "tokens")
        moves: list[tuple[int, int, int, int]] = []  # span id, entry id, old start, new start
        if store.stream.encrypted:
            position = _copy_live_encrypted(store, target, spans, moves, progress)
        else:
            position = _copy_live(store, target, spans, moves, progress, report.tokens_before)
        with store.write():
            if not target.exists():
                raise StoreError(f"{target} vanished while compacting; nothing was changed")
            q = store.db.execute
            report.entries_dropped = q("SELECT count(*) FROM entries WHERE status IN "
                                       "('superseded', 'deleted')").fetchone()[0]
            q("DELETE FROM entries WHERE status IN ('superseded', 'deleted')")
            q("DELETE FROM documents WHERE status = 'deleted'")
            q("DELETE FROM spans WHERE status != 'live'")
            # Shift in increasing order so the unique token_start never collides.
            for span_id, entry_id, old_start, new_start in moves:
                delta = new_start - old_start
                if delta:
                    q("UPDATE spans SET token_start = token_start + ?, token_end = token_end + ? "
                      "WHERE id = ?", [delta, delta, span_id])
                    q("UPDATE chunks SET token_start = token_start + ?, token_end = token_end + ?"
                      " WHERE entry_id = ?", [delta, delta, entry_id])
            store.set_meta("stream_tokens", position)
            store.set_meta("stream_id", meta["stream_id"])
            store.set_meta("compact_pending", {"file": target.name, "stream_id": meta["stream_id"]})
            store.mark_memory_rebuild("the stream was compacted")
            report.tokens_after = position
            report.entries_kept = len(moves)
        with store.write():
            finish_pending_compaction(store, store.get_meta("compact_pending"))
        progress.done()
        scrub(store)
    return report


def _copy_live(store: Store, target, spans, moves, progress, tokens: int) -> int:
    fd = os.open(target, os.O_RDWR)
    try:
        position = 0
        source = np.memmap(store.stream_path, dtype="<u4", mode="r", offset=HEADER_SIZE,
                           shape=(tokens,))
        for span_id, start, end, entry_id in spans:
            moves.append((span_id, entry_id, start, position))
            for piece in range(start, end, COPY_TOKENS):
                block = np.ascontiguousarray(source[piece:min(end, piece + COPY_TOKENS)])
                os.pwrite(fd, block.tobytes(), HEADER_SIZE + position * TOKEN_BYTES)
                position += len(block)
            progress.advance(end - start)
        del source
        os.fsync(fd)
    finally:
        os.close(fd)
    return position


def _copy_live_encrypted(store: Store, target, spans, moves, progress) -> int:
    """The same copy through the vault: read decrypted, sealed into a new file chunk by
    chunk and fsynced once (the file is nobody's until the store commits its name)."""
    from vault import ChunkedFile, files_for

    files = files_for(target)
    header = files.open(target).read(0, HEADER_SIZE)
    position = 0

    def pieces():
        nonlocal position
        yield header
        for span_id, start, end, entry_id in spans:
            moves.append((span_id, entry_id, start, position))
            for piece in range(start, end, COPY_TOKENS):
                block = store.stream.read(piece, min(end, piece + COPY_TOKENS))
                position += len(block)
                yield block.astype("<u4").tobytes()
            progress.advance(end - start)

    ChunkedFile.write_new(target, files.key, pieces())
    return position
