"""``run``: one whole ingest, phase after phase (scan/diff/read, stream, embed), under the
data home's ingest lock and after finishing what a killed process left half done."""

from __future__ import annotations

import time
from pathlib import Path

from ingest.pipeline.append import stream_pending
from ingest.pipeline.checkpoint import _Checkpointer
from ingest.pipeline.heap import _old_objects_left_alone
from ingest.pipeline.report import IngestReport
from ingest.pipeline.sync import _sync_files
from ingest.pipeline.tokens import PreTokens
from ingest.progress import NullProgress
from ingest.recovery import recover
from ingest.store import DEFAULT_MAX_FILE_BYTES, Store, utc_now


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
        recover(store)
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
