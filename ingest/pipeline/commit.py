"""Writing a batch of read files into the store, in one transaction: documents,
revisions, entries and chunks (status ``pending``, searchable at once), moves and
renames, revived and skipped files, and files gone from disk. The chunks' token ids
from the workers are kept for the stream phase once their rows are committed."""

from __future__ import annotations

import sqlite3

import numpy as np

from ingest.pipeline.diff import _Known
from ingest.pipeline.extract import _label, entry_header
from ingest.pipeline.report import IngestReport
from ingest.pipeline.scan import FileInfo
from ingest.pipeline.tokens import PreTokens
from ingest.readers.base import SkipFile
from ingest.store import Source, Store, utc_now


def _apply_batch(store: Store, batch: list, missing: dict[int, _Known],
                 missing_by_sha: dict[str, list[int]], report: IngestReport,
                 pretokens: PreTokens | None = None) -> None:
    # Decide which "new" files are moves before taking the write lock.
    prepared = []
    for kind, info, row, source, payload, extra in batch:
        if kind == "new":
            candidates = [i for i in missing_by_sha.get(payload, []) if i in missing]
            if candidates:
                prepared.append(("move", info, row, source, payload, candidates[0]))
                missing_by_sha[payload].remove(candidates[0])
                missing.pop(candidates[0])
                continue
            revivable = store.db.execute(
                "SELECT id FROM documents WHERE sha256 = ? AND status = 'deleted' AND id IN "
                "(SELECT document_id FROM entries WHERE status = 'deleted') LIMIT 1",
                [payload]).fetchone()
            if revivable:
                prepared.append(("move", info, row, source, payload, revivable[0]))
                continue
            prepared.append(("parse", info, row, source, payload, extra))
        else:
            prepared.append((kind, info, row, source, payload, extra))
    tokens: list[tuple[int, tuple[np.ndarray, np.ndarray]]] = []
    with store.write():
        chunk_rows: list[tuple] = []
        for kind, info, row, source, payload, extra in prepared:
            if kind == "skip":
                _record_skip(store, source, info, row, payload, report)
            elif kind == "same":
                _touch(store, info, row, report)
            elif kind == "move":
                _move(store, source, info, extra, report)
            elif isinstance(extra, SkipFile):
                _record_skip(store, source, info, row, str(extra), report)
            else:
                chunk_rows += _store_revision(store, source, info, row, payload, extra, report,
                                              tokens)
        _insert_chunks(store, chunk_rows)  # the batch's chunks together: see _insert_chunks
    if pretokens is not None:  # only once the rows they belong to are committed
        for entry_id, entry_tokens in tokens:
            pretokens.add(entry_id, *entry_tokens)


def _record_skip(store: Store, source: Source, info: FileInfo, row: _Known | None, reason: str,
                 report: IngestReport) -> None:
    now = utc_now()
    if row is None:
        store.db.execute(
            "INSERT INTO documents(source_id, path, format, size, mtime_ns, sha256, status, error,"
            " first_seen, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'skipped', ?, ?, ?) "
            "ON CONFLICT(source_id, path) DO UPDATE SET status = 'skipped', error = excluded.error,"
            " size = excluded.size, mtime_ns = excluded.mtime_ns, updated_at = excluded.updated_at",
            [source.id, info.relpath, info.format, info.size, info.mtime_ns, None, reason, now, now])
    else:
        if row.status == "live":
            _retire_entries(store, row.id, "deleted")
        # sha256 goes: the bytes on disk no longer match any stored revision.
        store.db.execute("UPDATE documents SET status = 'skipped', error = ?, size = ?, "
                         "mtime_ns = ?, sha256 = NULL, updated_at = ? WHERE id = ?",
                         [reason, info.size, info.mtime_ns, now, row.id])
    report.skipped.append({"path": info.relpath, "root": str(source.root), "reason": reason})


def _touch(store: Store, info: FileInfo, row: _Known, report: IngestReport) -> None:
    """Same bytes as before (only the mtime changed, or a deleted file came back)."""
    if row.status == "deleted":
        _revive(store, row.id)
        report.revived += 1
    else:
        report.touched += 1
    store.db.execute("UPDATE documents SET size = ?, mtime_ns = ?, status = 'live', error = NULL,"
                     " updated_at = ? WHERE id = ?",
                     [info.size, info.mtime_ns, utc_now(), row.id])


def _move(store: Store, source: Source, info: FileInfo, document_id: int,
          report: IngestReport) -> None:
    status = store.db.execute("SELECT status FROM documents WHERE id = ?",
                              [document_id]).fetchone()[0]
    if status == "deleted":
        _revive(store, document_id)
        report.revived += 1
    store.db.execute("UPDATE documents SET source_id = ?, path = ?, size = ?, mtime_ns = ?, "
                     "status = 'live', error = NULL, updated_at = ? WHERE id = ?",
                     [source.id, info.relpath, info.size, info.mtime_ns, utc_now(), document_id])
    # Entries not yet in the stream will carry the new path in their header.
    store.db.execute("UPDATE entries SET header = '# ' || coalesce(date, 'undated') || ' · ' || ? "
                     "|| char(10) || char(10) WHERE document_id = ? AND status = 'pending'",
                     [f"{source.root.name}/{info.relpath}", document_id])
    report.moved += 1


def _revive(store: Store, document_id: int) -> None:
    revision = store.db.execute("SELECT max(id) FROM revisions WHERE document_id = ?",
                                [document_id]).fetchone()[0]
    store.db.execute("UPDATE revisions SET status = 'current' WHERE id = ?", [revision])
    _set_entries_status(store, "document_id = ? AND revision_id = ? AND status = 'deleted'",
                        [document_id, revision], "live")


def _set_entries_status(store: Store, where: str, params: list, status: str) -> None:
    entry_ids = [row[0] for row in store.db.execute(f"SELECT id FROM entries WHERE {where}",
                                                    params)]
    if not entry_ids:
        return
    for start in range(0, len(entry_ids), 500):
        ids = entry_ids[start:start + 500]
        marks = ",".join("?" * len(ids))
        store.db.execute(f"UPDATE entries SET status = ? WHERE id IN ({marks})", [status, *ids])
        store.db.execute(f"UPDATE chunks SET status = ? WHERE entry_id IN ({marks})",
                         [status, *ids])
        store.db.execute(f"UPDATE spans SET status = ? WHERE entry_id IN ({marks})",
                         [status, *ids])


def _retire_entries(store: Store, document_id: int, status: str) -> None:
    """Old entries leave the index: streamed ones get ``status``, pending ones go."""
    store.db.execute("DELETE FROM entries WHERE document_id = ? AND status = 'pending'",
                     [document_id])
    _set_entries_status(store, "document_id = ? AND status = 'live'", [document_id], status)


def _store_revision(store: Store, source: Source, info: FileInfo, row: _Known | None, sha: str,
                    parsed, report: IngestReport, tokens: list | None = None) -> list[tuple]:
    """Record a new revision and its entries; returns its chunk rows for ``_insert_chunks``
    (to be inserted in the same transaction) and adds (entry id, its chunks' token ids)
    to ``tokens`` for entries a worker tokenized."""
    (warnings, encoding, title), entries = parsed
    now = utc_now()
    first = min((e for e in entries if e.date), key=lambda e: e.date, default=None)
    fields = [info.format, info.size, info.mtime_ns, sha, warnings, encoding,
              title, first.date if first else None, first.date_rule if first else None]
    if row is None:
        existing = store.db.execute("SELECT id, revision FROM documents WHERE source_id = ? "
                                    "AND path = ?", [source.id, info.relpath]).fetchone()
    else:
        existing = (row.id, row.revision)
    if existing:
        document_id, number = existing[0], existing[1] + 1
        _retire_entries(store, document_id, "superseded")
        store.db.execute("UPDATE revisions SET status = 'superseded' WHERE document_id = ? "
                         "AND status != 'superseded'", [document_id])
        store.db.execute(
            "UPDATE documents SET format = ?, size = ?, mtime_ns = ?, sha256 = ?, error = ?, "
            "encoding = ?, title = ?, entry_date = ?, date_rule = ?, status = 'live', "
            "revision = ?, updated_at = ? WHERE id = ?", [*fields, number, now, document_id])
        if number == 1:  # known only as skipped until now
            report.new += 1
        else:
            report.changed += 1
    else:
        number = 1
        document_id = store.db.execute(
            "INSERT INTO documents(format, size, mtime_ns, sha256, error, encoding, title, "
            "entry_date, date_rule, source_id, path, status, revision, first_seen, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'live', 1, ?, ?)",
            [*fields, source.id, info.relpath, now, now]).lastrowid
        report.new += 1
    revision_id = store.db.execute(
        "INSERT INTO revisions(document_id, number, sha256, size, mtime_ns, status, created_at) "
        "VALUES (?, ?, ?, ?, ?, 'current', ?)",
        [document_id, number, sha, info.size, info.mtime_ns, now]).lastrowid
    label = _label(source, info.relpath)
    chunk_rows = []
    for entry in entries:
        when, text = entry.date, entry.text
        header = entry_header(when, label)
        entry_id = store.db.execute(
            "INSERT INTO entries(document_id, revision_id, ordinal, date, date_rule, title, tags,"
            " header, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'pending')",
            [document_id, revision_id, entry.ordinal, when, entry.date_rule, entry.title,
             entry.tags, header]).lastrowid
        for index, (start, end) in enumerate(entry.spans):
            chunk_rows.append((entry_id, document_id, index, text[start:end], start, end, when))
        if entry.tokens is not None and tokens is not None:
            tokens.append((entry_id, (*entry.tokens, header, entry.header_tokens
                                      if entry.header == header else None)))
    return chunk_rows


CHUNK_ROWS_PER_STATEMENT = 4000  # (SQLite >= 3.32 allows 32766 variables: 4680 rows)


def _insert_chunks(store: Store, rows: list[tuple]) -> None:
    """Insert chunk rows, many per statement: FTS5 flushes the trigger's pending index
    entries to a new segment at the end of every statement, so one row per statement
    (executemany) makes it write and merge a segment per chunk: about four times the
    FTS work of a few large statements.

    The statements hold a power of two of rows (or the largest size), so that only a
    dozen different ones exist: a prepared statement of 2000 rows takes about 1.5 MB,
    and the connection keeps the last 128 it ran, so a different size for each batch's
    remainder made memory grow with the number of batches (+60 MB over 200 MB)."""
    sql = ("INSERT INTO chunks(entry_id, document_id, ordinal, text, char_start, char_end, "
           "date, status) VALUES ")
    try:
        variables = store.db.conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    except AttributeError:  # Python 3.10 and SQLCipher's driver cannot ask: SQLite's
        # default for the library in use (32766 since 3.32)
        version = store.db.execute("SELECT sqlite_version()").fetchone()[0]
        variables = 32766 if tuple(map(int, version.split(".")[:2])) >= (3, 32) else 999
    largest = min(CHUNK_ROWS_PER_STATEMENT, variables // 7)
    start = 0
    while start < len(rows):
        left = len(rows) - start
        size = largest if left >= largest else 1 << (left.bit_length() - 1)
        part = rows[start:start + size]
        start += size
        store.db.conn.execute(sql + ",".join(["(?, ?, ?, ?, ?, ?, ?, 'pending')"] * size),
                              [value for row in part for value in row])


def _mark_gone(store: Store, row: _Known, report: IngestReport) -> None:
    if row.status == "skipped":
        store.db.execute("DELETE FROM documents WHERE id = ? AND NOT EXISTS "
                         "(SELECT 1 FROM entries WHERE document_id = ?)", [row.id, row.id])
        store.db.execute("UPDATE documents SET status = 'deleted', error = NULL WHERE id = ?",
                         [row.id])
        return
    _retire_entries(store, row.id, "deleted")
    store.db.execute("UPDATE revisions SET status = 'deleted' WHERE document_id = ? "
                     "AND status = 'current'", [row.id])
    store.db.execute("UPDATE documents SET status = 'deleted', updated_at = ? WHERE id = ?",
                     [utc_now(), row.id])
    report.deleted += 1
