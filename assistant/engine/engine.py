"""The answer engine: one question in, a grounded answer with its sources out.

Shared by the CLI and the TUI. Heavy things (store, tokenizer, models, memory) load on
first use, so a UI can start at once. One answer runs at a time (``self.lock``).
"""

from __future__ import annotations

import itertools
import threading
import time
from datetime import date
from pathlib import Path

from assistant.config import Config, load_config
from assistant.engine.answering import AnsweringMixin
from assistant.engine.decoding import DecodingMixin
from assistant.engine.memory import PINNED, RECALL_TOKENS, MemoryMixin
from assistant.engine.reflection import ReflectionMixin
from assistant.engine.results import EngineError
from assistant.engine.retrieval import RetrievalMixin
from assistant.engine.stems import answer_stem
from assistant.home import get_home

EMBED_CACHE = 20_000  # sentences whose embeddings an engine keeps (~31 MB)


class Engine(RetrievalMixin, AnsweringMixin, DecodingMixin, MemoryMixin, ReflectionMixin):
    """One data home's notes, models and memory, answering one question at a time.

    Its methods come from the parts of this package by responsibility: retrieval
    (search, sentence choice), answering (the four modes), decoding (prompt ids, the
    dense model), memory (the LongNet memory's load, catch-up and upkeep) and
    reflection; this class holds the shared state and loads each resource once."""

    def __init__(self, home: Path | str | None = None, config: Config | None = None,
                 today: date | None = None, store=None):
        self.home = Path(home) if home else get_home()
        self.config = config or load_config(self.home)
        if today is None and self.config.today:
            today = date.fromisoformat(self.config.today)
        self.today = today or date.today()
        self._store = store
        self._tokenizer = None
        self._dense = None
        self._longnet = None
        self._far_levels_trained = False  # set when a reader learned the far gates
        self._reader_kind = "none"  # which: "trained", "generic" or "none"
        self._memory = None
        self.memory_dtype = None  # what the memory computes in (None: ``self.dtype``)
        self._memory_stamp = None  # memory.json's (mtime, size) when loaded or saved here
        self._writer_lock = threading.RLock()  # ``memory_writer``: this process's side
        self._writer_fd = None
        self.recall_tokens = RECALL_TOKENS  # rows of retrieved passages a memory answer reads
        self.recall_as = "rows"  # or "text": the passages read again (a benchmark's baseline)
        # Hold a memory answer's words to the recalled passages' (as hybrid answers are to
        # their quotes)? Measured on the example questions it lost as many answers as it
        # won (3 of the first 15 either way; "Clint Yeastwood" became "the name we had for
        # it"): off, the model reads the rows and answers freely.
        self.ground_recall = False
        self._embedder = None
        self._embedder_failed = False
        self._embedded: dict[str, object] = {}  # text -> its embedding (``embed``)
        self._embed_lock = threading.Lock()
        self._dense_prefix = None  # (key, prefix ids, KV cache) reused across questions
        self.lock = threading.RLock()
        self._load_lock = threading.RLock()  # lazy loads: a warm-up thread and an answer

    # ----------------------------------------------------------------- resources

    @property
    def store(self):
        if self._store is None:
            import ingest

            self._store = ingest.open_store(self.home)
        return self._store

    def close(self) -> None:
        if self._store is not None and hasattr(self._store, "close"):
            self._store.close()
        self._store = None

    @property
    def device(self) -> str:
        import torch

        if self.config.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.config.device

    @property
    def dtype(self):
        import torch

        if self.config.dtype == "bfloat16" or (self.config.dtype == "auto" and self.device == "cuda"):
            return torch.bfloat16
        return torch.float32

    @property
    def tokenizer(self):
        with self._load_lock:
            if self._tokenizer is None:
                from assistant.home import model_cache_dir
                from longnet.weights import load_tokenizer

                self._tokenizer = load_tokenizer(self.config.model, model_cache_dir())
        return self._tokenizer

    @property
    def dense_model(self):
        """The plain transformers model (retrieval and dense modes)."""
        with self._load_lock:
            if self._dense is None:
                from transformers.utils import logging as hf_logging

                from assistant.home import model_cache_dir
                from longnet.weights import load_hf_model

                hf_logging.disable_progress_bar()  # our own output stays readable
                model = load_hf_model(self.config.model, model_cache_dir(),
                                      attn_implementation="sdpa")
                self._dense = model.to(device=self.device, dtype=self.dtype)
        return self._dense

    @property
    def longnet_model(self):
        with self._load_lock:
            if self._longnet is None:
                import longnet
                from assistant.config import model_overrides
                from assistant.engine.trained import apply_reader
                from assistant.home import model_cache_dir
                from longnet.reader import far_gates_learned

                model = longnet.LongNetLM.from_pretrained(
                    self.config.model, cache_dir=model_cache_dir(), device=self.device,
                    **model_overrides(self.config))
                # What `memex train` learned from these notes, when it fits this model, reads
                # a turn's tokens only: the memory is always the base weights' (issue 18).
                self._reader_kind = apply_reader(model, self.home, self.config.reader)
                # far levels open to a turn only where the reader learned their gates
                self._far_levels_trained = (self._reader_kind != "none"
                                            and far_gates_learned(model))
                if self.config.reader in ("trained", "generic") \
                        and self._reader_kind != self.config.reader:
                    how = ("run `memex train`" if self.config.reader == "trained" else
                           "the one memex ships was trained for the bundled model only")
                    raise EngineError(f"reader = {self.config.reader}, but there is no "
                                      f"{self.config.reader} reader for this model: {how}, "
                                      "or `memex config set reader auto`")
                self._longnet = model
        return self._longnet

    def use_longnet(self, model, memory=None) -> None:
        """Read with ``model`` (a LongNet model already loaded, reader and all) and, when
        given, ``memory`` instead of loading them: the reader's training shares one model
        between the data homes it learns from, and its turns read a memory it never saves."""
        from longnet.reader import far_gates_learned

        with self._load_lock:
            self._longnet = model
            self._reader_kind = "trained" if getattr(model, "reader", None) is not None \
                else "none"
            self._far_levels_trained = far_gates_learned(model)
            if memory is not None:
                self._memory = memory
                self._memory_stamp = PINNED  # never saved: never read again from disk

    def _reader_in_use(self) -> str:
        """Which reader reads a turn: "trained" (``memex train``'s), "generic" or "none"."""
        model = self._longnet
        if model is None or getattr(model, "reader", None) is None:
            return "none"
        return self._reader_kind

    @property
    def memory_dir(self) -> Path:
        return self.home / "memory"

    def embed(self, texts: list[str]):
        """L2-normalised embeddings of ``texts`` (numpy), or None when no embedder is there.
        Sentences seen before come from a bounded cache: a long-lived engine (the warm
        server, the TUI) meets the same entries' sentences question after question."""
        if not self.config.embeddings or self._embedder_failed:
            return None
        with self._load_lock:
            if self._embedder is None and not self._embedder_failed:
                try:
                    from ingest.embeddings import load_embedder

                    self._embedder = load_embedder()
                except Exception:  # no embedding model installed: retrieval works on words
                    self._embedder_failed = True
        if self._embedder is None:
            return None
        import numpy as np

        with self._embed_lock:  # (a warm-up thread and an answer may embed at once)
            new = list(dict.fromkeys(t for t in texts if t not in self._embedded))
            if new:
                for text, vector in zip(new, self._embedder.embed(new), strict=True):
                    self._embedded[text] = vector
            vectors = [self._embedded[t] for t in texts]
            while len(self._embedded) > EMBED_CACHE:
                self._embedded.pop(next(iter(self._embedded)))  # the oldest first
        if not vectors:
            return np.zeros((0, self._embedder.dim), dtype=np.float32)
        return np.stack(vectors)

    def pre_embed(self, should_stop=lambda: False, batch: int = 16,
                  should_wait=lambda: False) -> int:
        """Embed the sentences of the newest entries before anyone asks, as ``gather``
        will (each chunk's sentences with their headings), up to the cache's size: the
        warm server's idle time, so a question's sentence choice finds them ready (it
        is ~0.25 s of a warm answer otherwise). Between batches it waits while
        ``should_wait()`` (a question is being answered: the CPUs are its) and stops when
        ``should_stop()``. Returns the sentences embedded."""
        from assistant.engine.prompting import passage_sentences

        if self.embed([]) is None:
            return 0
        rows = self.store.db.execute(
            "SELECT c.text, e.title FROM chunks c JOIN entries e ON e.id = c.entry_id "
            "WHERE c.status IN ('live', 'pending') ORDER BY c.date DESC, c.id DESC").fetchall()
        texts = (f"{heading}: {sentence}" if heading else sentence
                 for text, title in rows for heading, sentence in passage_sentences(text, title))
        done = 0
        while not should_stop() and len(self._embedded) < EMBED_CACHE:
            if should_wait():
                time.sleep(0.05)
                continue
            taken = list(itertools.islice(texts, batch))
            if not taken:
                break  # every sentence is in the cache
            piece = [t for t in taken if t not in self._embedded]
            if piece:
                self.embed(piece)
                done += len(piece)
        return done

    # ----------------------------------------------------------------- status

    def stream_tokens(self) -> int:
        return len(self.store.stream)

    def memory_info(self) -> dict:
        """What the saved memory holds, read from its metadata without loading the model."""
        import vault

        meta = self.memory_dir / "memory.json"
        info = {"tokens": 0, "state_bytes": 0, "path": str(self.memory_dir), "exists": False}
        if meta.is_file():
            try:
                data = vault.files_for(meta).read_json(meta)
                info.update(exists=True, tokens=int(data.get("tokens", 0)),
                            state_bytes=int(data.get("nbytes", data.get("state_bytes", 0)) or 0))
            except (OSError, ValueError, vault.VaultError):
                info["error"] = "memory.json is unreadable"
        if self._memory is not None:
            info.update(exists=True, tokens=self._memory.tokens, state_bytes=self._memory.nbytes)
        return info

    def memory_needs_rebuild(self) -> str | None:
        """Why the memory must be rebuilt from scratch (forget, compact), or None."""
        return self.store.memory_rebuild_needed()

    def status(self, wait: bool = True) -> dict | None:
        """Entries, stream tokens, memory lag, model and device, for status bars.

        With ``wait=False`` returns None at once while an answer holds the engine."""
        if not self.lock.acquire(blocking=wait):
            return None
        try:
            return self._status()
        finally:
            self.lock.release()

    def _status(self) -> dict:
        out = {"model": self.config.model, "device": self.device, "entries": None,
               "stream_tokens": None, "memory_tokens": None, "memory_lag": None}
        try:
            out["entries"] = self.entry_count()
            out["stream_tokens"] = self.stream_tokens()
        except Exception as exc:  # no store yet: still a useful status line
            out["error"] = str(exc)
            return out
        mem = self.memory_info()
        out["memory_tokens"] = mem["tokens"]
        out["memory_lag"] = max(0, out["stream_tokens"] - mem["tokens"])
        return out

    def entry_count(self) -> int:
        return int(self.store.db.execute(
            "select count(*) from entries where status in ('live', 'pending')").fetchone()[0])


    def warm_up(self, mode: str | None = None) -> threading.Thread:
        """Load what an answer in ``mode`` needs (tokenizer, embedder, the stems' word
        tables, model, memory, packed decode weights) in a background thread while a person
        types: the answer then finds them loaded, or waits for the load under way rather
        than loading twice. Failures are left for the answer to report."""
        mode = mode or self.config.mode

        def load():
            import torch

            try:
                _ = self.tokenizer
                if mode != "dense":  # the modes that search (by meaning too)
                    self.embed(["warm up"])
                if self.config.answer_stems:  # verb forms: lemminflect reads its tables once
                    answer_stem("What did we name the dog?")
                if mode in ("hybrid", "memory"):
                    self.load_memory()  # (not the store: its connection stays the caller's)
                    kind = self.config.decode_weights if self.dtype == torch.float32 \
                        else "float32"
                    self.longnet_model.pack_for_decoding(kind)
                else:
                    _ = self.dense_model
            except Exception:  # noqa: BLE001 — no traceback over the TUI: the answer
                return  # loads again and reports what cannot be loaded

        thread = threading.Thread(target=load, name="memex-warm-up", daemon=True)
        thread.start()
        return thread
