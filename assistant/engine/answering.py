"""Answering a question in one of the four modes (methods of ``Engine``).

- ``hybrid``: the LongNet memory of the whole stream + the best retrieved sentences
  in the prompt (the default);
- ``memory``: the LongNet memory only;
- ``retrieval``: the retrieved sentences with the plain dense model;
- ``dense``: the plain model over the last 8K tokens of the stream (the baseline).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assistant.config import MODES
from assistant.engine import counting, prompting
from assistant.engine.conversations import SourceRecord
from assistant.engine.dates import DateRange, resolve_dates
from assistant.engine.grounding import grounded_chooser
from assistant.engine.quotes import (
    MAX_QUOTES,
    NOTES_DONT_SAY,
    Quote,
    choose_quotes,
    quote_lines,
    render_answer,
    tidy_short,
)
from assistant.engine.results import EngineError, Stopped, Timer
from assistant.engine.retrieval import relevant_sentences
from assistant.engine.short_answer import asks_for_date, best_clause, date_answer, names_something
from assistant.engine.stems import answer_stem


@dataclass
class Answer:
    question: str
    mode: str
    text: str = ""  # the whole answer as shown: the short answer, then the quotes
    short: str = ""  # the short answer shown ("" when the quotes support none)
    generated: str = ""  # what the model wrote (held to the quotes: it points at the short)
    quotes: list[Quote] = field(default_factory=list)  # verbatim sentences, best first
    sources: list[SourceRecord] = field(default_factory=list)
    timings: dict = field(default_factory=lambda: {"ttft_s": None, "total_s": None,
                                                   "tokens_per_s": None})
    date_range: DateRange | None = None
    notes: list[str] = field(default_factory=list)  # caveats shown with the answer
    status: str = "complete"  # complete | partial | nothing_found
    prompt_tokens: int = 0
    new_tokens: int = 0
    memory_lag: int | None = None
    memory: dict | None = None  # what of the memory the answer read (``memory_parts``)

    def to_json(self) -> dict:
        out = {"answer": self.text, "short": self.short,
               "quotes": [q.public() for q in self.quotes],
               "sources": [s.public() for s in self.sources], "timings": self.timings}
        if self.memory is not None:
            out["memory"] = self.memory
        return out


@dataclass
class MemoryTurn:
    """What a memory-mode answer reads, before it generates: the chat prompt (with the
    answer's stem at its end) and the stream spans whose stored rows stand in the window.
    The reader learns from turns made this way (``memex train``), so it learns to read
    exactly what answers give it."""

    prompt_ids: list[int]
    stem_ids: list[int]
    recall: list[tuple[int, int]] | None  # None: the window reads the history's last tokens


class AnsweringMixin:
    """``answer()``: gather, prompt, generate; uses the retrieval, decoding and memory parts."""

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
            timer = Timer()
            answer = Answer(question=question, mode=mode)
            answer.date_range = resolve_dates(question, self.today)
            notes_text = None
            if mode in ("hybrid", "retrieval") and counting.asks_to_count(question):
                counted = self._count(answer, timer, on_token)
                if counted is not None:
                    return counted
            recall = None
            if mode in ("hybrid", "retrieval", "memory"):
                passages, sentences, fell_back = self.gather(question, answer.date_range)
                relevant = relevant_sentences(sentences)
                answer.quotes = choose_quotes(relevant, passages, pool=sentences,
                                              question=question)
                if mode != "memory":
                    # A name no entry holds: whatever matched the question's other words
                    # cannot be about it.
                    missing = self.unknown_names(question) + self.unknown_things(question)
                    if missing:
                        answer.notes.append(f"your notes never mention {', '.join(missing)}")
                    if not answer.quotes or missing:
                        closest = choose_quotes(sentences, passages, limit=2, share=0.0,
                                                question=question)
                        return self._nothing_found(answer, timer, on_token, closest)
                    # The short answer is written from the quotes alone, held to their words.
                    notes_text = prompting.format_quotes(answer.quotes)
                    answer.sources = self._sources(passages, relevant)
                else:
                    # The memory reads the rows of what search found (when it keeps rows);
                    # the sources and quotes show what that was.
                    answer.sources = self._sources(passages, relevant or sentences)
                    if self.config.memory_rows:
                        recall = self.recall_spans(passages, relevant or sentences,
                                                   self.recall_tokens)
                    answer.quotes = answer.quotes or choose_quotes(sentences, passages, limit=2,
                                                                   question=question)
                if fell_back:
                    answer.notes.append(f"nothing matched in {answer.date_range.label}; "
                                        "these entries are from other dates")
                if notes_text and asks_for_date(question) and date_answer(answer.quotes):
                    # "When did I …": the answer is the date of the sentence that says it.
                    return self._extractive(answer, timer, on_token, date_answer(answer.quotes))
            date_label = answer.date_range.label if answer.date_range else None
            messages = prompting.answer_messages(question, notes_text, history, date_label,
                                                 persona=self.config.persona)
            # Held to the quotes, the model's answer points at the clause of them shown as
            # the short answer (short_answer.py): it is not streamed as it is written.
            held = self.config.grounded and bool(notes_text)
            generation = Timer() if held else timer
            emit = self._emitter(answer, generation, None if held else on_token, one_sentence=True)
            # The model finishes a sentence begun with the question's words (stems.py).
            stem = answer_stem(question) if self.config.answer_stems else None
            stem_ids = self.tokenizer.encode(stem, add_special_tokens=False) if stem else []
            prompt_ids = self._chat_ids(messages) + stem_ids
            answer.prompt_tokens = len(prompt_ids)
            # Every answer is held to never repeat itself; with quotes (grounded) also to
            # their words.
            try:
                emit.begin_with(stem_ids)
                # A memory answer that reads recalled rows can be held to those passages'
                # words (``ground_recall``; off: measured no better, README).
                ground_text, grounded = notes_text, held
                if not notes_text and recall and self.config.grounded and self.ground_recall:
                    ground_text = self.recall_text(recall)  # read only when it is used
                    grounded = bool(ground_text)
                choose = grounded_chooser(ground_text, question, self._pick, self.tokenizer,
                                          emit.ids, stop_ids=emit.stop_ids, given=len(stem_ids),
                                          ground=grounded, copy_words=grounded)
                if mode in ("retrieval",):
                    self._generate_dense(prompt_ids, emit, choose=choose)
                elif mode == "dense":
                    self._generate_dense_window(messages, emit, answer, stem_ids, choose=choose)
                else:
                    # hybrid: the retrieved notes are the turn's local text and the memory
                    # comes in through the far levels (the raw tail of the history in the
                    # window crowds the notes out); memory: the window reads the history.
                    self._generate_memory(prompt_ids, emit, answer,
                                          isolate_window=mode == "hybrid", choose=choose,
                                          recall=recall)
            except Stopped:
                answer.status = "partial"
            answer.generated = emit.text
            if held:
                short = best_clause(question, answer.quotes, hint=emit.text)
                if not short and names_something(tidy_short(emit.text), question, answer.quotes):
                    short = tidy_short(emit.text)
                rate = generation.timings()["tokens_per_s"]
                self._extractive(answer, timer, on_token, short)
                answer.new_tokens = generation.count
                answer.timings["tokens_per_s"] = rate
                return answer
            self._finish(answer, emit.text, on_token)
            answer.new_tokens = timer.count
            answer.timings = timer.timings()
            return answer

    def memory_turn(self, question: str) -> MemoryTurn:
        """The prompt and recalled spans a ``memory`` answer to ``question`` reads (as
        ``answer`` builds them; no generation)."""
        question = question.strip()
        date_range = resolve_dates(question, self.today)
        passages, sentences, _ = self.gather(question, date_range)
        recall = None
        if self.config.memory_rows:
            relevant = relevant_sentences(sentences)
            spans = self.recall_spans(passages, relevant or sentences, self.recall_tokens)
            rows = getattr(self.load_memory(), "rows", None)
            recall = [(p["start"], p["end"]) for p in spans
                      if rows is not None and rows.covers(p["start"], p["end"])] or None
        messages = prompting.answer_messages(question, None, (),
                                             date_range.label if date_range else None,
                                             persona=self.config.persona)
        stem = answer_stem(question) if self.config.answer_stems else None
        stem_ids = self.tokenizer.encode(stem, add_special_tokens=False) if stem else []
        return MemoryTurn(self._chat_ids(messages) + stem_ids, stem_ids, recall)

    def _extractive(self, answer: Answer, timer: Timer, on_token, short: str) -> Answer:
        """An answer whose short part is taken, not generated: shown whole at once."""
        timer.token()
        answer.short = short
        answer.text = render_answer(short, answer.quotes)
        if on_token:
            try:
                on_token(answer.text)
            except Stopped:
                answer.status = "partial"
        answer.timings = timer.timings()
        return answer

    def _count(self, answer: Answer, timer: Timer, on_token) -> Answer | None:
        """"How many times did I write about …": the entries of the period that mention
        it, counted; a sentence of each of the first ones quoted. None when the question
        names nothing the notes hold (it is then answered as any other)."""
        from ingest.search import entries_mentioning, mentions

        thing = counting.counted_thing(answer.question, lambda p: mentions(self.store, p))
        if thing is None:
            return None
        span = answer.date_range
        entries = entries_mentioning(self.store, thing, span.start if span else None,
                                     span.end if span else None)
        if not entries:
            return None
        for entry in entries:
            sentence = counting.mentioning_sentence(entry.text or "", thing)
            if sentence and sentence not in (entry.text or ""):
                sentence = None  # rewritten for reading (a list bullet, a link): not a quote
            if sentence and len(answer.quotes) < MAX_QUOTES:
                answer.quotes.append(Quote(text=sentence, date=entry.date, path=entry.path,
                                           root=str(entry.root or "")))
            answer.sources.append(SourceRecord(
                path=entry.path, date=entry.date, root=str(entry.root or ""),
                snippet=sentence or (entry.text or "")[:200], text=entry.text or "",
                document_id=entry.document_id))
        answer.notes.append(f"counted the entries that mention {thing!r}")
        return self._extractive(answer, timer, on_token,
                                counting.count_answer([e.date for e in entries]))

    def _finish(self, answer: Answer, generated: str, on_token) -> None:
        """The short answer tidied, the quotes after it (streamed too), the whole text."""
        answer.short = tidy_short(generated)
        answer.text = render_answer(answer.short, answer.quotes)
        if on_token and answer.status != "partial":
            # What was streamed is the short answer's beginning: send the rest of it.
            streamed = generated.strip()
            try:
                if answer.short.startswith(streamed) and answer.short != streamed:
                    on_token(answer.short[len(streamed):])
                if answer.quotes:
                    on_token("\n\n" + quote_lines(answer.quotes))
            except Stopped:  # stopped while the quotes were going out: all is said
                answer.status = "partial"

    def _nothing_found(self, answer: Answer, timer: Timer, on_token,
                       closest: Sequence[Quote] = ()) -> Answer:
        """The notes don't say: that, and the closest sentences there are."""
        short = NOTES_DONT_SAY
        if answer.date_range is not None:
            short = f"The notes from {answer.date_range.label} don't say."
        timer.token()
        answer.short = short
        answer.quotes = list(closest)
        answer.text = render_answer(short, answer.quotes, closest=True)
        if on_token:
            on_token(answer.text)
        answer.status = "nothing_found"
        answer.timings = timer.timings()
        return answer
