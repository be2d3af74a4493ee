"""Finding what a question is about: hybrid search, the period's entries, and the
sentences of them that go into the prompt (methods of ``Engine``)."""

from __future__ import annotations

import re
from datetime import date

from assistant.engine import prompting
from assistant.engine.conversations import SourceRecord
from assistant.engine.dates import DateRange, strip_dates

# Sentences scoring below this (no shared content word, weak embedding match) mean
# "nothing relevant".
RELEVANCE_FLOOR = 0.3
CANDIDATE_FACTOR = 2  # entries searched for sentences = passages setting × this
RECALL_HEADING_TOKENS = 24  # an entry's first tokens (its date and file line) read with a later chunk


_NAME = re.compile(r"(?<![\w'’])[A-ZÀ-Þ][\w'’-]*(?:\s+[A-ZÀ-Þ][\w'’-]*)*")
# A lowercase word after a determiner or a preposition that takes a noun.
_THING = re.compile(r"\b(?:the|a|an|many|much|of|with)\s+([a-z][a-z-]{2,})\b")


class RetrievalMixin:
    """Search and sentence choice; uses ``self.store``, ``self.config``, ``self.embed``."""

    def unknown_names(self, question: str) -> list[str]:
        """Names in the question (capitalised words, not its first) that no entry holds:
        then the notes cannot say, whatever search finds for its other words."""
        from ingest.search import mentions

        names = []
        for match in _NAME.finditer(question):
            words = [w for w in match.group(0).split() if w.lower() not in prompting.NOT_NAMES]
            if match.start() == 0 and words and words[0] == match.group(0).split()[0]:
                words = words[1:]  # the question's first word is capitalised anyway
            name = re.sub(r"['’]s$", "", " ".join(words))  # "Biscuit's" names Biscuit
            if name and not mentions(self.store, name):
                names.append(name)
        return names

    def unknown_things(self, question: str) -> list[str]:
        """Things the question asks about that no entry names: a lowercase noun after
        "the", "a", "many", "of", "with" … ("the priest", "how many walrus") that the
        notes never use. Verbs and adjectives are often paraphrased ("woke" asked as
        "wake"), so only such nouns count; units ("kilos" for "kg") and -ly words do not."""
        from ingest.search import mentions

        things = []
        for match in _THING.finditer(question):
            word = match.group(1)
            if (word.lower() in prompting.UNIT_WORDS or word.endswith("ly")
                    or word.lower() in prompting.STOPWORDS):
                continue
            if not mentions(self.store, word):
                things.append(word)
        return list(dict.fromkeys(things))

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

    def recall_spans(self, passages, sentences, budget: int) -> list[dict]:
        """The stream spans a memory answer reads as stored rows (``Memory.recall_fork``):
        the chunks of the passages whose sentences were chosen (best first), then the
        other passages by rank, each led by its entry's heading (date and file) when the
        chunk does not start the entry, until ``budget`` tokens. Returned worst first, so
        the best passage ends nearest the question; each ``{start, end, date, path}``."""
        order = []
        for sentence in sorted(sentences, key=lambda s: -s.score):
            if sentence.passage_index not in order:
                order.append(sentence.passage_index)
        order += [index for index in range(len(passages)) if index not in order]
        chosen, total = [], 0
        for index in order:
            passage = passages[index]
            row = self.store.db.execute(
                "select c.token_start, c.token_end, min(s.token_start) from chunks c "
                "left join spans s on s.entry_id = c.entry_id and s.status = 'live' "
                "where c.id = ?", (passage.chunk_id,)).fetchone()
            if not row or row[0] is None or row[1] is None or row[1] <= row[0]:
                continue
            start, end, entry_start = row
            pieces = []
            if entry_start is not None and entry_start < start:
                pieces.append((entry_start, min(start, entry_start + RECALL_HEADING_TOKENS)))
            pieces.append((start, end))
            size = sum(b - a for a, b in pieces)
            if total + size > budget:
                if chosen:
                    break
                pieces = [(max(start, end - budget), end)]  # the one passage, cut to fit
                size = pieces[0][1] - pieces[0][0]
            chosen.append([{"start": int(a), "end": int(b), "date": passage.date,
                            "path": passage.path} for a, b in pieces])
            total += size
        return [piece for group in reversed(chosen) for piece in group]

    def recall_text(self, spans) -> str:
        """The words of recalled spans (``recall_spans``), from the stream."""
        return "\n\n".join(self.tokenizer.decode(self.store.stream.read(p["start"], p["end"]))
                             for p in spans)

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


def relevant_sentences(sentences) -> list:
    """The chosen sentences, or none when even the best is below the relevance floor.

    The floor decides "nothing relevant"; once the best sentence clears it, the others
    need only half of it (a date-filtered question's sentences score low on words)."""
    if not sentences or max(s.score for s in sentences) < RELEVANCE_FLOOR:
        return []
    return [s for s in sentences if s.score >= RELEVANCE_FLOOR / 2]
