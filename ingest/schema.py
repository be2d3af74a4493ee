"""The database schema: numbered migration functions in the ``memex-ingest`` set of
sqlite-utils, applied in order when a store opens and recorded in
``_sqlite_migrations``. A new schema change is a new numbered function at the end;
a released one never changes (existing data homes have it applied already)."""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

migrations = Migrations("memex-ingest")


@migrations()
def migration_001_initial(db: sqlite_utils.Database) -> None:
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);

        -- A folder (only_file = '') or a single file inside root.
        CREATE TABLE sources (
            id INTEGER PRIMARY KEY,
            root TEXT NOT NULL,
            only_file TEXT NOT NULL DEFAULT '',
            added_at TEXT NOT NULL,
            UNIQUE (root, only_file)
        );

        -- Paths inside a source that `memex forget` removed and scans must not bring back.
        CREATE TABLE exclusions (
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            PRIMARY KEY (source_id, path)
        );

        -- status: live | skipped | deleted.  error: why it was skipped.
        CREATE TABLE documents (
            id INTEGER PRIMARY KEY,
            source_id INTEGER NOT NULL REFERENCES sources(id) ON DELETE CASCADE,
            path TEXT NOT NULL,
            format TEXT,
            size INTEGER,
            mtime_ns INTEGER,
            sha256 TEXT,
            status TEXT NOT NULL,
            error TEXT,
            encoding TEXT,
            title TEXT,
            entry_date TEXT,
            date_rule TEXT,
            revision INTEGER NOT NULL DEFAULT 0,
            first_seen TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            UNIQUE (source_id, path)
        );
        CREATE INDEX documents_sha256 ON documents(sha256);
        CREATE INDEX documents_status ON documents(status);

        -- status: current | superseded | deleted
        CREATE TABLE revisions (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            size INTEGER,
            mtime_ns INTEGER,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            UNIQUE (document_id, number)
        );

        -- One dated entry of a document revision (a journal file can hold many).
        -- status: pending (not in the stream yet) | live | superseded | deleted
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            revision_id INTEGER NOT NULL REFERENCES revisions(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            date TEXT,
            date_rule TEXT,
            title TEXT,
            tags TEXT,
            header TEXT NOT NULL,
            status TEXT NOT NULL
        );
        CREATE INDEX entries_status_date ON entries(status, date, document_id, ordinal);
        CREATE INDEX entries_document ON entries(document_id);
        CREATE INDEX entries_revision ON entries(revision_id);

        -- Chunks tile their entry's text: text == entry_text[char_start:char_end].
        CREATE TABLE chunks (
            id INTEGER PRIMARY KEY,
            entry_id INTEGER NOT NULL REFERENCES entries(id) ON DELETE CASCADE,
            document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
            ordinal INTEGER NOT NULL,
            text TEXT NOT NULL,
            char_start INTEGER NOT NULL,
            char_end INTEGER NOT NULL,
            token_start INTEGER,
            token_end INTEGER,
            date TEXT,
            status TEXT NOT NULL
        );
        CREATE INDEX chunks_entry ON chunks(entry_id, ordinal);
        CREATE INDEX chunks_document ON chunks(document_id);
        CREATE INDEX chunks_token_start ON chunks(token_start);
        CREATE INDEX chunks_status_date ON chunks(status, date);

        CREATE VIRTUAL TABLE chunks_fts USING fts5(
            text, content='chunks', content_rowid='id',
            tokenize='porter unicode61 remove_diacritics 2'
        );
        CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END;
        CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
        END;
        CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
            INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
            INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
        END;

        -- The stream's ledger: every appended token range, one per entry.
        -- status: live | superseded | deleted | forgotten (bytes zeroed once zeroed = 1)
        CREATE TABLE spans (
            id INTEGER PRIMARY KEY,
            token_start INTEGER NOT NULL UNIQUE,
            token_end INTEGER NOT NULL,
            entry_id INTEGER REFERENCES entries(id) ON DELETE SET NULL,
            document_id INTEGER REFERENCES documents(id) ON DELETE SET NULL,
            status TEXT NOT NULL,
            zeroed INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX spans_entry ON spans(entry_id);
        CREATE INDEX spans_status ON spans(status);

        CREATE TABLE embeddings (
            chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,
            model TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL
        );
        """
    )


@migrations()
def migration_002_fts_merge_less_often(db: sqlite_utils.Database) -> None:
    """FTS5 merges 16 index segments of a level at a time instead of 4 (automerge; a
    level may hold 64 before a merge is forced), so each indexed byte is rewritten by
    fewer merges while a large folder is ingested: measured on 203 MB of chunks, 16.6-19.4
    -> 13.0-15.4 CPU-s to insert them with their FTS index. Searches read a few more
    segments (still milliseconds)."""
    db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('automerge', 16)")
    db.execute("INSERT INTO chunks_fts(chunks_fts, rank) VALUES ('crisismerge', 64)")
