""""How many times did I write about …": counted, not guessed.

A count over a diary is not in any one sentence, and the small model cannot add up
entries it was shown a few of. The store can: the entries of the period that mention the
thing asked about (the question's name, else its rarest word) are counted, and the answer
shows how many, when, and a sentence of each.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from assistant.engine.prompting import NOT_NAMES, content_words, split_sentences, spoken_date

COUNT_QUESTION = re.compile(
    r"\bhow\s+many\s+(?:times|entries|days|occasions|evenings|mornings|nights|weeks)\b"
    r"|\bhow\s+often\b", re.IGNORECASE)
# Words of a count question that say how it is counted, not what is counted.
_COUNTING_WORDS = frozenset(content_words(
    "write wrote written writing mention mentioned record recorded note noted time times "
    "entry entries day days journal diary occasion occasions often many evening evenings "
    "morning mornings night nights week weeks"))
_NAME = re.compile(r"(?<![\w'’])[A-ZÀ-Þ][\w'’-]*(?:\s+[A-ZÀ-Þ][\w'’-]*)*")
_NUMBER_NAMES = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 "ten", "eleven", "twelve")


def asks_to_count(question: str) -> bool:
    return bool(COUNT_QUESTION.search(question))


def counted_thing(question: str, mentions: Callable[[str], int]) -> str | None:
    """What the question counts: of its names and words (not those that say how it is
    counted), the one fewest chunks hold, the most specific ("emersion", not "Jupiter");
    ``mentions(phrase)`` says in how many chunks a phrase is. None when the notes hold
    none of them."""
    candidates = []
    for match in _NAME.finditer(question):
        words = [w for w in match.group(0).split() if w.lower() not in NOT_NAMES]
        if match.start() == 0 and words and words[0] == match.group(0).split()[0]:
            words = words[1:]  # the question's first word is capitalised anyway
        name = re.sub(r"['’]s$", "", " ".join(words))
        if len(name) > 1:
            candidates.append(name)
    for word in re.findall(r"[^\W\d_]+", question.replace("’", "'")):
        stems = content_words(word)
        if len(word) > 2 and stems and stems[0] not in _COUNTING_WORDS:
            candidates.append(word.lower())
    counts = [(mentions(c), c) for c in dict.fromkeys(candidates)]
    counts = [(n, c) for n, c in counts if n > 0]
    return min(counts)[1] if counts else None


def number_words(n: int) -> str:
    return _NUMBER_NAMES[n] if n < len(_NUMBER_NAMES) else str(n)


def count_answer(dates: Sequence[str | None]) -> str:
    """"In two entries: 10 March 1911 and 17 March 1911." (≤ 15 words)."""
    n = len(dates)
    spoken = [spoken_date(d) if d else "undated" for d in dates]
    if n == 1:
        return f"In one entry, on {spoken[0]}."
    if n <= 3:
        return f"In {number_words(n)} entries: {', '.join(spoken[:-1])} and {spoken[-1]}."
    return f"In {number_words(n)} entries, from {spoken[0]} to {spoken[-1]}."


def mentioning_sentence(text: str, thing: str) -> str | None:
    """The first sentence of an entry that names ``thing`` (compared by word stems), as
    written."""
    wanted = content_words(thing)
    for sentence in split_sentences(text):
        found = content_words(sentence)
        if wanted and all(any(f.startswith(w[:5]) for f in found) for w in wanted):
            return sentence
    return None
