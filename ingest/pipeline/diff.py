"""What changed: which sources and paths a run covers, the documents the store already
knows there (``_Known``), whether a file found by the scan can be left alone, and what a
file read from disk means against its stored row (same bytes, new, or to parse)."""

from __future__ import annotations

from dataclasses import dataclass

from ingest.pipeline.extract import _label, prepare_file
from ingest.pipeline.scan import FileInfo
from ingest.pipeline.sources import locate
from ingest.store import Source, Store


@dataclass
class _Known:
    id: int
    path: str
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    status: str
    error: str | None
    revision: int
    source_id: int


def _scope_by_source(store: Store, scope) -> dict[int, tuple[Source, list[str]]]:
    """Group scope paths by source; '' means the whole source."""
    sources = store.sources()
    if scope is None:
        return {s.id: (s, [""]) for s in sources}
    grouped: dict[int, tuple[Source, list[str]]] = {}
    for path in scope:
        found = locate(store, path)
        if found:
            source, rel = found
            grouped.setdefault(source.id, (source, []))[1].append(rel)
    for source_id, (source, rels) in grouped.items():
        if "" in rels:
            grouped[source_id] = (source, [""])
        else:  # drop paths inside another scope path
            rels = sorted(set(rels))
            kept: list[str] = []
            for rel in rels:
                if not any(rel.startswith(k + "/") for k in kept):
                    kept.append(rel)
            grouped[source_id] = (source, kept)
    return grouped


def _in_scope(path: str, rels: list[str]) -> bool:
    return any(rel == "" or path == rel or path.startswith(rel + "/") for rel in rels)


def _cap_raised(row: _Known, info: FileInfo, max_file_bytes: int) -> bool:
    """Skipped for its size, and the size cap now lets it in."""
    return (row.status == "skipped" and (row.error or "").startswith("larger than")
            and (info.size or 0) <= max_file_bytes)


def _excluded(relpath: str, excluded: set[str]) -> bool:
    return any(relpath == e or relpath.startswith(e + "/") for e in excluded)


def _known_documents(store: Store, source_id: int, rels: list[str]) -> dict[str, _Known]:
    rows = store.db.execute(
        "SELECT id, path, size, mtime_ns, sha256, status, error, revision, source_id "
        "FROM documents WHERE source_id = ?", [source_id]).fetchall()
    return {row[1]: _Known(*row) for row in rows if _in_scope(row[1], rels)}


def _read_one(store: Store, source: Source, info: FileInfo, row: _Known | None,
              max_file_bytes: int, outcome: tuple):
    """Turn one file's outcome of ``prepare_file`` into a batch item (None: it vanished)."""
    if outcome[0] == "gone":
        return None
    if outcome[0] == "skip":
        return ("skip", outcome[1], row, source, outcome[2], None)
    _, info, sha, parsed = outcome
    if row is not None and row.sha256 == sha and (row.status == "live" or (
            row.status == "deleted" and store.db.execute(
                "SELECT 1 FROM entries WHERE document_id = ? AND status = 'deleted' LIMIT 1",
                [row.id]).fetchone())):
        return ("same", info, row, source, sha, None)
    if parsed is None:  # left unparsed as known bytes (not reached: those are "same")
        return _read_one(store, source, info, row, max_file_bytes, prepare_file(
            (str(source.root / info.relpath), info.relpath, info.size, info.mtime_ns,
             info.format, max_file_bytes, None, _label(source, info.relpath))))
    return ("new" if row is None else "parse", info, row, source, sha, parsed)
