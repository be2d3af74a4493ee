"""The short answer above the quotes: a clause of the user's own sentences.

Asked for a one-sentence answer from the quotes, the small model often restates the
question ("The old naturalist I met on.") or glues words into broken English; what it
does well is point: its answer usually names the thing asked for ("The Land Rail.").
So the short answer is the clause of the quotes that holds what the model named and
what the question asks for (a number for "how much", a name for "who / where / which"),
copied as the user wrote it. A "when" question is answered with the date of the quote
that answers it.

Measured on the saved answers of bench/answers.py (2026-12-07): the model's own short
answers held the accepted answer for 32–48 % of the questions of each set; the clause
the model points at, for 58–74 %.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import pairwise

from assistant.engine.grounding import ASKS_FOR_DATE
from assistant.engine.prompting import content_words, focus_words, spoken_date

SHORT_WORDS = 15
# What kind of word the question asks for.
_ASKS_FOR_NUMBER = re.compile(
    r"^\s*how\s+(?:many|much|long|far|old|often|fast|high|deep)\b|\bwhat\s+time\b"
    r"|\b(?:time|salary|rent|cost|price|fee|score|distance|pace|total)\b", re.IGNORECASE)
_ASKS_FOR_NAME = re.compile(
    r"^\s*(?:who|whom|whose|where|which)\b|\bname\b|\bcalled\b"
    r"|\bwhat\s+(?:kind|make|sort|song|book|city|town|company|nationality|paper|newspaper|"
    r"shop|restaurant|film|play|hotel|inn|place|street)\b", re.IGNORECASE)
_NUMBER_WORDS = frozenset("""one two three four five six seven eight nine ten eleven twelve
thirteen fourteen fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty
sixty seventy eighty ninety hundred thousand once twice""".split())
# Where a clause may begin or end: after punctuation that closes a phrase (not the comma or
# colon inside "£1,400" or "1:58:14"), at a sentence's end, and before a conjunction.
_AFTER = re.compile(r"[,;:](?!\d)|[()—–]|[.!?][”\"’)]*\s+(?=[A-Z“\"‘(])")
_BEFORE = re.compile(r"\s(?=(?:and|but|which|who|where|when|so|as|though|because|while)\s)")
_CAPITALISED = re.compile(r"(?<![\w'’])[A-ZÀ-Þ][\w'’-]*")
_EDGE = " ,;:—–*_"
def asks_for_date(question: str) -> bool:
    return bool(ASKS_FOR_DATE.search(question))


def date_answer(quotes: Sequence) -> str:
    """"On 22 May 1907." from the best quote's date ("" when it has none)."""
    if not quotes or not quotes[0].date:
        return ""
    return f"On {spoken_date(quotes[0].date)}."


def clauses(text: str) -> list[tuple[int, int]]:
    """(start, end) of the phrases of ``text``, in order; together they tile it."""
    cuts = {0, len(text)}
    cuts.update(m.end() for m in _AFTER.finditer(text))
    cuts.update(m.start() for m in _BEFORE.finditer(text))
    ordered = sorted(cuts)
    return [(a, b) for a, b in pairwise(ordered) if text[a:b].strip(_EDGE)]


def _has_number(span: str, question: str) -> bool:
    """Whether ``span`` holds a quantity the question does not: a number, not a label
    such as "Flat 3" or "27 Alder Street" (a number beside a name)."""
    asked = question.lower()
    tokens = span.split()
    for i, token in enumerate(tokens):
        if not (re.search(r"\d", token) or token.lower().strip(".,;:!?") in _NUMBER_WORDS):
            continue
        if token.lower() in asked:
            continue
        after = tokens[i + 1] if i + 1 < len(tokens) else ""
        before = tokens[i - 1] if i > 0 else ""
        if after[:1].isupper() or (before[:1].isupper() and before[-1:].isalnum()):
            continue  # a label: "27 Alder Street", "Flat 3"
        return True
    return False


def _has_new_name(span: str, question_names: set[str]) -> bool:
    return any(w.lower() not in question_names and w.lower() not in ("i", "the", "a", "an")
               for w in _CAPITALISED.findall(span))


def best_clause(question: str, quotes: Sequence, hint: str = "",
                max_words: int = SHORT_WORDS) -> str:
    """The run of one or more phrases of the quotes (at most ``max_words`` words) that best
    answers ``question``: new words (not the question's), the question's words beside them,
    the kind of word asked for, what ``hint`` (the model's answer) names; better quotes
    first. "" when no run says anything the question does not."""
    asked = set(content_words(question))
    focus = focus_words(question)
    question_names = {w.lower() for w in _CAPITALISED.findall(question)}
    pointed = set(content_words(hint)) - asked
    wants_number = bool(_ASKS_FOR_NUMBER.search(question))
    wants_name = bool(_ASKS_FOR_NAME.search(question))
    scored: list[tuple[float, bool, str]] = []  # (score, holds a number, clause)
    for rank, quote in enumerate(quotes):
        text = quote.text
        in_sentence = len(set(content_words(text)) & asked)
        phrases = clauses(text)
        for i in range(len(phrases)):
            for j in range(i, len(phrases)):
                span = text[phrases[i][0]:phrases[j][1]].strip(_EDGE + "()")
                words = span.split()
                if len(words) > max_words:
                    break
                found = set(content_words(span))
                new = found - asked
                if not new:
                    continue
                score = (min(len(new), 3) + len(found & asked) + len(found & focus)
                         + 0.5 * in_sentence - rank - 0.08 * len(words))
                if new & pointed:
                    score += 3
                if wants_name and _has_new_name(span, question_names):
                    score += 2
                scored.append((score, wants_number and _has_number(span, question), span))
    if any(number for _, number, _ in scored):
        # "How long …", "how much …": a clause without a number does not answer it.
        scored = [row for row in scored if row[1]]
    if not scored:
        return ""
    return as_sentence(max(scored, key=lambda row: row[0])[2])


def as_sentence(span: str) -> str:
    """A clause shown as a sentence: capital first letter, a closing full stop, quote
    marks and brackets that open or close nothing dropped where a word begins or ends."""
    span = span.strip(_EDGE)
    for opening, closing in (("“", "”"), ('"', '"'), ("(", ")")):  # (’ is also an apostrophe)
        unbalanced = (span.count(opening) % 2 if opening == closing
                      else span.count(opening) != span.count(closing))
        if unbalanced:  # only where a word begins or ends: between letters, dropping one
            # would join two words into one the quote does not hold
            for mark in {opening, closing}:
                span = re.sub(rf"(?:(?<=\s)|^){re.escape(mark)}|{re.escape(mark)}(?=\s|$)",
                              "", span)
    span = span.strip(_EDGE)
    if not span:
        return ""
    if len(span[0].upper()) == 1:  # not "ß" → "SS": the word stays the quote's
        span = span[0].upper() + span[1:]
    return span if span[-1] in ".!?" else span + "."


def names_something(short: str, question: str, quotes: Sequence) -> bool:
    """Whether a short answer says something of the quotes the question did not."""
    quoted = set(content_words(" ".join(q.text for q in quotes)))
    return bool((set(content_words(short)) - set(content_words(question))) & quoted)
