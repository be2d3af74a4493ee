"""Scan → diff → ingest: bring the store in line with the source folders.

Three resumable phases, each made of small transactions:

1. **scan/diff/read**: walk the sources, compare with the store by (size, mtime)
   and then sha256; read new and changed files, split them into dated entries
   and chunks (status ``pending``; searchable at once). Moves and renames with the
   same content update the path only. Files gone from disk are marked deleted.
   Reading, parsing, chunking and tokenizing are pure (``prepare_files``); on a large
   run worker processes do them while this process writes SQLite, and the chunks'
   token ids wait for phase 2 in an unnamed temporary file (``PreTokens``).
2. **stream**: append pending entries (oldest date first) to the token stream, from
   those ids or tokenized from the stored text; the spans table records which
   tokens came from where.
3. **embed**: compute embeddings for chunks that have none (optional).

Killed at any point, a rerun picks up where the last committed step ended.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import hashlib
import json
import os
import sqlite3
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ingest.chunking import chunk_spans
from ingest.dates import assign_entries
from ingest.progress import NullProgress
from ingest.readers import reader_for
from ingest.readers.base import SkipFile
from ingest.scan import FileInfo, TransientSkip, read_stable, stat_one, walk
from ingest.store import DEFAULT_MAX_FILE_BYTES, Source, Store, StoreError, utc_now
from ingest.stream import TOKEN_DTYPE, _plain_backend, encode_flat

READ_BATCH_FILES = 256
READ_BATCH_BYTES = 16 * 1024 * 1024
STREAM_BATCH_ENTRIES = 1000
STREAM_BATCH_CHARS = 2 * 1024 * 1024
TOKENIZE_SLICE_CHARS = 256 * 1024  # bounds the word lists and index arrays of one encode
WORKERS_MIN_BYTES = 32 * 1024 * 1024  # below this a run reads in this process
MAX_WORKERS = 2
WORKER_TASK_FILES = 64
WORKER_TASK_BYTES = 1024 * 1024
WORKER_AHEAD_BYTES = 8 * 1024 * 1024  # read but not yet written: bounds memory
CHECKPOINT_THREAD_MIN_BYTES = 16 * 1024 * 1024  # runs this large checkpoint in a thread


@dataclass
class IngestReport:
    scanned: int = 0
    unchanged: int = 0
    new: int = 0
    changed: int = 0
    touched: int = 0
    moved: int = 0
    revived: int = 0
    deleted: int = 0
    skipped: list[dict] = field(default_factory=list)
    missing_sources: list[str] = field(default_factory=list)
    bytes_read: int = 0
    entries_streamed: int = 0
    tokens_appended: int = 0
    chunks_embedded: int = 0
    embed_error: str | None = None
    seconds: dict = field(default_factory=dict)
    stopped: bool = False

    @property
    def changed_anything(self) -> bool:
        return bool(self.new or self.changed or self.moved or self.revived or self.deleted
                    or self.tokens_appended or self.touched or self.skipped)

    def as_dict(self) -> dict:
        data = dict(self.__dict__)
        data["skipped"] = list(self.skipped)
        return data


# -- sources ---------------------------------------------------------------
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


# -- the run ---------------------------------------------------------------
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


def run(store: Store, tokenizer=None, *, scope: list[Path | str] | None = None,
        embed: bool = False, embedder=None, max_file_bytes: int | None = None,
        progress=None, should_stop=None, workers: int | None = None) -> IngestReport:
    """Ingest every source (or only the paths in ``scope``) and return what changed.

    ``tokenizer`` (default: the store's) is required to append to the stream
    (without one, entries stay pending). ``embed=True`` computes missing
    embeddings with ``embedder`` (the bundled MiniLM when None). ``workers``: how many
    processes read, parse and tokenize files beside this one (None: up to MAX_WORKERS
    when the run has at least WORKERS_MIN_BYTES to read; 0: all in this process). The
    rows and the stream are the same whatever the number.
    """
    progress = progress or NullProgress()
    should_stop = should_stop or (lambda: False)
    tokenizer = tokenizer if tokenizer is not None else store.tokenizer
    report = IngestReport()
    if max_file_bytes is None:
        max_file_bytes = int(store.get_meta("max_file_bytes", DEFAULT_MAX_FILE_BYTES))
    with store.ingest_lock(), _old_objects_left_alone():
        store.recover()
        started = time.perf_counter()
        with PreTokens(store.home) as pretokens, _Checkpointer(store) as checkpointer:
            _sync_files(store, scope, max_file_bytes, report, progress, should_stop, tokenizer,
                        workers, pretokens if tokenizer is not None else None, checkpointer)
            report.seconds["read"] = time.perf_counter() - started
            if tokenizer is not None and not should_stop():
                started = time.perf_counter()
                stream_pending(store, tokenizer, report, progress, should_stop, pretokens)
                report.seconds["stream"] = time.perf_counter() - started
        if embed and not should_stop():
            started = time.perf_counter()
            try:
                from ingest.embeddings import EmbeddingsUnavailable, embed_missing, load_embedder
                embedder = embedder or load_embedder()
                embed_missing(store, embedder, report, progress, should_stop)
            except EmbeddingsUnavailable as exc:
                report.embed_error = str(exc)
                progress.note(f"embeddings skipped: {exc}")
            report.seconds["embed"] = time.perf_counter() - started
        report.stopped = bool(should_stop())
        with store.write():
            store.set_meta("last_ingest_at", utc_now())
    return report


@contextlib.contextmanager
def _old_objects_left_alone():
    """Keep the cyclic garbage collector off the objects that existed before the run
    (the tokenizer, transformers and torch: hundreds of thousands) for its duration:
    the run's many rows and arrays would otherwise set off full collections that walk
    them all again and again (about 7 % of a large build's CPU time)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Checkpointer:
    """Copies the write-ahead log into the database file from a second connection in a
    thread, while a large run writes (``start``): SQLite runs a checkpoint without the
    GIL, so it overlaps the writer's work instead of stopping it at every commit that
    finds the log past 1000 pages (about 7 % of the writer's time on a large build).
    The writer's automatic checkpoints are off meanwhile and back on at the end.
    Checkpoints change no content and may run at any moment, so crash safety is as
    before.

    On a first build (an empty stream) the writer also commits with
    ``synchronous = NORMAL`` meanwhile: its commits do not wait for an fsync of the log
    (about 55 ms for a 16 MB batch here); the checkpointing connection, at FULL, syncs
    the log before each copy, and the first commit after the run (FULL again) syncs all
    of it. A killed process loses nothing either way (the OS holds every committed
    write); a power cut could lose the last quarter second of commits, which a rerun
    redoes from the files, and never the stream's consistency: its bytes are synced
    before the commit that counts them, and a longer stream file is cut back on open."""

    INTERVAL_S = 0.25

    def __init__(self, store: Store):
        self.store = store
        self.thread = None
        self.stopping = None

    def __enter__(self) -> _Checkpointer:
        return self

    def start(self, first_build: bool = False) -> None:
        import threading

        if self.thread is not None:
            return
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memex-checkpoint", daemon=True)
        self.store.db.execute("PRAGMA wal_autocheckpoint = 0")
        if first_build:
            self.store.db.execute("PRAGMA synchronous = NORMAL")
        self.thread.start()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.store.db_path), timeout=60)
        except sqlite3.Error:
            return
        try:
            conn.execute("PRAGMA synchronous = FULL")
            while not self.stopping.wait(self.INTERVAL_S):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.OperationalError:  # busy: the next one catches up
                    pass
        finally:
            conn.close()

    def __exit__(self, *exc) -> None:
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join()
        self.thread = None
        self.store.db.execute("PRAGMA synchronous = FULL")
        self.store.db.execute("PRAGMA wal_autocheckpoint = 1000")
        # The log grew while readers (the stream phase's) kept it from restarting: copy
        # the rest and cut it to nothing, unless another process is reading right now.
        self.store.db.execute("PRAGMA busy_timeout = 1000")
        try:
            self.store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        except sqlite3.OperationalError:
            pass
        finally:
            self.store.db.execute("PRAGMA busy_timeout = 60000")


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


_malloc_trim = None


def _give_back_freed_memory() -> None:
    """Return the C heap's free pages to the system after a batch (glibc keeps them, and
    the holes left by one batch's many strings make the process grow run after run)."""
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):  # not glibc
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


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


# -- reading and parsing (in worker processes for large runs) -----------------
@dataclass
class _PreparedEntry:
    """One entry of a parsed file, cut into chunks (and tokenized when read by a worker)."""
    ordinal: int
    date: str | None
    date_rule: str | None
    title: str | None
    tags: str | None
    text: str
    spans: list[tuple[int, int]]
    header: str = ""  # what the stream puts before it (see entry_header)
    tokens: tuple[np.ndarray, np.ndarray] | None = None  # (ids, ids per chunk)
    header_tokens: np.ndarray | None = None


def _label(source: Source, relpath: str) -> str:
    return f"{source.root.name}/{relpath}"


def entry_header(date: str | None, label: str) -> str:
    """The short header each entry starts with in the stream."""
    return f"# {date or 'undated'} · {label}\n\n"


def prepare_file(job: tuple) -> tuple:
    """Read, hash, parse and chunk one file. Pure: no database. ``job`` is (path,
    relpath, size, mtime_ns, format, max_file_bytes, sha256 already stored or None: a
    file with those bytes is not parsed, label for the entry headers). Returns
    ("gone",) | ("skip", FileInfo, reason) | ("read", FileInfo, sha256, parsed) where
    parsed is None (known bytes), a SkipFile, or ((warnings, encoding, title), entries)."""
    path, relpath, size, mtime_ns, file_format, max_file_bytes, known_sha, label = job
    info = FileInfo(relpath, size, mtime_ns, file_format)
    try:
        data, st = read_stable(Path(path), max_file_bytes)
    except FileNotFoundError:
        return ("gone",)
    except SkipFile as exc:
        transient = isinstance(exc, TransientSkip)
        info = FileInfo(relpath, None if transient else size, None if transient else mtime_ns,
                        file_format)
        return ("skip", info, str(exc))
    info = FileInfo(relpath, st.st_size, st.st_mtime_ns, file_format)
    sha = hashlib.sha256(data).hexdigest()
    if known_sha == sha:
        return ("read", info, sha, None)
    parsed = _parse(info, data)
    if isinstance(parsed, SkipFile):
        return ("read", info, sha, parsed)
    result, entries = parsed
    prepared = []
    for ordinal, entry in enumerate(entries):
        text = entry.text.strip("\n").rstrip() + "\n\n"
        if not text.strip():
            continue
        date = entry.date.isoformat() if entry.date else None
        prepared.append(_PreparedEntry(
            ordinal, date, entry.date_rule, entry.title,
            json.dumps(entry.tags) if entry.tags else None, text, chunk_spans(text),
            entry_header(date, label)))
    summary = ("; ".join(result.warnings) or None, result.encoding, result.title)
    return ("read", info, sha, (summary, prepared))


def prepare_files(jobs: list[tuple], tokenizer=None) -> list[tuple]:
    """``prepare_file`` for each job, and (with ``tokenizer``) every entry's chunks and
    header tokenized, all in a few large encodes (each text alone, as the stream has it)."""
    outcomes = [prepare_file(job) for job in jobs]
    if tokenizer is None:
        return outcomes
    entries = [entry for outcome in outcomes if outcome[0] == "read"
               and isinstance(outcome[3], tuple) for entry in outcome[3][1]]
    texts = [entry.text[start:end] for entry in entries for start, end in entry.spans]
    ids, per_chunk = _encode_sliced(tokenizer, texts)
    bounds = np.concatenate([[0], np.cumsum(per_chunk)])
    first = 0  # chunk index
    for entry in entries:
        count = len(entry.spans)
        entry.tokens = (ids[bounds[first]:bounds[first + count]].copy(),
                        per_chunk[first:first + count].copy())
        first += count
    header_ids, header_lengths = encode_flat(tokenizer, [e.header for e in entries],
                                             unique=True)
    header_ends = np.cumsum(header_lengths)
    for entry, end, length in zip(entries, header_ends.tolist(), header_lengths.tolist()):
        entry.header_tokens = header_ids[end - length:end].copy()
    return outcomes


def _worker_start(parent: int) -> None:
    """In a worker: die with the parent (even on SIGKILL), leave Ctrl-C to it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed pipe ends the worker
        pass
    if os.getppid() != parent:  # the parent died before prctl
        os._exit(1)


def _worker_count(workers: int | None, total_bytes: int) -> int:
    if workers is not None:
        return max(0, workers)
    if total_bytes < WORKERS_MIN_BYTES:
        return 0  # starting processes costs more than it saves
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return min(MAX_WORKERS, cores) if cores > 1 else 0


def _prepared(to_read: list, max_file_bytes: int, tokenizer, workers: int | None,
              total_bytes: int, should_stop):
    """Yield (source, info, row, outcome of prepare_file) for ``to_read``, in its order.

    With workers, the files are read, parsed, chunked and tokenized in other processes
    while this one writes to SQLite; results come back in order (the same rows and
    stream whatever the timing) and at most WORKER_AHEAD_BYTES are in flight."""
    def job(source, info, row):
        known = row.sha256 if row is not None and row.status == "live" else None
        return (str(source.root / info.relpath), info.relpath, info.size, info.mtime_ns,
                info.format, max_file_bytes, known, _label(source, info.relpath))

    groups: list[list] = [[]]  # a few files per task: fewer round trips, larger encodes
    size = 0
    for item in to_read:
        if groups[-1] and (len(groups[-1]) >= WORKER_TASK_FILES or size >= WORKER_TASK_BYTES):
            groups.append([])
            size = 0
        groups[-1].append(item)
        size += item[1].size or 0
    count = _worker_count(workers, total_bytes)
    backend = _plain_backend(tokenizer) if tokenizer is not None and count else None
    if not count or (tokenizer is not None and backend is None):  # (a slow tokenizer: here)
        for group in groups:
            if should_stop():
                return
            outcomes = prepare_files([job(*item) for item in group], tokenizer)
            yield from ((*item, outcome) for item, outcome in zip(group, outcomes))
        return
    done = 0  # groups yielded
    with _Workers(count, backend.to_str() if backend is not None else None) as pool:
        for group in groups:
            pool.submit([job(*item) for item in group], sum(i[1].size or 0 for i in group))
            while pool.in_flight_bytes >= WORKER_AHEAD_BYTES or pool.in_flight >= 4 * count:
                outcomes = pool.next_result()
                if outcomes is None or should_stop():
                    break
                yield from ((*item, outcome) for item, outcome in zip(groups[done], outcomes))
                done += 1
            else:
                continue
            break
        while done < len(groups) and pool.in_flight and not should_stop():
            outcomes = pool.next_result()
            if outcomes is None:
                break
            yield from ((*item, outcome) for item, outcome in zip(groups[done], outcomes))
            done += 1
    for group in groups[done:]:  # only when a worker died: the rest in this process
        if should_stop():
            return
        outcomes = prepare_files([job(*item) for item in group], tokenizer)
        yield from ((*item, outcome) for item, outcome in zip(group, outcomes))


class _Workers:
    """Worker processes for ``_prepare_files``: each a fresh ``python -c`` (nothing of this
    process is copied or re-run in it) fed pickled tasks on stdin, answering on stdout in
    order. Tasks go round-robin and results are taken in submission order, so the output
    does not depend on timing. A worker ends when its stdin closes, and dies with this
    process even when it is SIGKILLed (PR_SET_PDEATHSIG). ``next_result`` returns None once
    a worker has failed; the caller then does the rest itself."""

    def __init__(self, count: int, tokenizer_json: str | None):
        import queue
        import subprocess
        import sys
        import threading

        code_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [code_root, *filter(None, [os.environ.get("PYTHONPATH")])]),
            TOKENIZERS_PARALLELISM="false")
        self.processes, self.results, self.threads = [], [], []
        self.submitted = self.taken = 0
        self.sizes: list[int] = []
        self.failed = False
        for _ in range(count):
            process = subprocess.Popen(
                [sys.executable, "-c",
                 f"from ingest.pipeline import _worker_main; _worker_main({os.getpid()})"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env, cwd=code_root)  # ("-c" puts the cwd first
            # on sys.path: an `ingest` folder where memex was started must not be imported)
            results: queue.Queue = queue.Queue()
            thread = threading.Thread(target=self._drain, args=(process.stdout, results),
                                      daemon=True)
            thread.start()
            self.processes.append(process)
            self.results.append(results)
            self.threads.append(thread)
            self._send(process, tokenizer_json)

    @staticmethod
    def _drain(stdout, results) -> None:
        import pickle

        while True:
            try:
                results.put(pickle.load(stdout))
            except Exception:  # noqa: BLE001  EOF or any broken stream: the worker is gone
                results.put(None)
                return

    def _send(self, process, payload) -> None:
        import pickle

        try:
            pickle.dump(payload, process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
            process.stdin.flush()
        except OSError:  # it died: found when its result is asked for
            self.failed = True

    @property
    def in_flight(self) -> int:
        return self.submitted - self.taken

    @property
    def in_flight_bytes(self) -> int:
        return sum(self.sizes[self.taken:self.submitted])

    def submit(self, jobs: list[tuple], size: int) -> None:
        self._send(self.processes[self.submitted % len(self.processes)], jobs)
        self.sizes.append(size)
        self.submitted += 1

    def next_result(self) -> list[tuple] | None:
        if self.failed or self.taken >= self.submitted:
            return None
        outcomes = self.results[self.taken % len(self.processes)].get()
        if outcomes is None:
            self.failed = True
            return None
        self.taken += 1
        return outcomes

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, *exc) -> None:
        import subprocess

        for process in self.processes:
            try:
                process.stdin.close()
            except OSError:
                pass
        for process in self.processes:
            try:
                process.wait(timeout=1 if exc[0] is None else 0.01)
            except subprocess.TimeoutExpired:  # busy with a task we no longer want
                process.kill()
                process.wait()
        for thread in self.threads:
            thread.join(timeout=5)


def _worker_main(parent: int) -> None:
    """A worker process: tokenizer definition first, then task after task until EOF."""
    import pickle
    import sys

    _worker_start(parent)
    gc.freeze()  # (the imports' objects: see _old_objects_left_alone)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the results
    tokenizer_json = pickle.load(stdin)
    tokenizer = None
    if tokenizer_json is not None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_str(tokenizer_json)
    while True:
        try:
            jobs = pickle.load(stdin)
        except EOFError:
            return
        pickle.dump(prepare_files(jobs, tokenizer), stdout,
                    protocol=pickle.HIGHEST_PROTOCOL)
        stdout.flush()


def _parse(info: FileInfo, data: bytes):
    reader = reader_for(info.relpath)
    try:
        if not data.strip():
            raise SkipFile("empty file")
        result = reader.read(data, info.relpath)
        entries = assign_entries(result, info.relpath, info.mtime_ns or time.time_ns())
        if not entries:
            raise SkipFile("no text")
    except SkipFile as exc:
        return exc
    except RecursionError:
        return SkipFile("file too deeply nested to parse")
    except Exception as exc:  # a reader bug or a pathological file must not stop the run
        return SkipFile(f"could not parse ({type(exc).__name__}: {str(exc)[:160]})")
    return result, entries


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
    except AttributeError:  # Python 3.10 cannot ask: SQLite's smallest default
        variables = 999
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


# -- phase 2: the stream ---------------------------------------------------
class PreTokens:
    """Token ids of entries' chunks tokenized while reading (by the workers), kept for the
    stream phase of the same run. They live in an unnamed temporary file in the data home
    (private; it vanishes when closed or when the process dies, killed or not), and are
    recorded only after the rows they belong to are committed. An entry found here with
    the same number of chunks as in the store is appended from these ids; any other is
    tokenized from its text, so a missing or partial file changes nothing but the speed."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.file = None
        self.size = 0
        self.entry_ids = array("q")  # ascending (ids of rows inserted by this run)
        self.offsets = array("q")
        self.chunks = array("q")
        self.header_sizes = array("q")  # bytes of the header text the header ids encode
        self.header_counts = array("q")

    def __enter__(self) -> PreTokens:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None

    def add(self, entry_id: int, ids: np.ndarray, per_chunk: np.ndarray, header: str = "",
            header_ids: np.ndarray | None = None) -> None:
        """Keep an entry's chunk ids (and its header's, with the header they encode)."""
        if self.entry_ids and entry_id <= self.entry_ids[-1]:
            return  # (ids only grow within a run; keep the index sorted regardless)
        if self.file is None:
            import tempfile

            self.file = tempfile.TemporaryFile(dir=self.folder)  # O_TMPFILE: never named
        header_bytes = header.encode("utf-8") if header_ids is not None else b""
        header_ids = header_ids if header_ids is not None else np.zeros(0, TOKEN_DTYPE)
        data = b"".join([header_bytes, np.ascontiguousarray(header_ids, TOKEN_DTYPE).tobytes(),
                         np.ascontiguousarray(per_chunk, dtype="<i8").tobytes(),
                         np.ascontiguousarray(ids, dtype=TOKEN_DTYPE).tobytes()])
        os.pwrite(self.file.fileno(), data, self.size)
        self.entry_ids.append(entry_id)
        self.offsets.append(self.size)
        self.chunks.append(len(per_chunk))
        self.header_sizes.append(len(header_bytes))
        self.header_counts.append(len(header_ids))
        self.size += len(data)

    def take(self, entry_id: int, header: str = ""
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(token ids, ids per chunk, the header's ids or None if kept for another header
        than ``header``) of an entry, or None if not here."""
        at = bisect.bisect_left(self.entry_ids, entry_id)
        if at == len(self.entry_ids) or self.entry_ids[at] != entry_id:
            return None
        offset, chunk_count = self.offsets[at], self.chunks[at]
        header_size, header_count = self.header_sizes[at], self.header_counts[at]
        head = os.pread(self.file.fileno(), header_size + 4 * header_count + 8 * chunk_count,
                        offset)
        if len(head) != header_size + 4 * header_count + 8 * chunk_count:
            return None
        header_ids = None
        if header_size and head[:header_size] == header.encode("utf-8"):
            header_ids = np.frombuffer(head, dtype=TOKEN_DTYPE, count=header_count,
                                       offset=header_size)
        per_chunk = np.frombuffer(head, dtype="<i8", offset=header_size + 4 * header_count)
        total = int(per_chunk.sum())
        ids = np.frombuffer(os.pread(self.file.fileno(), 4 * total, offset + len(head)),
                            dtype=TOKEN_DTYPE)
        if len(ids) != total:
            return None
        return ids, per_chunk.astype(np.int64), header_ids


def _chunk_ids_of(entry_ids: list[int], query) -> dict[int, list[int]]:
    """{entry id: [chunk id] in order} for many entries at once (from the index alone)."""
    found: dict[int, list[int]] = {entry_id: [] for entry_id in entry_ids}
    for start in range(0, len(entry_ids), 500):
        ids = entry_ids[start:start + 500]
        ids += [-1] * (500 - len(ids))  # always 500 (no entry has id -1): one statement
        marks = ",".join("?" * len(ids))
        for entry_id, chunk_id in query(
                f"SELECT entry_id, id FROM chunks WHERE entry_id IN ({marks}) "
                "ORDER BY entry_id, ordinal", ids):
            found[entry_id].append(chunk_id)
    return found


def _texts_of(entry_id: int, query, texts: dict[int, str], size: int
              ) -> tuple[list[int], int]:
    """An entry's chunk ids in order; adds their texts to ``texts``, their length to ``size``."""
    chunk_ids = []
    for chunk_id, text in query(
            "SELECT id, text FROM chunks WHERE entry_id = ? ORDER BY ordinal", [entry_id]):
        chunk_ids.append(chunk_id)
        texts[chunk_id] = text
        size += len(text)
    return chunk_ids, size


def _encode_sliced(tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """encode_flat a slice at a time (bounded memory even for a huge entry)."""
    parts, lengths = [], np.zeros(len(texts), dtype=np.int64)
    index = 0
    while index < len(texts):
        size, stop = 0, index
        while stop < len(texts) and (stop == index or size < TOKENIZE_SLICE_CHARS):
            size += len(texts[stop])
            stop += 1
        flat, lengths[index:stop] = encode_flat(tokenizer, texts[index:stop])
        parts.append(flat)
        index = stop
    flat = np.concatenate(parts) if parts else np.zeros(0, dtype=TOKEN_DTYPE)
    return flat, lengths


def stream_pending(store: Store, tokenizer, report: IngestReport | None = None, progress=None,
                   should_stop=None, pretokens: PreTokens | None = None) -> int:
    """Tokenize pending entries, oldest first, and append them to the stream.

    Each entry is its header's tokens then each chunk's (every text encoded alone, so
    the ids do not depend on how entries are batched or where they were tokenized).
    A thread with its own connection prepares the next batch (token ids, chunk ids and
    their token ranges) while this one writes the last (SQLite writes without the GIL)."""
    report = report or IngestReport()
    progress = progress or NullProgress()
    should_stop = should_stop or (lambda: False)
    order = array("q", (row[0] for row in store.db.execute(
        "SELECT id FROM entries WHERE status = 'pending' ORDER BY date, document_id, ordinal")))
    if not order:
        return 0
    store.ensure_stream(tokenizer)
    progress.phase("stream", len(order), "entries")
    appended = 0
    with _StreamBatches(store, tokenizer, pretokens, order) as batches:
        for batch in batches:
            if should_stop():
                break
            with store.write():
                base = store.begin_append()
                store.stream.write_at(base, batch.ids, sync=False)
                end = base + len(batch.ids)
                store.commit_append(end)
                store.db.conn.executemany(
                    "UPDATE chunks SET token_start = ?, token_end = ?, status = 'live' "
                    "WHERE id = ?", zip((batch.chunk_starts + base).tolist(),
                                        (batch.chunk_ends + base).tolist(), batch.chunk_ids))
                store.db.conn.executemany("UPDATE entries SET status = 'live' WHERE id = ?",
                                          [(entry_id,) for entry_id in batch.entry_ids])
                store.db.conn.executemany(
                    "INSERT INTO spans(token_start, token_end, entry_id, document_id, status) "
                    "VALUES (?, ?, ?, ?, 'live')",
                    zip((batch.entry_starts + base).tolist(), (batch.entry_ends + base).tolist(),
                        batch.entry_ids, batch.document_ids))
            entries = len(batch.entry_ids)
            del batch
            _give_back_freed_memory()
            appended += end - base
            report.entries_streamed += entries
            report.tokens_appended += end - base
            progress.advance(entries, tokens=end - base)
    progress.done()
    return appended


@dataclass
class _StreamBatch:
    """One batch of the stream phase, ready to write: its token ids and where each entry
    and chunk lands, counted from the batch's first token."""
    ids: np.ndarray
    entry_ids: list[int]
    document_ids: list[int]
    entry_starts: np.ndarray
    entry_ends: np.ndarray
    chunk_ids: list[int]
    chunk_starts: np.ndarray
    chunk_ends: np.ndarray


def _stream_batches(query, tokenizer, pretokens: PreTokens | None, order: array):
    """Yield the batches of ``order`` (entry ids in stream order), each ending after
    STREAM_BATCH_ENTRIES entries or STREAM_BATCH_CHARS characters (4 bytes a token).
    Each entry's ids come from the workers' file, else are tokenized from its text."""
    at = 0
    while at < len(order):
        wanted = order[at:at + STREAM_BATCH_ENTRIES].tolist()
        marks = ",".join("?" * STREAM_BATCH_ENTRIES)  # (padded: one statement)
        rows = {row[0]: row for row in query(
            f"SELECT id, document_id, header FROM entries WHERE id IN ({marks})",
            wanted + [-1] * (STREAM_BATCH_ENTRIES - len(wanted)))}
        ready, texts = {}, {}
        chunks_by_entry: dict[int, list[int]] = {}
        size = 0
        kept = []
        for entry_id in wanted:
            at += 1
            if entry_id not in rows:  # (gone since: nothing to append)
                continue
            kept.append(rows[entry_id])
            header = rows[entry_id][2]
            found = pretokens.take(entry_id, header) if pretokens is not None else None
            if found is not None:
                ready[entry_id] = found
                size += 4 * len(found[0])
            else:
                chunks_by_entry[entry_id], size = _texts_of(entry_id, query, texts, size)
            if size >= STREAM_BATCH_CHARS:
                break
        if not kept:
            continue
        chunks_by_entry.update(_chunk_ids_of(list(ready), query))
        for entry_id in list(ready):  # another chunk count than recorded: from the text
            if len(chunks_by_entry[entry_id]) != len(ready[entry_id][1]):
                del ready[entry_id]
                chunks_by_entry[entry_id], size = _texts_of(entry_id, query, texts, size)
        todo = [chunk_id for entry_id, _, _ in kept if entry_id not in ready
                for chunk_id in chunks_by_entry[entry_id]]
        encoded_ids, encoded_lengths = _encode_sliced(tokenizer, [texts[c] for c in todo])
        encoded_starts = np.concatenate([[0], np.cumsum(encoded_lengths)])
        headers = [ready[entry_id][2] if entry_id in ready else None
                   for entry_id, _, _ in kept]  # the workers' ids, else encoded here
        unencoded = [number for number, ids in enumerate(headers) if ids is None]
        encoded_header_ids, encoded_header_lengths = encode_flat(
            tokenizer, [kept[number][2] for number in unencoded], unique=True)
        ends = np.cumsum(encoded_header_lengths).tolist()
        for number, end, length in zip(unencoded, ends, encoded_header_lengths.tolist()):
            headers[number] = encoded_header_ids[end - length:end]
        pieces: list[np.ndarray] = []
        chunk_lengths: list[np.ndarray] = []  # per chunk: its tokens (the header's in the first)
        entry_lengths = np.zeros(len(kept), dtype=np.int64)
        position = 0  # in todo
        for number, (entry_id, _, _) in enumerate(kept):
            pieces.append(headers[number])
            if entry_id in ready:
                ids, per_chunk, _ = ready[entry_id]
            else:
                count = len(chunks_by_entry[entry_id])
                ids = encoded_ids[encoded_starts[position]:encoded_starts[position + count]]
                per_chunk = encoded_lengths[position:position + count]
                position += count
            pieces.append(ids)
            lengths = np.array(per_chunk, dtype=np.int64)
            if len(lengths):
                lengths[0] += len(headers[number])
            chunk_lengths.append(lengths)
            entry_lengths[number] = len(headers[number]) + len(ids)
        flat = np.concatenate(pieces) if pieces else np.zeros(0, dtype=TOKEN_DTYPE)
        entry_ends = np.cumsum(entry_lengths)
        entry_starts = entry_ends - entry_lengths
        # Chunks tile their entry from its start (an entry without chunks still takes
        # its header's room).
        chunk_ends = np.concatenate([start + np.cumsum(lengths) for start, lengths in
                                     zip(entry_starts.tolist(), chunk_lengths)] + [[]])
        chunk_starts = np.concatenate([start + np.cumsum(lengths) - lengths for start, lengths
                                       in zip(entry_starts.tolist(), chunk_lengths)] + [[]])
        yield _StreamBatch(
            ids=flat, entry_ids=[row[0] for row in kept], document_ids=[row[1] for row in kept],
            entry_starts=entry_starts, entry_ends=entry_ends,
            chunk_ids=[c for entry_id, _, _ in kept for c in chunks_by_entry[entry_id]],
            chunk_starts=chunk_starts.astype(np.int64), chunk_ends=chunk_ends.astype(np.int64))


class _StreamBatches:
    """``_stream_batches`` run one batch ahead in a thread with its own read connection
    (the rows it reads do not change while the stream phase writes). Iterating yields
    the batches in order; an error in the thread is raised here."""

    def __init__(self, store: Store, tokenizer, pretokens: PreTokens | None, order: array):
        import queue
        import threading

        self.store, self.tokenizer, self.pretokens, self.order = store, tokenizer, pretokens, \
            order
        self.ready: queue.Queue = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="memex-stream-batches",
                                       daemon=True)

    def __enter__(self) -> _StreamBatches:
        self.thread.start()
        return self

    def _put(self, item) -> bool:
        import queue

        while not self.stopping.is_set():
            try:
                self.ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(str(self.store.db_path), timeout=60)
            try:
                for batch in _stream_batches(conn.execute, self.tokenizer, self.pretokens,
                                             self.order):
                    if not self._put(("batch", batch)):
                        return
                self._put(("end", None))
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001  handed to the writing thread
            self._put(("error", exc))

    def __iter__(self):
        while True:
            kind, item = self.ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise item
            yield item

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self.thread.join()
