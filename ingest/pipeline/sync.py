"""Phase 1, scan/diff/read: ``_sync_files`` walks the sources, compares what it finds
with the store, reads new and changed files (here or in worker processes) and commits
them in batches, then marks the files gone from disk as deleted."""

from __future__ import annotations

import os

from ingest.pipeline.checkpoint import _Checkpointer
from ingest.pipeline.commit import _apply_batch, _mark_gone, _record_skip
from ingest.pipeline.diff import (
    _cap_raised,
    _excluded,
    _Known,
    _known_documents,
    _read_one,
    _scope_by_source,
)
from ingest.pipeline.heap import _give_back_freed_memory
from ingest.pipeline.report import IngestReport
from ingest.pipeline.scan import FileInfo, stat_one, walk
from ingest.pipeline.tokens import PreTokens
from ingest.pipeline.workers import _prepared
from ingest.store import Source, Store

READ_BATCH_FILES = 256
READ_BATCH_BYTES = 16 * 1024 * 1024
CHECKPOINT_THREAD_MIN_BYTES = 16 * 1024 * 1024  # runs this large checkpoint in a thread


def _sync_files(store: Store, scope, max_file_bytes: int, report: IngestReport, progress,
                should_stop, tokenizer=None, workers: int | None = 0,
                pretokens: PreTokens | None = None,
                checkpointer: _Checkpointer | None = None) -> None:
    home = os.path.realpath(store.home)
    to_read: list[tuple[Source, FileInfo, _Known | None]] = []
    skips: list[tuple[Source, FileInfo, _Known | None]] = []
    missing: dict[int, _Known] = {}
    progress.phase("scan", None, "files")
    for source, rels in _scope_by_source(store, scope).values():
        if not source.root.is_dir():
            report.missing_sources.append(str(source.root))
            progress.note(f"source folder missing, left as it was: {source.root}")
            continue
        excluded = {row[0] for row in store.db.execute(
            "SELECT path FROM exclusions WHERE source_id = ?", [source.id])}
        found: list[FileInfo] = []
        unreadable: list[str] = []
        for rel in rels:
            if source.only_file:
                info = stat_one(source.root, source.only_file)
                found.extend([info] if info else [])
            elif rel and not os.path.isdir(source.root / rel):
                info = stat_one(source.root, rel)
                if info and not _excluded(info.relpath, excluded):
                    found.append(info)
            else:
                result = walk(source.root, rel, skip_dirs=(home,), excluded=excluded)
                found.extend(f for f in result.files if not _excluded(f.relpath, excluded))
                unreadable.extend(result.unreadable_dirs)
        known = _known_documents(store, source.id, rels)
        seen: set[str] = set()
        for info in found:
            seen.add(info.relpath)
            row = known.get(info.relpath)
            report.scanned += 1
            progress.advance(1)
            if info.skip_reason:
                if not (row and row.status == "skipped" and row.error == info.skip_reason):
                    skips.append((source, info, row))
                else:
                    report.unchanged += 1
            elif (row and row.status in ("live", "skipped") and row.size == info.size
                  and row.mtime_ns == info.mtime_ns
                  and not _cap_raised(row, info, max_file_bytes)):
                report.unchanged += 1
            else:
                to_read.append((source, info, row))
        for path, row in known.items():
            if path in seen or any(path == u or path.startswith(u + "/") for u in unreadable if u):
                continue
            if "" in unreadable:
                continue
            if row.status in ("live", "skipped"):
                missing[row.id] = row
    progress.done()

    missing_by_sha: dict[str, list[int]] = {}
    for row in missing.values():
        if row.status == "live" and row.sha256:
            missing_by_sha.setdefault(row.sha256, []).append(row.id)

    if skips:
        with store.write():
            for source, info, row in skips:
                _record_skip(store, source, info, row, info.skip_reason, report)
                missing.pop(row.id if row else -1, None)

    total_bytes = sum(info.size or 0 for _, info, _ in to_read)
    if checkpointer is not None and total_bytes >= CHECKPOINT_THREAD_MIN_BYTES:
        checkpointer.start(first_build=store.stream_tokens() == 0)
    progress.phase("read", total_bytes, "bytes")
    batch: list[tuple] = []
    batch_bytes = 0
    for source, info, row, outcome in _prepared(to_read, max_file_bytes, tokenizer, workers,
                                                total_bytes, should_stop):
        item = _read_one(store, source, info, row, max_file_bytes, outcome)
        progress.advance(info.size or 0, files=1)
        if item is None:  # vanished since the scan
            if row is not None and row.status in ("live", "skipped"):
                missing[row.id] = row
            continue
        if row is not None:
            missing.pop(row.id, None)
        batch.append(item)
        batch_bytes += item[1].size or 0
        report.bytes_read += item[1].size or 0
        if len(batch) >= READ_BATCH_FILES or batch_bytes >= READ_BATCH_BYTES:
            _apply_batch(store, batch, missing, missing_by_sha, report, pretokens)
            batch, batch_bytes = [], 0
            _give_back_freed_memory()
    if batch:
        _apply_batch(store, batch, missing, missing_by_sha, report, pretokens)
    progress.done()

    if missing and not should_stop():
        with store.write():
            for row in missing.values():
                _mark_gone(store, row, report)
