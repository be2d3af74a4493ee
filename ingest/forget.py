"""`memex forget PATH`: remove a file's or folder's text from the data home for good.

In one transaction the documents, revisions, entries, chunks (and through the
trigger their FTS5 index entries) and embeddings are deleted, their stream
spans are marked ``forgotten`` (ranges only, no text) and the memory is flagged
for a rebuild. Then the forgotten token ranges are overwritten with zeros, the
FTS5 index is merged so no segment keeps the old terms, and the database is
checkpointed, vacuumed and its WAL truncated, so no page holding the old text
survives in ``memex.db``, ``memex.db-wal`` or ``stream.u32``.

A path inside a source is also excluded from later scans (``memex add PATH``
brings it back); forgetting a whole source unregisters it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ingest.pipeline.sources import locate
from ingest.recovery import recover, scrub
from ingest.store import Store, StoreError


@dataclass
class ForgetReport:
    documents: int = 0
    entries: int = 0
    chunks: int = 0
    tokens_zeroed: int = 0
    source_removed: bool = False
    scrubbed: bool = True


def forget_targets(store: Store, path: Path | str) -> tuple[object, str, list[int]]:
    """(source, relative path, document ids) that ``forget(path)`` would remove."""
    found = locate(store, path)
    if found is None:
        raise StoreError(f"{path} is not inside any source memex knows (see `memex status`)")
    source, rel = found
    if rel == "" or source.only_file:
        rows = store.db.execute("SELECT id FROM documents WHERE source_id = ?", [source.id])
    else:
        rows = store.db.execute(
            "SELECT id FROM documents WHERE source_id = ? AND (path = ? OR "
            "substr(path, 1, ?) = ?)", [source.id, rel, len(rel) + 1, rel + "/"])
    return source, rel, [row[0] for row in rows]


def forget(store: Store, path: Path | str) -> ForgetReport:
    report = ForgetReport()
    with store.ingest_lock():
        recover(store)
        source, rel, document_ids = forget_targets(store, path)
        whole_source = rel == "" or bool(source.only_file)
        if not document_ids and not whole_source:
            raise StoreError(f"nothing is stored from {path}")
        with store.write():
            for start in range(0, len(document_ids), 500):
                ids = document_ids[start:start + 500]
                marks = ",".join("?" * len(ids))
                q = store.db.execute
                report.entries += q(f"SELECT count(*) FROM entries WHERE document_id IN ({marks})",
                                    ids).fetchone()[0]
                report.chunks += q(f"SELECT count(*) FROM chunks WHERE document_id IN ({marks})",
                                   ids).fetchone()[0]
                report.tokens_zeroed += q(
                    f"SELECT coalesce(sum(token_end - token_start), 0) FROM spans WHERE "
                    f"document_id IN ({marks}) AND status != 'forgotten'", ids).fetchone()[0]
                q(f"UPDATE spans SET status = 'forgotten', zeroed = 0, entry_id = NULL, "
                  f"document_id = NULL WHERE document_id IN ({marks})", ids)
                # Cascades remove revisions, entries, chunks (FTS via trigger), embeddings.
                q(f"DELETE FROM documents WHERE id IN ({marks})", ids)
            report.documents = len(document_ids)
            if whole_source:
                store.db.execute("DELETE FROM sources WHERE id = ?", [source.id])
                report.source_removed = True
            else:
                store.db.execute("INSERT OR IGNORE INTO exclusions(source_id, path) VALUES (?, ?)",
                                 [source.id, rel])
            if report.tokens_zeroed:
                store.mark_memory_rebuild("text was forgotten")
            # If we are killed before the scrub ends, the next open scrubs again.
            store.set_meta("scrub_pending", True)
        # Zero the tokens only once their rows are gone for good (committed): zeroed
        # first and then rolled back, live entries would point at zeros.
        with store.write():
            store.zero_forgotten_spans()
        report.scrubbed = scrub(store)
    return report
