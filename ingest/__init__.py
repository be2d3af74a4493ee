"""ingest: journal and document folders → a durable, ever-growing token stream.

Everything lives in the data home: ``memex.db`` (SQLite: sources, documents,
revisions, entries, chunks, FTS5 index, stream spans, embeddings) and
``stream.u32`` (the token stream). ``ingest`` never imports ``assistant``; it
takes a tokenizer object (the model's: ``longnet.weights.load_tokenizer``).

Public API (stable)
-------------------
Opening and ingesting::

    store = ingest.open_store(home, tokenizer=None)      # -> Store (one per thread)
    ingest.add_source(store, path)                       # register a folder or a file
    report = ingest.run(store, tokenizer, embed=True)    # scan, diff, read, stream, embed
    ingest.forget(store, path); ingest.compact(store)
    ingest.Watcher(home, tokenizer, ...).start() / .stop()   # background watching

The token stream (what the LongNet memory reads)::

    stream = store.stream               # TokenStream
    len(stream)                         # committed tokens (follows other processes)
    stream.read(start, end)             # np.ndarray[uint32], a copy
    stream.tokenizer_id, stream.tokenizer_hash, stream.stream_id
    stream.prefix_hash(n)               # sha256 of the first n tokens
    store.spans_for(start, end)         # -> [Span]: chunk_id, entry_id, document_id,
                                        #    token_start/end, status, path, root, date, text
    store.live_spans()                  # [(start, end)] of live entries, merged
    store.memory_rebuild_needed()       # reason (str) or None; set by forget/compact
    store.mark_memory_rebuild(reason); store.clear_memory_rebuild()

Entries, for reflection and source viewers::

    store.entries_between(since, until)     # -> [EntryRecord] (ISO dates, inclusive)
    store.entry(entry_id) / store.entry_text(entry_id) / store.document_text(document_id)
    store.status()                          # the dict behind `memex status --json`

Search::

    from ingest.search import search
    search(store, query, since=None, until=None, limit=10, embedder=None)
        # -> [SearchResult]: path (relative to root), root, date, snippet, text (whole
        #    chunk), score, document_id, chunk_id, entry_id, title, date_rule; .as_json()
    from ingest.embeddings import load_embedder   # the bundled MiniLM (raises
        # EmbeddingsUnavailable with the pip command when it is not installed)

Stream text: every entry starts with ``# 2024-03-05 · journal/2024-03-05.md``
(date, source folder name / path) and a blank line, then its text. Entries are
appended oldest first within each ingest run; an edited file appends a new
revision (old spans become ``superseded``), a deleted file's spans become
``deleted``, a forgotten file's spans become ``forgotten`` and are zeroed.
"""

from ingest.compact import compact
from ingest.forget import forget
from ingest.pipeline import IngestReport, add_source, locate, run
from ingest.recovery import open_store
from ingest.store import EntryRecord, Span, Store, StoreError
from ingest.stream import StreamError, TokenStream
from ingest.watcher import Watcher

__all__ = [
           "EntryRecord",
           "IngestReport",
           "Span",
           "Store",
           "StoreError",
           "StreamError",
           "TokenStream",
           "Watcher",
           "add_source",
           "compact",
           "forget",
           "locate",
           "open_store",
           "run",
]
