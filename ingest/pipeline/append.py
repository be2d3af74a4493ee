"""Phase 2, the stream: ``stream_pending`` appends pending entries, oldest first, to the
token stream (from the workers' ids or tokenized from the stored text) and records
their spans; a thread with its own connection prepares the next batch
(``_StreamBatches``) while this one writes."""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

import vault
from ingest.pipeline.heap import _give_back_freed_memory
from ingest.pipeline.report import IngestReport
from ingest.pipeline.tokens import PreTokens, _encode_sliced
from ingest.progress import NullProgress
from ingest.store import Store
from ingest.stream.file import TOKEN_DTYPE
from ingest.stream.tokenizing import encode_flat

STREAM_BATCH_ENTRIES = 1000
STREAM_BATCH_CHARS = 2 * 1024 * 1024


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
            conn = vault.connect(self.store.db_path, timeout=60)
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
