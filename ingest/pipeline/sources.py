"""The sources: registering a folder or a single file (``add_source``, which also
takes over earlier sources inside a new folder and lifts exclusions), and finding which
source, and which path inside it, an absolute path belongs to (``locate``)."""

from __future__ import annotations

import os
from pathlib import Path

from ingest.readers import reader_for
from ingest.store import Source, Store, StoreError, utc_now


def _resolve(path: Path | str) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def add_source(store: Store, path: Path | str) -> tuple[Source, str]:
    """Register a folder or a single file. Returns (source, what happened)."""
    target = _resolve(path)
    if not target.exists():
        raise StoreError(f"{path}: no such file or folder")
    if target.is_dir():
        root, only = target, ""
    elif target.is_file():
        if reader_for(target.name) is None:
            raise StoreError(f"{path}: memex does not read this kind of file")
        root, only = target.parent, target.name
    else:
        raise StoreError(f"{path}: not a regular file or folder")
    home = _resolve(store.home)  # (a data home inside a source is skipped while walking)
    if target == home or _is_within(target, home):
        raise StoreError(f"{path} is inside the data home")
    with store.write():
        for source in store.sources():
            covering = source.root if not source.only_file else None
            if covering and (_is_within(target, covering) or target == covering):
                rel = "" if target == covering else target.relative_to(covering).as_posix()
                removed = store.db.execute(
                    "DELETE FROM exclusions WHERE source_id = ? AND (? = '' OR path = ? OR "
                    "substr(path, 1, ?) = ?)",
                    [source.id, rel, rel, len(rel) + 1, rel + "/"]).rowcount
                note = " (and no longer excluded)" if removed else ""
                return source, f"already covered by {source.root}{note}"
            if source.only_file and source.root / source.only_file == target:
                return source, "already added"
        cursor = store.db.execute("INSERT INTO sources(root, only_file, added_at) VALUES (?, ?, ?)",
                                  [str(root), only, utc_now()])
        new = Source(cursor.lastrowid, root, only)
        if not only:
            _absorb_sources_within(store, new)
    return new, "added"


def _absorb_sources_within(store: Store, new: Source) -> None:
    """A new folder that contains earlier sources takes over their documents."""
    for source in store.sources():
        if source.id == new.id or not _is_within(source.root, new.root) and source.root != new.root:
            continue
        prefix = "" if source.root == new.root else str(source.root.relative_to(new.root)) + "/"
        store.db.execute("UPDATE documents SET source_id = ?, path = ? || path WHERE source_id = ?",
                         [new.id, prefix, source.id])
        store.db.execute("UPDATE OR IGNORE exclusions SET source_id = ?, path = ? || path "
                         "WHERE source_id = ?", [new.id, prefix, source.id])
        store.db.execute("DELETE FROM sources WHERE id = ?", [source.id])


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return path != folder


def locate(store: Store, path: Path | str) -> tuple[Source, str] | None:
    """(source, path relative to its root) for an absolute path, or None if outside all."""
    target = Path(os.path.abspath(os.path.expanduser(str(path))))
    candidates = {target}
    try:
        candidates.add(Path(os.path.realpath(target.parent)) / target.name)
    except OSError:
        pass
    best = None
    for source in store.sources():
        for candidate in candidates:
            if source.only_file:
                if candidate == source.root / source.only_file:
                    return source, source.only_file
                continue
            if candidate == source.root:
                rel = ""
            elif _is_within(candidate, source.root):
                rel = candidate.relative_to(source.root).as_posix()
            else:
                continue
            if best is None or len(str(source.root)) > len(str(best[0].root)):
                best = (source, rel)
    return best
