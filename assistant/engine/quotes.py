"""The user's own sentences as the evidence of an answer: which of the chosen sentences
an answer quotes, and how a whole answer is written out (a short answer, then the quotes
verbatim with their dates and files).

On real diaries the small model often answers wrongly from the right entry, while one
sentence of that entry holds the answer almost every time. So an answer always ends with
that sentence, quoted as written, where the reader can check it; the model's short
answer above it is a convenience, held to the quotes' words (``grounding``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from assistant.engine.prompting import Sentence, content_words, spoken_date

NOTES_DONT_SAY = "The notes don't say."
MAX_QUOTES = 3
# A second or third quote must score at least this share of the best one's score: the
# best sentence usually answers; a weak runner-up only adds reading.
QUOTE_SHARE = 0.8
SHORT_WORDS = 15  # a short answer is one sentence of at most this many words
QUOTE_WORDS = 90  # words of all quotes together: an answer stays readable (a diary's
# sentence can run to a hundred words; the longest are shown in part)


@dataclass
class Quote:
    """A sentence of an entry, verbatim, with the entry's date and file."""

    text: str
    date: str | None
    path: str
    root: str = ""
    score: float = 0.0
    cut_before: bool = False  # the sentence goes on before / after the quoted part
    cut_after: bool = False

    def public(self) -> dict:
        """The keys promised by ``--json``: date, path, text (verbatim, a part of the
        sentence where it was cut)."""
        return {"date": self.date, "path": self.path, "text": self.text}


def choose_quotes(sentences: Sequence[Sentence], passages: Sequence,
                  limit: int = MAX_QUOTES, share: float = QUOTE_SHARE,
                  pool: Sequence[Sentence] = (), question: str = "",
                  budget: int = QUOTE_WORDS) -> list[Quote]:
    """The best one to ``limit`` sentences as quotes, best first: the top sentence, and
    others scoring at least ``share`` of it. A sentence that is not, as written, part of
    its entry's text (markup was rewritten for reading) is not quoted. One that leans on
    the sentence before it ("They played Paper Moth as the last encore.") is quoted with
    that sentence when ``pool`` (all the sentences looked at) holds it. Together the
    quotes keep to ``budget`` words: a longer first quote is cut to the run of its words
    that holds most of the ``question``'s, the rest are left out."""
    ranked = sorted(sentences, key=lambda s: -s.score)
    by_place = {(s.passage_index, s.position): s for s in [*pool, *sentences]}
    quotes: list[Quote] = []
    for sentence in ranked:
        if len(quotes) >= limit:
            break
        if quotes and sentence.score < share * quotes[0].score:
            break
        if quotes and _DATE_LINE.fullmatch(sentence.text):
            continue  # "May 1": a date line adds nothing to a quote
        passage = passages[sentence.passage_index]
        text = passage.text or ""
        start = text.find(sentence.text)
        if start < 0:
            continue
        end = start + len(sentence.text)
        before = by_place.get((sentence.passage_index, sentence.position - 1))
        if _LEANS_BACK.match(sentence.text) and before is not None:
            joined = text.rfind(before.text, 0, start)
            if joined >= 0 and "\n" not in text[joined:start]:
                start = joined
        quoted = text[start:end]
        if any(quoted in q.text or q.text in quoted for q in quotes):
            continue
        left = budget - sum(len(q.text.split()) for q in quotes)
        cut = (False, False)
        if len(quoted.split()) > left:
            if quotes:
                break
            quoted, cut = excerpt(quoted, question, left)
        quotes.append(Quote(text=quoted, date=passage.date, path=passage.path,
                            root=str(getattr(passage, "root", "") or ""),
                            score=round(sentence.score, 4), cut_before=cut[0], cut_after=cut[1]))
    return quotes


def excerpt(text: str, question: str, max_words: int) -> tuple[str, tuple[bool, bool]]:
    """The run of at most ``max_words`` words of ``text`` holding most of the question's
    content words (a substring, as written), and whether text was left out before and
    after it."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    if len(spans) <= max_words:
        return text, (False, False)
    wanted = set(content_words(question))
    hits = [bool(wanted & set(content_words(text[a:b]))) for a, b in spans]
    places = [i for i, hit in enumerate(hits) if hit]
    middle = sum(places) / len(places) if places else 0.0

    def fit(i: int) -> tuple:  # most of the question's words, then centred on them
        return sum(hits[i:i + max_words]), -abs(i + (max_words - 1) / 2 - middle), -i

    best = max(range(len(spans) - max_words + 1), key=fit)
    first, last = best, best + max_words - 1
    return text[spans[first][0]:spans[last][1]], (first > 0, last < len(spans) - 1)


_DATE_LINE = re.compile(r"[\W\d_]*(?:(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*"
                        r"[\W\d_]*)?", re.IGNORECASE)
# A sentence opening with one of these names something the sentence before it named.
_LEANS_BACK = re.compile(r"^(?:they|he|she|it|this|that|these|those|there|his|her|their|its)\b",
                         re.IGNORECASE)


def quote_lines(quotes: Sequence[Quote]) -> str:
    """The quotes as the answer shows them: each on its own line, then its date and file."""
    return "\n".join(f"> “{'…' if q.cut_before else ''}{q.text.strip()}{'…' if q.cut_after else ''}”"
                     f"\n  — {spoken_date(q.date)}, {q.path}" for q in quotes)


def render_answer(short: str, quotes: Sequence[Quote], closest: bool = False) -> str:
    """The whole answer: the short answer, then the quotes it rests on (``closest``: the
    notes did not answer, these are the nearest sentences)."""
    parts = [short.strip()] if short.strip() else []
    if quotes:
        lead = "The closest notes:\n" if closest else ""
        parts.append(lead + quote_lines(quotes))
    return "\n\n".join(parts)


def short_part(rendered: str) -> str:
    """The short answer of a rendered answer (what a later turn's prompt recalls of it)."""
    return re.split(r"\n\n(?:> |The closest notes:)", rendered, maxsplit=1)[0].strip()


def tidy_short(text: str) -> str:
    """The short answer as shown: its first line, no half-written character, ending with
    a full stop. (The emitter already stopped it after one sentence or ``SHORT_WORDS``.)"""
    text = text.replace("\ufffd", "").strip().split("\n")[0].strip()
    if text and text[-1].isalnum():  # only added to: what was streamed stays its start
        text += "."
    return text


def says_notes_dont_say(text: str) -> bool:
    """Whether an answer says the notes do not hold the answer."""
    lowered = text.lower().replace("’", "'")
    return any(phrase in lowered for phrase in (
        "notes don't say", "notes do not say", "don't say", "do not say", "not mentioned",
        "no mention", "couldn't find", "could not find", "doesn't say", "does not say"))
