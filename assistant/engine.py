"""The answer engine: one question in, a grounded answer with its sources out.

Shared by the CLI and the TUI. Four modes:
- ``hybrid``: the LongNet memory of the whole stream + the best retrieved sentences
  in the prompt (the default);
- ``memory``: the LongNet memory only;
- ``retrieval``: the retrieved sentences with the plain dense model;
- ``dense``: the plain model over the last 8K tokens of the stream (the baseline).

Heavy things (store, tokenizer, models, memory) load on first use, so a UI can
start at once. One answer runs at a time (``self.lock``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from assistant import prompting
from assistant.config import MODES, Config, load_config
from assistant.conversations import SourceRecord
from assistant.dates import DateRange, resolve_dates, strip_dates
from assistant.grounding import grounded_chooser
from assistant.stems import answer_stem

DENSE_CONTEXT = 8192
QUESTION_ROOM = 256  # tokens kept free after the dense window for the question
# Memory behind the stream by at most this many tokens is caught up before answering;
# more than that is left to `memex memory build` and the answer says how far behind.
CATCH_UP_LIMIT = 4096
# Sentences scoring below this (no shared content word, weak embedding match) mean
# "nothing relevant".
RELEVANCE_FLOOR = 0.3
CANDIDATE_FACTOR = 2  # entries searched for sentences = passages setting × this
SAVE_EVERY_S = 60.0
CATCH_UP_CHUNK = 2048  # stream tokens read into the memory per step


class EngineError(RuntimeError):
    """A problem the user can act on (no data yet, model missing, ...)."""


class Stopped(Exception):
    """Raised from a token callback to stop generation; the partial answer is kept."""


@dataclass
class Answer:
    question: str
    mode: str
    text: str = ""
    sources: list[SourceRecord] = field(default_factory=list)
    timings: dict = field(default_factory=lambda: {"ttft_s": None, "total_s": None,
                                                   "tokens_per_s": None})
    date_range: DateRange | None = None
    notes: list[str] = field(default_factory=list)  # caveats shown with the answer
    status: str = "complete"  # complete | partial | nothing_found
    prompt_tokens: int = 0
    new_tokens: int = 0
    memory_lag: int | None = None

    def to_json(self) -> dict:
        return {"answer": self.text, "sources": [s.public() for s in self.sources],
                "timings": self.timings}


@dataclass
class Reflection:
    label: str
    start: date | None
    end: date | None
    text: str = ""
    entries: int = 0
    dates: list[str] = field(default_factory=list)
    people: list[tuple[str, int]] = field(default_factory=list)
    themes: list[tuple[str, int]] = field(default_factory=list)
    moods: list[tuple[str, int]] = field(default_factory=list)
    weekly: list[tuple[str, int]] = field(default_factory=list)  # (week start, entries)
    sources: list[SourceRecord] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"period": self.label, "since": self.start and self.start.isoformat(),
                "until": self.end and self.end.isoformat(), "reflection": self.text,
                "entries": self.entries, "dates": self.dates,
                "people": [{"name": n, "count": c} for n, c in self.people],
                "themes": [{"word": w, "count": c} for w, c in self.themes],
                "moods": [{"word": w, "count": c} for w, c in self.moods],
                "weekly": [{"week": w, "entries": c} for w, c in self.weekly],
                "sources": [s.public() for s in self.sources], "timings": self.timings}


class _Timer:
    def __init__(self):
        self.start = time.perf_counter()
        self.first = None
        self.count = 0

    def token(self):
        self.count += 1
        if self.first is None:
            self.first = time.perf_counter()

    def timings(self) -> dict:
        end = time.perf_counter()
        ttft = (self.first or end) - self.start
        decode = end - (self.first or end)
        rate = (self.count - 1) / decode if self.count > 1 and decode > 0 else None
        return {"ttft_s": round(ttft, 3), "total_s": round(end - self.start, 3),
                "tokens_per_s": round(rate, 2) if rate else None}


class Engine:
    def __init__(self, home: Path | str | None = None, config: Config | None = None,
                 today: date | None = None, store=None):
        from assistant.home import get_home

        self.home = Path(home) if home else get_home()
        self.config = config or load_config(self.home)
        if today is None and self.config.today:
            today = date.fromisoformat(self.config.today)
        self.today = today or date.today()
        self._store = store
        self._tokenizer = None
        self._dense = None
        self._longnet = None
        self._far_levels_trained = False  # set when `memex train`'s adapter is applied
        self._memory = None
        self._embedder = None
        self._embedder_failed = False
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
                from assistant.home import model_cache_dir
                from assistant.trained import apply_trained_adapter

                model = longnet.LongNetLM.from_pretrained(
                    self.config.model, cache_dir=model_cache_dir(), device=self.device,
                    **model_overrides(self.config))
                # What `memex train` learned from these notes, when it fits this model.
                self._far_levels_trained = apply_trained_adapter(model, self.home)
                self._longnet = model
        return self._longnet

    @property
    def memory_dir(self) -> Path:
        return self.home / "memory"

    def embed(self, texts: list[str]):
        """L2-normalised embeddings of ``texts`` (numpy), or None when no embedder is there."""
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
        return self._embedder.embed(texts)

    # ----------------------------------------------------------------- status

    def stream_tokens(self) -> int:
        return len(self.store.stream)

    def memory_info(self) -> dict:
        """What the saved memory holds, read from its metadata without loading the model."""
        import json

        meta = self.memory_dir / "memory.json"
        info = {"tokens": 0, "state_bytes": 0, "path": str(self.memory_dir), "exists": False}
        if meta.is_file():
            try:
                data = json.loads(meta.read_text())
                info.update(exists=True, tokens=int(data.get("tokens", 0)),
                            state_bytes=int(data.get("nbytes", data.get("state_bytes", 0)) or 0))
            except (OSError, ValueError):
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

    # ----------------------------------------------------------------- retrieval

    def search(self, query: str, date_range: DateRange | None, limit: int,
               summaries: bool = False):
        """Passages for ``query`` in ``date_range``; with ``summaries`` (a count or total
        over a whole month or year is asked for) the entries titled with that period too."""
        from ingest.search import search

        embedder = self._embedder_for_search()
        if date_range is not None and date_range.month_day is not None:
            # "On this day": every year's entries of this month and day.
            return self.entries_on_this_day(date_range.month_day, query, limit)
        since = date_range.since if date_range else None
        until = date_range.until if date_range else None
        period = date_range.period if date_range and summaries else None
        return search(self.store, query, since=since, until=until, limit=limit, embedder=embedder,
                      period=period)

    def _embedder_for_search(self):
        if self.embed(["warm up"]) is None:
            return None
        return self._embedder

    def entries_on_this_day(self, month_day: tuple[int, int], query: str = "", limit: int = 20):

        results = []
        first, last = self.date_span()
        if first is None:
            return []
        for year in range(first.year, last.year + 1):
            try:
                day = date(year, *month_day).isoformat()
            except ValueError:  # 29 February
                continue
            results.extend(self.entries_between(day, day))
        return results[:limit]

    def entries_between(self, since: str | None, until: str | None, limit: int = 500):
        """Passages of entries dated in [since, until], oldest first (for reflect / on-this-day)."""
        return list(self.store.entries_between(since=since, until=until, limit=limit))

    def date_span(self) -> tuple[date | None, date | None]:
        row = self.store.db.execute(
            "select min(date), max(date) from entries where status in ('live', 'pending')").fetchone()
        if not row or not row[0]:
            return None, None
        return date.fromisoformat(row[0][:10]), date.fromisoformat(row[1][:10])

    def gather(self, question: str, date_range: DateRange | None):
        """Passages for a question and the sentences of them that go into the prompt."""
        query = strip_dates(question, self.today) or question
        if date_range is not None and not prompting.content_words(query):
            # "What did I do in February 2024?": the date is the whole question, so the
            # period's entries are the passages, each opening with its first lines.
            if date_range.month_day is not None:
                passages = self.entries_on_this_day(date_range.month_day, limit=self.config.passages)
            else:
                passages = self.entries_between(date_range.since, date_range.until,
                                                limit=self.config.passages)
            sentences = prompting.opening_sentences(passages, self.config.sentences + 2)
            return passages, sentences, False
        query = prompting.search_query(query)
        # Sentences are picked from more entries than the prompt will name: the entry
        # holding the answer often ranks below others that share the question's words.
        pool = self.config.passages * CANDIDATE_FACTOR
        quantity = prompting.asks_for_quantity(question)
        passages = list(self.search(query, date_range, pool, summaries=quantity))
        fell_back = False
        if not passages and date_range is not None:
            passages = list(self.search(query, None, pool))
            fell_back = bool(passages)
        weights = [1.0 / (1 + rank) for rank in range(len(passages))]
        # The period was taken out of the search words (the date filter holds it), but for
        # a count or a total over it, a line or heading naming it ("October 2023 in
        # numbers") is where the sum is.
        period = (date_range.period_name
                  if date_range is not None and quantity and not fell_back else None)
        sentences = prompting.select_sentences(query, passages, self.config.sentences,
                                               embed=self.embed, passage_weights=weights,
                                               period=period)
        return passages, sentences, fell_back

    # ----------------------------------------------------------------- answering

    def answer(self, question: str, mode: str | None = None,
               history: Sequence[tuple[str, str]] = (),
               on_token: Callable[[str], None] | None = None) -> Answer:
        """Answer ``question``; ``on_token`` receives text as it is generated.

        ``on_token`` may raise ``Stopped`` to end the answer early: the partial text is
        returned with status ``partial``.
        """
        mode = mode or self.config.mode
        if mode not in MODES:
            raise EngineError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
        question = question.strip()
        if not question:
            raise EngineError("the question is empty")
        with self.lock:
            timer = _Timer()
            answer = Answer(question=question, mode=mode)
            answer.date_range = resolve_dates(question, self.today)
            notes_text = None
            if mode in ("hybrid", "retrieval", "memory"):
                passages, sentences, fell_back = self.gather(question, answer.date_range)
                relevant = relevant_sentences(sentences)
                if mode != "memory":
                    if not relevant:
                        return self._nothing_found(answer, timer, on_token)
                    notes_text = prompting.format_notes(relevant)
                    answer.sources = self._sources(passages, relevant)
                else:
                    # The memory cannot point at what it used: show what search found.
                    answer.sources = self._sources(passages, relevant or sentences)
                if fell_back:
                    answer.notes.append(f"nothing matched in {answer.date_range.label}; "
                                        "these entries are from other dates")
            date_label = answer.date_range.label if answer.date_range else None
            messages = prompting.answer_messages(question, notes_text, history, date_label)
            emit = self._emitter(answer, timer, on_token)
            # The model finishes a sentence begun with the question's words (stems.py).
            stem = answer_stem(question) if self.config.answer_stems else None
            stem_ids = self.tokenizer.encode(stem, add_special_tokens=False) if stem else []
            prompt_ids = self._chat_ids(messages) + stem_ids
            answer.prompt_tokens = len(prompt_ids)
            choose = None  # the model's own choice; grounded: held to the notes
            if self.config.grounded and notes_text:
                choose = grounded_chooser(notes_text, question, self._pick, self.tokenizer,
                                          emit.ids, stop_ids=emit.stop_ids,
                                          given=len(stem_ids))
            try:
                emit.begin_with(stem_ids)
                if mode in ("retrieval",):
                    self._generate_dense(prompt_ids, emit, choose=choose)
                elif mode == "dense":
                    self._generate_dense_window(messages, emit, answer, stem_ids)
                else:
                    # hybrid: the retrieved notes are the turn's local text and the memory
                    # comes in through the far levels (the raw tail of the history in the
                    # window crowds the notes out); memory: the window reads the history.
                    self._generate_memory(prompt_ids, emit, answer,
                                          isolate_window=mode == "hybrid", choose=choose)
            except Stopped:
                answer.status = "partial"
            answer.text = emit.text.strip()
            answer.new_tokens = timer.count
            answer.timings = timer.timings()
            return answer

    def _nothing_found(self, answer: Answer, timer: _Timer, on_token) -> Answer:
        text = prompting.NOTHING_FOUND
        if answer.date_range is not None:
            text = f"I couldn't find anything about that in your notes from {answer.date_range.label}."
        timer.token()
        if on_token:
            on_token(text)
        answer.text = text
        answer.status = "nothing_found"
        answer.timings = timer.timings()
        return answer

    def _sources(self, passages, sentences) -> list[SourceRecord]:
        """One source per passage that gave a prompt sentence, best first; snippet = its sentences."""
        by_passage: dict[int, list] = {}
        for sentence in sorted(sentences, key=lambda s: -s.score):
            by_passage.setdefault(sentence.passage_index, []).append(sentence)
        out = []
        for index, chosen in by_passage.items():
            passage = passages[index]
            chosen.sort(key=lambda s: s.position)
            out.append(SourceRecord(
                path=passage.path, date=passage.date, root=str(getattr(passage, "root", "") or ""),
                snippet=" … ".join(s.text for s in chosen), text=passage.text or "",
                document_id=getattr(passage, "document_id", None),
                chunk_id=getattr(passage, "chunk_id", None),
                score=round(max(s.score for s in chosen), 4)))
        return out

    def _chat_ids(self, messages: list[dict]) -> list[int]:
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)

    class _Emit:
        """Turns generated ids into text pieces (decoding whole text: safe for multi-byte)."""

        def __init__(self, tokenizer, on_token, timer, stop_ids):
            self.tokenizer, self.on_token, self.timer = tokenizer, on_token, timer
            self.ids: list[int] = []
            self.text = ""
            self.stop_ids = stop_ids
            self.done = False

        def begin_with(self, ids: list[int]):
            """The answer's first words are given (a stem): show them and go on from them."""
            if not ids:
                return
            self.ids.extend(int(i) for i in ids)
            self.text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if self.on_token:
                self.on_token(self.text)

        def __call__(self, token_id: int) -> bool:
            """Take one token; returns True when the answer is finished."""
            if token_id in self.stop_ids:
                self.done = True
                return True
            self.timer.token()
            self.ids.append(int(token_id))
            text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
            if text.endswith("\ufffd"):
                return False  # half a character: wait for the rest
            piece, self.text = text[len(self.text):], text
            head = self.text.strip().split("\n\n")[0]
            if "\n\n" in self.text.strip() and not head.rstrip().endswith(":"):
                # One short answer is wanted; a blank line means the model moved on
                # (unless it was only the lead-in, "The answer is:").
                self.text = head
                self.done = True
                return True
            if piece and self.on_token:
                self.on_token(piece)
            return False

    def _emitter(self, answer, timer, on_token):
        stop = {self.tokenizer.eos_token_id}
        for token in ("<|im_end|>", "<|endoftext|>", "<|im_start|>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id >= 0:
                stop.add(token_id)
        return self._Emit(self.tokenizer, on_token, timer, stop)

    # -- dense model

    def _pick(self, logits):
        import torch

        temperature = self.config.temperature
        if temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        sorted_probs, order = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < self.config.top_p
        sorted_probs = sorted_probs * keep
        choice = torch.multinomial(sorted_probs / sorted_probs.sum(), 1)
        return int(order[choice])

    def _generate_dense(self, prompt_ids: list[int], emit, prefix_key=None, prefix_ids=None,
                        choose=None):
        """Greedy/sampled decoding with the dense model and its KV cache.

        With ``prefix_key``, the KV of ``prefix_ids`` is kept and reused by the next call
        with the same key (the dense mode's 8K window is the same for every question).
        """
        import torch
        from transformers import DynamicCache

        model = self.dense_model
        device = model.device
        with torch.inference_mode():
            if prefix_key is not None:
                if self._dense_prefix is None or self._dense_prefix[0] != prefix_key:
                    self._dense_prefix = None
                    cache = DynamicCache()
                    ids = torch.tensor([prefix_ids], device=device)
                    model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
                    self._dense_prefix = (prefix_key, len(prefix_ids), cache)
                _, prefix_len, cache = self._dense_prefix
                extra = cache.get_seq_length() - prefix_len  # the previous question's tokens
                if extra > 0:
                    cache.crop(-extra)
            else:
                cache = DynamicCache()
            ids = torch.tensor([prompt_ids], device=device)
            for _ in range(self.config.max_new_tokens):
                out = model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1)
                token = (choose or self._pick)(out.logits[0, -1])
                if emit(token) or emit.done:
                    break
                ids = torch.tensor([[token]], device=device)

    def _generate_dense_window(self, messages, emit, answer: Answer, stem_ids=()):
        """The baseline: the last 8K tokens of the stream, then the question."""
        tokenizer = self.tokenizer
        question = messages[-1]["content"]
        head = self._chat_ids(messages[:-1] + [{"role": "user", "content": "\x00"}])
        split = _find_marker(tokenizer, head)
        head_ids, tail_ids = head[:split[0]], head[split[1]:]
        question_ids = tokenizer.encode("\n\n" + question, add_special_tokens=False)
        tail_ids = question_ids + tail_ids + list(stem_ids)
        # A fixed room for the question keeps the window (and its cached KV) the same
        # from one question to the next.
        room = max(QUESTION_ROOM, len(tail_ids))
        budget = DENSE_CONTEXT - len(head_ids) - room - self.config.max_new_tokens
        stream = self.store.stream
        total = len(stream)
        start = max(0, total - max(0, budget))
        window = [int(t) for t in stream.read(start, total)] if total else []
        prefix_ids = head_ids + tokenizer.encode("Notes:\n", add_special_tokens=False) + window
        answer.prompt_tokens = len(prefix_ids) + len(tail_ids)
        if not answer.sources:
            answer.sources = self._window_sources(start, total, answer.question)
        self._generate_dense(tail_ids, emit, prefix_key=("dense", start, total, tuple(head_ids)),
                             prefix_ids=prefix_ids)

    def _window_sources(self, start: int, end: int, question: str) -> list[SourceRecord]:
        """Entries inside the dense window, those sharing most words with the question first."""
        spans = getattr(self.store, "spans_for", None)
        if spans is None or end <= start:
            return []
        passages = list(spans(start, end))
        if not passages:
            return []
        sentences = prompting.select_sentences(question, passages, self.config.sentences)
        return self._sources(passages, [s for s in sentences if s.score > 0])

    # -- LongNet memory

    def load_memory(self):
        """The saved memory (or a fresh one), loaded once."""
        with self._load_lock:
            if self._memory is None:
                from longnet import Memory

                model = self.longnet_model
                if (self.memory_dir / "memory.json").is_file():
                    self._memory = Memory.load(self.memory_dir, model)
                else:
                    self._memory = model.memory()
        return self._memory

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
                    from assistant.stems import answer_stem

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

    def memory_lag(self) -> int:
        return max(0, self.stream_tokens() - self.memory_info()["tokens"])

    def _generate_memory(self, prompt_ids: list[int], emit, answer: Answer,
                         isolate_window: bool = False, choose=None):
        if self.memory_needs_rebuild():
            answer.notes.append("the memory holds text that was since forgotten or compacted and "
                                "is not used until `memex memory build` rebuilds it")
            memory = self.longnet_model.memory()
        else:
            try:
                memory = self.load_memory()
            except (ValueError, OSError) as exc:  # made by another model, config or version
                answer.notes.append(f"the saved memory cannot be used ({exc}); "
                                    "run `memex memory rebuild`")
                memory = self.longnet_model.memory()  # this answer only
                memory.unusable = True
            lag = self.stream_tokens() - memory.stream_offset
            if 0 < lag <= CATCH_UP_LIMIT and not getattr(memory, "unusable", False):
                self.catch_up(memory)
                lag = 0
            answer.memory_lag = max(0, lag)
            if lag > 0:
                answer.notes.append(f"the memory is {lag:,} tokens behind your notes; "
                                    "run `memex memory build` to bring it up to date")

        # Untrained far levels only perturb a hybrid turn's reading of its notes (with
        # them, 55 of the 114 example answers changed and 6 fewer were right): until
        # `memex train` has taught them, the hybrid turn reads its notes as the plain model.
        shut = isolate_window and not self._far_levels_trained
        with self.longnet_model.far_levels_shut() if shut else contextlib.nullcontext():
            memory.generate(prompt_ids, max_new_tokens=self.config.max_new_tokens,
                            temperature=self.config.temperature, top_p=self.config.top_p,
                            stop_ids=sorted(emit.stop_ids), isolate_window=isolate_window,
                            on_token=lambda token_id: not emit(int(token_id)),  # False stops
                            choose=choose, decode_weights=self.config.decode_weights)

    def catch_up(self, memory=None, chunk: int | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 should_stop: Callable[[], bool] | None = None) -> int:
        """Feed the stream's new tokens into the memory and save it. Returns tokens added."""
        memory = memory or self.load_memory()
        chunk = chunk or CATCH_UP_CHUNK
        stream = self.store.stream
        total = len(stream)
        before = memory.stream_offset
        last_save = time.monotonic()
        try:
            while memory.stream_offset < total:
                if should_stop and should_stop():
                    break
                start = memory.stream_offset
                end = min(total, start + chunk)
                memory.append(stream.read(start, end), return_logits=False, stream_offset=end)
                if progress:
                    progress(end, total)
                if time.monotonic() - last_save > SAVE_EVERY_S:  # a kill loses little
                    self.save_memory(memory)
                    last_save = time.monotonic()
        finally:
            # Ctrl-C or a stop request keeps everything read so far.
            self.save_memory(memory)
        return memory.stream_offset - before

    def refresh(self, progress: Callable[[str], None] | None = None,
                should_stop: Callable[[], bool] | None = None, chunk: int = 1024) -> None:
        """Background upkeep for the TUI: ingest changed files, then feed new stream tokens
        into the memory a chunk at a time, letting answers go first between chunks."""
        say = progress or (lambda text: None)
        stop = should_stop or (lambda: False)
        with self.lock:
            reason = self.memory_needs_rebuild()
            if reason:
                say(f"memory needs a rebuild ({reason}): run `memex memory rebuild`")
                return
            memory = self.load_memory()
        last_save = time.monotonic()
        try:
            while not stop():
                with self.lock:
                    total = self.stream_tokens()
                    start = memory.stream_offset
                    if start >= total:
                        break
                    end = min(total, start + chunk)
                    memory.append(self.store.stream.read(start, end), return_logits=False,
                                  stream_offset=end)
                say(f"memory {end:,}/{total:,} tokens")
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    with self.lock:
                        self.save_memory(memory)
                    last_save = time.monotonic()
        finally:
            with self.lock:
                self.save_memory(memory)

    def start_watcher(self, say: Callable[[str], None], on_change: Callable[[], None] | None = None):
        """ingest's watcher in a background thread (its own store connection); its
        progress goes to ``say`` as short lines. Returns the watcher (``.stop()``)."""
        from ingest import Watcher
        from ingest.progress import NullProgress

        class Lines(NullProgress):
            def __init__(self):
                self.name, self.total, self.count = "", None, 0

            def phase(self, name, total=None, unit="files"):
                self.name, self.total, self.count, self.unit = name, total, 0, unit
                say(f"{name}…")

            def advance(self, amount=1, **counters):
                self.count += amount
                of = f"/{self.total:,.0f}" if self.total else ""
                say(f"{self.name} {self.count:,.0f}{of} {self.unit}")

            def done(self):
                say("")

            def note(self, message):
                say(message)

        watcher = Watcher(self.home, self.tokenizer, embed=self.config.embeddings,
                          progress=Lines(), on_pass=lambda report: on_change and on_change(),
                          on_error=lambda exc: say(f"watcher: {exc}"))
        watcher.start()
        return watcher

    def save_memory(self, memory=None):
        memory = memory or self._memory
        if memory is not None:
            memory.save(self.memory_dir)

    # ----------------------------------------------------------------- reflect

    def reflect(self, start: date | None, end: date | None, label: str,
                on_token: Callable[[str], None] | None = None,
                month_day: tuple[int, int] | None = None) -> Reflection:
        """A reflection on the entries of a period: facts counted from the entries, and a
        short text written by the model from a sample of their sentences."""
        with self.lock:
            timer = _Timer()
            reflection = Reflection(label=label, start=start, end=end)
            if month_day is not None:
                passages = self.entries_on_this_day(month_day, limit=200)
            else:
                passages = self.entries_between(start and start.isoformat(),
                                                end and end.isoformat())
            passages = [p for p in passages if p.date]
            passages.sort(key=lambda p: p.date)
            by_entry: dict[tuple[str, str], list] = {}
            for passage in passages:
                by_entry.setdefault((passage.date[:10], passage.path), []).append(passage)
            reflection.entries = len(by_entry)
            reflection.dates = sorted({d for d, _ in by_entry})
            reflection.weekly = weekly_counts(reflection.dates, start, end)
            texts = ["\n".join(p.text or "" for p in group) for group in by_entry.values()]
            reflection.people = prompting.recurring_names(texts)
            reflection.themes = prompting.recurring_themes(texts, exclude=[n for n, _ in reflection.people])
            reflection.moods = prompting.mood_words(texts)
            if not by_entry:
                reflection.text = f"There are no entries from {label}."
                reflection.timings = timer.timings()
                return reflection
            sample = prompting.sample_sentences(
                [(d, "\n".join(p.text or "" for p in group)) for (d, _), group in by_entry.items()],
                limit=10)
            notes = "\n".join(f"[{d}] {text}" for d, text in sample)
            reflection.sources = [
                SourceRecord(path=group[0].path, date=d, snippet=_first_line(group[0].text),
                             root=str(getattr(group[0], "root", "") or ""), text=group[0].text or "")
                for (d, _), group in by_entry.items() if d in {x for x, _ in sample}]
            prompt_ids = self._chat_ids(prompting.reflect_messages(label, notes))
            emit = self._emitter(Answer(question="", mode="retrieval"), timer, on_token)
            saved = self.config.max_new_tokens
            self.config.max_new_tokens = saved * 4  # a few sentences, not one
            try:
                self._generate_dense(prompt_ids, emit)
            except Stopped:
                pass
            finally:
                self.config.max_new_tokens = saved
            reflection.text = emit.text.strip()
            reflection.timings = timer.timings()
            return reflection


def relevant_sentences(sentences) -> list:
    """The chosen sentences, or none when even the best is below the relevance floor.

    The floor decides "nothing relevant"; once the best sentence clears it, the others
    need only half of it (a date-filtered question's sentences score low on words)."""
    if not sentences or max(s.score for s in sentences) < RELEVANCE_FLOOR:
        return []
    return [s for s in sentences if s.score >= RELEVANCE_FLOOR / 2]


def _first_line(text: str | None, width: int = 160) -> str:
    for sentence in prompting.split_sentences(text or ""):
        return sentence if len(sentence) <= width else sentence[: width - 1] + "…"
    return ""


def weekly_counts(dates: Sequence[str], start: date | None, end: date | None) -> list[tuple[str, int]]:
    """Entries per week (weeks start on Monday), empty weeks included, from start to end."""
    days = [date.fromisoformat(d[:10]) for d in dates]
    if not days and (start is None or end is None):
        return []
    first = start or min(days)
    last = end or max(days)
    if days:
        first, last = min(first, min(days)), max(last, max(days))
    week = first - timedelta(days=first.weekday())
    counts: dict[date, int] = {}
    while week <= last:
        counts[week] = 0
        week += timedelta(weeks=1)
    for day in days:
        monday = day - timedelta(days=day.weekday())
        counts[monday] = counts.get(monday, 0) + 1
    return [(w.isoformat(), n) for w, n in sorted(counts.items())]


def _find_marker(tokenizer, ids: list[int]) -> tuple[int, int]:
    """Where the placeholder user content sits in a templated prompt: (start, end) indices."""
    marker = tokenizer.encode("\x00", add_special_tokens=False)
    for i in range(len(ids) - len(marker), -1, -1):
        if ids[i:i + len(marker)] == marker:
            return i, i + len(marker)
    raise EngineError("could not place the notes inside the chat template")


def period_range(kind: str, today: date) -> tuple[date, date, str]:
    """The current week / month / year up to today."""
    if kind == "week":
        start = today - timedelta(days=6)
        return start, today, f"the week to {today.isoformat()}"
    if kind == "month":
        start = today - timedelta(days=29)
        return start, today, f"the 30 days to {today.isoformat()}"
    start = today - timedelta(days=364)
    return start, today, f"the year to {today.isoformat()}"
