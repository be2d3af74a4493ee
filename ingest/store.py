"""The store: one SQLite file (``<home>/memex.db``) plus the token stream file.

SQLite runs in WAL mode with foreign keys on, ``synchronous=FULL`` and
``secure_delete`` on (deleted rows are overwritten, not just unlinked). The schema
is built by numbered migration functions applied in order and recorded in
``_sqlite_migrations`` (sqlite-utils' migration sets).

Writers take ``BEGIN IMMEDIATE`` (the database write lock) for each step, so a
step is all-or-nothing. The stream's committed length lives in ``meta`` and
changes in the same transaction as the rows describing the new tokens; opening
the store cuts off any stream bytes past it (left by a killed append).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

import vault
from ingest.dates import UNDATED_RULES
from ingest.schema import migrations
from ingest.stream.file import StreamError, TokenStream, create_stream_file, read_header

DB_NAME = "memex.db"
STREAM_NAME = "stream.u32"
LOCK_NAME = "ingest.lock"
DEFAULT_MAX_FILE_BYTES = 50 * 1024 * 1024


class StoreError(RuntimeError):
    """The store cannot do what was asked (with a message meant for a person)."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Source:
    id: int
    root: Path
    only_file: str  # '' for a folder

    @property
    def path(self) -> Path:
        return self.root / self.only_file if self.only_file else self.root


@dataclass
class Span:
    """A chunk of the stream: which text a token range came from."""
    chunk_id: int
    entry_id: int
    document_id: int
    token_start: int
    token_end: int
    status: str
    path: str
    root: str
    date: str | None
    text: str


@dataclass
class EntryRecord:
    """One dated entry with its whole text."""
    entry_id: int
    document_id: int
    path: str
    root: str
    date: str | None
    date_rule: str | None
    title: str | None
    status: str
    text: str
    token_start: int | None
    token_end: int | None


def _private_file(path: Path) -> None:
    """Create ``path`` empty with mode 0600 if missing; tighten it if it exists."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    elif path.stat().st_mode & 0o077:
        path.chmod(0o600)


def ensure_private_home(home: Path) -> Path:
    home = Path(home).expanduser().absolute()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if home.stat().st_mode & 0o077:
        home.chmod(0o700)
    return home


class Store:
    """An open data home. Not thread-safe: open one per thread.

    Open it with ``open_store`` (``ingest.recovery``), which also finishes what a
    killed process left half done."""

    def __init__(self, home: Path | str, tokenizer=None):
        self.home = ensure_private_home(Path(home))
        self.db_path = self.home / DB_NAME
        self.stream_path = self.home / STREAM_NAME
        self.tokenizer = tokenizer
        self._holding_ingest_lock = False
        _private_file(self.db_path)
        for suffix in ("-wal", "-shm"):
            side = self.db_path.with_name(DB_NAME + suffix)
            if side.exists() and side.stat().st_mode & 0o077:
                side.chmod(0o600)
        try:
            conn = vault.connect(self.db_path, timeout=60, check_same_thread=False)
            self.db = sqlite_utils.Database(conn)
            self.db.execute("PRAGMA busy_timeout = 60000")
            self.db.enable_wal()
            self.db.execute("PRAGMA foreign_keys = ON")
            self.db.execute("PRAGMA synchronous = FULL")
            self.db.execute("PRAGMA secure_delete = ON")
            with self.write():
                migrations.apply(self.db)
        except vault.WrongPassphrase:
            raise
        except vault.database_errors() as exc:
            raise StoreError(f"cannot open {self.db_path}: {exc}") from None
        self.stream = TokenStream(self.stream_path, self.stream_tokens)

    # -- basics -----------------------------------------------------------
    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def write(self):
        """A write transaction holding the database write lock from the start."""
        if self.db.conn.in_transaction:
            raise StoreError("nested write transaction")
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.rollback()
            raise
        else:
            self.db.commit()

    def get_meta(self, key: str, default=None):
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return json.loads(row[0]) if row else default

    def set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        [key, json.dumps(value)])

    def delete_meta(self, key: str) -> None:
        self.db.execute("DELETE FROM meta WHERE key = ?", [key])

    def stream_tokens(self) -> int:
        return int(self.get_meta("stream_tokens", 0))

    @contextlib.contextmanager
    def ingest_lock(self, wait: bool = True):
        """One ingest, forget or compact at a time per data home (across processes)."""
        import fcntl

        if self._holding_ingest_lock:
            yield
            return
        path = self.home / LOCK_NAME
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                raise StoreError("another memex ingest is running on this data home") from None
            self._holding_ingest_lock = True
            try:
                yield
            finally:
                self._holding_ingest_lock = False
        finally:
            os.close(fd)  # closing releases the lock

    # -- crash recovery ---------------------------------------------------
    def zero_forgotten_spans(self) -> None:
        """Overwrite committed forgotten ranges with zeros (inside ``write()``; idempotent)."""
        rows = self.db.execute("SELECT id, token_start, token_end FROM spans "
                               "WHERE status = 'forgotten' AND zeroed = 0").fetchall()
        if rows and self.stream.exists:
            self.stream.zero([(start, end) for _, start, end in rows])
        if rows:
            self.db.conn.executemany("UPDATE spans SET zeroed = 1 WHERE id = ?",
                                     [(row[0],) for row in rows])

    # -- the stream -------------------------------------------------------
    def ensure_stream(self, tokenizer=None) -> TokenStream:
        """Create the stream file for ``tokenizer`` or check that it matches."""
        from ingest.stream.tokenizing import tokenizer_identity

        tokenizer = tokenizer or self.tokenizer
        if tokenizer is None:
            raise StoreError("a tokenizer is needed to add text to the stream")
        tok_id, tok_hash = tokenizer_identity(tokenizer)
        if not self.stream.exists:
            if self.stream_tokens():
                raise StoreError(f"{self.stream_path} is missing")
            meta = create_stream_file(self.stream_path, tok_id, tok_hash,
                                      self.get_meta("stream_id"))
            with self.write():
                self.set_meta("stream_id", meta["stream_id"])
            self.stream.reload_header()
        elif self.stream.tokenizer_hash != tok_hash:
            raise StoreError(
                f"the token stream was built with tokenizer {self.stream.tokenizer_id!r} "
                f"(hash {str(self.stream.tokenizer_hash)[:12]}), not {tok_id!r} "
                f"(hash {tok_hash[:12]}); use the data home's original model")
        return self.stream

    def begin_append(self) -> int:
        """Where the next tokens go (the committed end); call inside ``write()``."""
        start = self.stream_tokens()
        if self.stream.file_tokens() != start:
            self.stream.truncate(start)
        return start

    def commit_append(self, end: int) -> None:
        """Make the tokens written up to ``end`` durable and record them in this
        transaction (they count once the transaction commits)."""
        self.stream.sync()
        self.set_meta("stream_tokens", end)

    # -- memory rebuild flag ----------------------------------------------
    def memory_rebuild_needed(self) -> str | None:
        """Why the LongNet memory must be rebuilt from scratch, or None."""
        value = self.get_meta("memory_rebuild")
        return value.get("reason") if isinstance(value, dict) else None

    def mark_memory_rebuild(self, reason: str) -> None:
        def mark():
            self.set_meta("memory_rebuild", {"reason": reason, "at": utc_now()})
        if self.db.conn.in_transaction:
            mark()
        else:
            with self.write():
                mark()

    def clear_memory_rebuild(self) -> None:
        with self.write():
            self.delete_meta("memory_rebuild")

    # -- sources ----------------------------------------------------------
    def sources(self) -> list[Source]:
        return [Source(row[0], Path(row[1]), row[2]) for row in self.db.execute(
            "SELECT id, root, only_file FROM sources ORDER BY id")]

    # -- reading the index ------------------------------------------------
    def spans_for(self, token_start: int, token_end: int) -> list[Span]:
        """Chunks whose tokens overlap [token_start, token_end), in stream order.

        Chunks tile each entry's tokens (the entry header's tokens belong to its
        first chunk), so every committed token maps to one chunk unless forgotten.

        Forgotten ranges have no chunks; superseded and deleted ones are returned
        with that status."""
        first = self.db.execute(
            "SELECT max(token_start) FROM chunks WHERE token_start <= ?", [token_start]
        ).fetchone()[0]
        lower = first if first is not None else token_start
        rows = self.db.execute(
            """SELECT c.id, c.entry_id, c.document_id, c.token_start, c.token_end, c.status,
                      d.path, s.root, c.date, c.text
               FROM chunks c JOIN documents d ON d.id = c.document_id
               JOIN sources s ON s.id = d.source_id
               WHERE c.token_start >= ? AND c.token_start < ? AND c.token_end > ?
               ORDER BY c.token_start""", [lower, token_end, token_start]).fetchall()
        return [Span(*row) for row in rows]

    def live_spans(self) -> list[tuple[int, int]]:
        """Token ranges of live entries, in stream order (merged where adjacent)."""
        merged: list[list[int]] = []
        for start, end in self.db.execute(
                "SELECT token_start, token_end FROM spans WHERE status = 'live' "
                "ORDER BY token_start"):
            if merged and merged[-1][1] == start:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        return [(a, b) for a, b in merged]

    _ENTRY_SELECT = """
        SELECT e.id, e.document_id, d.path, s.root, e.date, e.date_rule, e.title, e.status,
               (SELECT group_concat(text, '') FROM
                    (SELECT text FROM chunks WHERE entry_id = e.id ORDER BY ordinal)),
               sp.token_start, sp.token_end
        FROM entries e JOIN documents d ON d.id = e.document_id
        JOIN sources s ON s.id = d.source_id
        LEFT JOIN spans sp ON sp.entry_id = e.id
    """

    def entry(self, entry_id: int) -> EntryRecord | None:
        """One entry with its full text."""
        row = self.db.execute(self._ENTRY_SELECT + " WHERE e.id = ?", [entry_id]).fetchone()
        return EntryRecord(*row) if row else None

    def entry_text(self, entry_id: int) -> str | None:
        record = self.entry(entry_id)
        return record.text if record else None

    def document_text(self, document_id: int) -> str | None:
        """The current text of a document (its live or pending entries, in order)."""
        rows = self.db.execute(
            self._ENTRY_SELECT + " WHERE e.document_id = ? AND e.status IN ('live', 'pending')"
            " ORDER BY e.ordinal", [document_id]).fetchall()
        if not rows:
            return None
        return "".join(EntryRecord(*row).text or "" for row in rows)

    def entries_between(self, since: str | None = None, until: str | None = None,
                        limit: int | None = None) -> list[EntryRecord]:
        """Current entries dated within [since, until] (ISO dates, inclusive), oldest first."""
        sql = self._ENTRY_SELECT + " WHERE e.status IN ('live', 'pending')"
        params: list = []
        if since:
            sql += " AND e.date >= ?"
            params.append(str(since)[:10])
        if until:
            sql += " AND e.date <= ?"
            params.append(str(until)[:10])
        sql += " ORDER BY e.date, d.path, e.ordinal"
        if limit:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [EntryRecord(*row) for row in self.db.execute(sql, params)]

    def document_path(self, document_id: int) -> tuple[str, str] | None:
        row = self.db.execute("SELECT s.root, d.path FROM documents d JOIN sources s "
                              "ON s.id = d.source_id WHERE d.id = ?", [document_id]).fetchone()
        return (row[0], row[1]) if row else None

    def memory_tokens(self) -> int:
        path = self.home / "memory" / "memory.json"
        try:
            return int(vault.files_for(path).read_json(path).get("tokens", 0))
        except (OSError, ValueError, TypeError, AttributeError, vault.VaultError):
            return 0

    def status(self) -> dict:
        """Everything `memex status` shows (the keys of `memex status --json`)."""
        q = self.db.execute
        by_status = dict(q("SELECT status, count(*) FROM documents GROUP BY status").fetchall())
        by_format = dict(q("SELECT coalesce(format, '?'), count(*) FROM documents "
                           "WHERE status = 'live' GROUP BY format").fetchall())
        first, last = q("SELECT min(date), max(date) FROM entries "
                        "WHERE status IN ('live', 'pending')").fetchone()
        skipped = [{"path": path, "root": root, "reason": reason} for path, root, reason in q(
            "SELECT d.path, s.root, d.error FROM documents d JOIN sources s ON s.id = d.source_id "
            "WHERE d.status = 'skipped' ORDER BY s.root, d.path")]
        sources = [{"root": root, "file": only or None, "documents": n} for root, only, n in q(
            "SELECT s.root, s.only_file, (SELECT count(*) FROM documents d WHERE "
            "d.source_id = s.id AND d.status = 'live') FROM sources s ORDER BY s.id")]
        live_chunks = q("SELECT count(*) FROM chunks WHERE status = 'live'").fetchone()[0]
        embedded = q("SELECT count(*) FROM embeddings e JOIN chunks c ON c.id = e.chunk_id "
                     "WHERE c.status = 'live'").fetchone()[0]
        dead = q("SELECT coalesce(sum(token_end - token_start), 0) FROM spans "
                 "WHERE status != 'live'").fetchone()[0]
        pending = q("SELECT count(*) FROM entries WHERE status = 'pending'").fetchone()[0]
        # Which rule dated the live entries; an "mtime" entry has no date of its own.
        date_rules = dict(q("SELECT coalesce(date_rule, 'none'), count(*) FROM entries "
                            "WHERE status = 'live' GROUP BY date_rule").fetchall())
        sizes = {}
        for name in (DB_NAME, DB_NAME + "-wal", STREAM_NAME):
            path = self.home / name
            sizes[name] = path.stat().st_size if path.exists() else 0
        return {
            "home": str(self.home),
            "encrypted": vault.is_encrypted(self.home),
            "documents": by_status.get("live", 0),
            "entries": q("SELECT count(*) FROM entries WHERE status = 'live'").fetchone()[0],
            "entries_pending": pending,
            "chunks": live_chunks,
            "skipped": skipped,
            "stream_tokens": self.stream_tokens(),
            "dead_tokens": dead,
            "memory_tokens": self.memory_tokens(),
            "memory_rebuild": self.memory_rebuild_needed(),
            "date_range": {"first": first, "last": last} if first else None,
            "date_rules": date_rules,
            "undated_entries": sum(date_rules.get(rule, 0) for rule in UNDATED_RULES),
            "by_format": by_format,
            "by_status": by_status,
            "embeddings": {"done": embedded, "missing": live_chunks - embedded},
            "last_ingest": self.get_meta("last_ingest_at"),
            "sources": sources,
            "tokenizer": self.stream.tokenizer_id if self.stream.exists else None,
            "bytes": sizes,
        }


__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "EntryRecord",
    "Source",
    "Span",
    "Store",
    "StoreError",
    "StreamError",
    "read_header",
]
