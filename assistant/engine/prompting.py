"""What the small model reads: the few sentences that matter, dated, in a short chat prompt.

SmolLM2-135M reads poorly: handed whole entries it answers from the wrong line.
So retrieved chunks are cut into sentences, each scored by the question's content
words it shares (weighted by rarity) plus, when an embedder is given, cosine
similarity to the question. A sentence keeps what it sits under (the entry's title,
the section heading above it: "Lisbon", "Result"), because the small model cannot
answer "which city?" from "Landed just after two" alone. The chosen sentences go in
grouped by entry, each entry behind its date written out ("16 November 2024") and
its heading, the best entry last, nearest the question.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date as _date

import sentencex

STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its itself
just me more most my myself no nor not now of off on once only or other our ours ourselves out
over own same she should so some such than that the their theirs them themselves then there
these they this those through to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves ever much many get got
go went going tell remind anything something thing things one kind day time year years month
months week weeks last first next ago did does happen happened know knew remember wrote write
say said also still even really
""".split())

SYSTEM_PROMPT = (
    "You answer questions about the user's own journal using only the notes given. "
    "Reply with one short sentence that states the answer in the notes' own words. "
    "If the notes do not answer the question, reply: The notes don't say."
)
CONTEXT_WEIGHT = 0.5  # a question word found in the heading, not the sentence
ENTRY_WEIGHT = 0.3  # share of the question's words found anywhere in the sentence's entry
PERIOD_WEIGHT = 0.3  # a line or heading naming the month or year the question is about
FOCUS_WEIGHT = 2.0  # a word of what the question asks about counts this much more than
# one of the scene it sets ("What illness did the doctor confirm | when I woke up …")

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_HEADER = re.compile(r"^\s*(?:#{1,6}\s|#\+\w+:|---\s*$|(?:date|title|tags|created|updated):\s)",
                     re.IGNORECASE)


# Units people write short in notes and long in questions ("142 km" / "how many kilometres").
UNIT_WORDS = {
    "km": "km", "kms": "km", "kilometre": "km", "kilometres": "km", "kilometer": "km",
    "kilometers": "km", "kg": "kg", "kgs": "kg", "kilo": "kg", "kilos": "kg", "kilogram": "kg",
    "kilograms": "kg", "mi": "mile", "miles": "mile", "hr": "hour", "hrs": "hour",
    "hours": "hour", "h": "hour", "min": "minute", "mins": "minute", "minutes": "minute",
}


def stem(word: str) -> str:
    """A crude suffix strip so that "ran"/"runs"/"running" are not all strangers."""
    if word in UNIT_WORDS:
        return UNIT_WORDS[word]
    for suffix in ("ingly", "edly", "ing", "ies", "ied", "ed", "es", "ly", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "running" → "runn" → "run", "stopped" → "stop" (but "falling" → "fall")
            if (suffix in ("ing", "ed") and len(word) > 3 and word[-1] == word[-2]
                    and word[-1] not in "aeioulsz"):
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:  # "propose" and "proposed" meet at "propos"
        word = word[:-1]
    return word[:7]


# Leading question phrases whose words are not about the topic ("How long was the
# Quiraing walk?" is not about the word "long").
_QUESTION_LEAD = re.compile(
    r"^\s*(?:how\s+(?:long|many|much|far|old|often|big|fast|hot|cold|tall)|what\s+time"
    r"|what\s+(?:was|is|were)\s+the\s+name\s+of|what\s+kind\s+of)\b", re.IGNORECASE)


_QUANTITY = re.compile(r"^\s*how\s+(?:many|much|far|long|often)\b|\b(?:average|total|number\s+of)\b",
                       re.IGNORECASE)


def asks_for_quantity(question: str) -> bool:
    """"How many …", "how far in total …", "my average …": answered by a count or sum."""
    return bool(_QUANTITY.search(question))


def search_query(question: str) -> str:
    """The question as a search query: its leading question phrase dropped."""
    stripped = _QUESTION_LEAD.sub(" ", question).strip()
    return stripped if content_words(stripped) else question


def content_words(text: str) -> list[str]:
    words = (w[:-2] if w.endswith("'s") else w for w in _WORD.findall(text.lower().replace("’", "'")))
    return [stem(w) for w in words if w not in STOPWORDS and len(w) > 1]


# The words after these in a question set the scene ("… for the Alder Street flat", "…
# when I woke up"); the words before the first of them say what is asked about.
_SCENE = re.compile(r"\b(?:for|at|in|on|of|with|by|from|to|during|after|before|when|while|"
                    r"near|under|as|about|between|into|through|since|until)\b", re.IGNORECASE)
_LEAD = re.compile(r"^\s*(?:(?:in|on|at|from|to|with|for)\s+)?(?:what|which|who|whom|whose|"
                   r"where|when|how(?:\s+(?:many|much|long|far|old|often))?)\b", re.IGNORECASE)


def focus_words(question: str) -> set[str]:
    """The content words of what is asked about: "How much was the deposit for the Alder
    Street flat?" → {deposit}; "What illness did the doctor confirm when …" → {illness,
    doctor, confirm}."""
    body = _LEAD.sub("", question, count=1)
    words: list[str] = []
    for match in re.finditer(r"\S+", body):
        if _SCENE.fullmatch(match.group(0).strip(",.?!")) and words:
            break
        words.extend(content_words(match.group(0)))
    return set(words)


@dataclass
class Sentence:
    text: str
    date: str | None
    passage_index: int
    position: int  # index of the sentence within its passage
    score: float = 0.0
    context: str = ""  # the entry's title and the heading the sentence sits under


def split_sentences(text: str) -> list[str]:
    """Sentences of a chunk; markdown headers, front matter and metadata lines dropped.

    sentencex splits them: it knows abbreviations and initials ("Sir W. Penn", "Mr. Duke,
    K.C."), where a full-stop rule cut real diaries mid-sentence (on the two real journals
    in shared/data: 205 pieces ending at an abbreviation or initial, 12 with sentencex)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or _HEADER.match(line) or line.startswith(("#", "|", "```")):
            continue
        line = re.sub(r"^[-*+]\s+(?:\[[ xX]\]\s+)?", "", line)  # list bullets, task boxes
        line = re.sub(r"\[\[([^\]|]+)\|?([^\]]*)\]\]", lambda m: m.group(2) or m.group(1), line)
        for piece in sentencex.segment("en", line):
            piece = piece.strip()
            if len(piece) >= 3:
                out.append(piece)
    return out


_ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
_PATH_LIKE = re.compile(r"\S+/\S+\.\w+")
_WEEKDAY_NAME = re.compile(r"\b(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\b\.?", re.IGNORECASE)
_DAY_MONTH_YEAR = re.compile(
    r"\b\d{1,2}(?:st|nd|rd|th)?\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
    r"\s+\d{4}\b", re.IGNORECASE)
_ORG_TIMESTAMP = re.compile(r"<\d{4}-\d{2}-\d{2}[^>]*>")


def heading_text(line: str) -> str:
    """What a heading line names once its markup and dates are gone ("" if nothing)."""
    text = re.sub(r"^\s*#\+\w+:\s*", "", line)
    text = re.sub(r"^\s*(?:#{1,6}|\*{1,6}(?=\s))\s*", "", text)
    for pattern in (_ORG_TIMESTAMP, _PATH_LIKE, _ISO_DATE, _DAY_MONTH_YEAR, _WEEKDAY_NAME):
        text = pattern.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip(" \t-–—·:|,*#")
    return text if re.search(r"[A-Za-z]{2}", text) else ""


def _is_heading(line: str) -> bool:
    return bool(re.match(r"^\s*(?:#{1,6}\s|\*{1,6}\s)", line))


def passage_sentences(text: str, title: str | None = None) -> list[tuple[str, str]]:
    """(context, sentence) pairs of a chunk: each sentence with the entry's title and
    the heading it sits under (markdown ``#`` and org ``*`` headings)."""
    heading = ""
    out = []
    for line in (text or "").splitlines():
        if _is_heading(line):
            heading = heading_text(line)
            continue
        for sentence in split_sentences(line):
            out.append((join_context(title, heading), sentence))
    return out


def join_context(*parts: str | None, width: int = 60) -> str:
    seen: list[str] = []
    for part in parts:
        part = (part or "").strip()
        if part and not any(part.lower() in other.lower() for other in seen):
            seen.append(part)
    text = " · ".join(seen)
    return text if len(text) <= width else text[: width - 1] + "…"


def select_sentences(question: str, passages: Sequence, limit: int = 4,
                     embed: Callable[[list[str]], object] | None = None,
                     passage_weights: Sequence[float] | None = None,
                     context: int = 2, period: str | None = None) -> list[Sentence]:
    """The ``limit`` sentences of ``passages`` most likely to hold the answer.

    ``passages`` need ``.text`` and ``.date``; ``embed`` maps texts to L2-normalised
    vectors (numpy rows). ``passage_weights`` (best first) nudge ties towards better hits.
    ``period`` ("October 2023"): the whole month or year asked about; a sentence or
    heading naming it gets ``PERIOD_WEIGHT`` more.
    """
    candidates: list[Sentence] = []
    seen: set[str] = set()
    for index, passage in enumerate(passages):
        title = getattr(passage, "title", None)
        for position, (heading, text) in enumerate(passage_sentences(passage.text or "", title)):
            key = text.lower()
            if key in seen:
                continue
            seen.add(key)
            candidates.append(Sentence(text, passage.date, index, position, context=heading))
    if not candidates:
        return []
    query = set(content_words(question))
    words = [set(content_words(s.text)) for s in candidates]
    # The heading's words count for less than the sentence's own.
    context_words = [set(content_words(s.context)) - own for s, own in zip(candidates, words)]
    # Rarer words say more: idf over the candidate sentences themselves.
    total = len(candidates)
    idf = {w: math.log(1 + total / (1 + sum(w in ws or w in cs for ws, cs in zip(words, context_words))))
           for w in query}
    for word in focus_words(question) & query:
        idf[word] *= FOCUS_WEIGHT
    norm = sum(idf.values()) or 1.0
    similarity = None
    texts = [f"{s.context}: {s.text}" if s.context else s.text for s in candidates]
    vectors = embed([question] + texts) if embed is not None else None
    if vectors is not None:
        similarity = (vectors[1:] @ vectors[0]).tolist()
    # How much of the question the sentence's whole entry covers: the line holding the
    # answer ("... across all nine depots") often shares one word with the question
    # while its entry shares them all.
    entry_words: dict[int, set[str]] = {}
    for i, sentence in enumerate(candidates):
        entry_words.setdefault(sentence.passage_index, set()).update(words[i], context_words[i])
    period_pattern = (re.compile(r"\b" + r"\s+".join(map(re.escape, period.split())) + r"\b",
                                 re.IGNORECASE) if period else None)
    coverage = {index: sum(idf[w] for w in query & found) / norm for index, found in entry_words.items()}
    for i, sentence in enumerate(candidates):
        overlap = (sum(idf[w] for w in query & words[i])
                   + CONTEXT_WEIGHT * sum(idf[w] for w in query & context_words[i])) / norm
        score = overlap + ENTRY_WEIGHT * coverage[sentence.passage_index]
        if similarity is not None:
            score += 0.6 * similarity[i]
        if period_pattern is not None and period_pattern.search(f"{sentence.context} {sentence.text}"):
            score += PERIOD_WEIGHT
        if passage_weights is not None and sentence.passage_index < len(passage_weights):
            score += 0.15 * passage_weights[sentence.passage_index]
        # Very short fragments and bare headings rarely carry an answer on their own.
        if len(words[i]) < 2:
            score *= 0.5
        elif not sentence.text.rstrip().endswith((".", "!", "?", '"', ")")) and len(words[i]) < 6:
            score *= 0.85
        sentence.score = score
    best = sorted(candidates, key=lambda s: -s.score)[:limit]
    # The answer often sits in the line next to the one that matches the question
    # ("Long run: 32 km" / "Time: 3:21:40"; "... first project: Project Heron." / "Move
    # the 37 nightly jobs ..."): the best lines bring their neighbours along.
    chosen = {(s.passage_index, s.position) for s in best}
    by_place = {(s.passage_index, s.position): s for s in candidates}
    for top in best[:context]:
        for step in (1, -1):
            neighbour = by_place.get((top.passage_index, top.position + step))
            if neighbour is not None and (neighbour.passage_index, neighbour.position) not in chosen:
                neighbour.score = max(neighbour.score, top.score * 0.9)
                best.append(neighbour)
                chosen.add((neighbour.passage_index, neighbour.position))
    return sorted(best, key=lambda s: (s.date or "", s.passage_index, s.position))


def opening_sentences(passages: Sequence, limit: int) -> list[Sentence]:
    """The first lines of each passage in turn (for questions that name only a period);
    they count as relevant: the date already chose them."""
    per_passage = [passage_sentences(p.text or "", getattr(p, "title", None)) for p in passages]
    out: list[Sentence] = []
    depth = 0
    while len(out) < limit and any(depth < len(s) for s in per_passage):
        for index, sentences in enumerate(per_passage):
            if depth < len(sentences) and len(out) < limit:
                context, text = sentences[depth]
                out.append(Sentence(text, passages[index].date, index, depth, score=1.0,
                                    context=context))
        depth += 1
    return sorted(out, key=lambda s: (s.date or "", s.passage_index, s.position))


def spoken_date(iso: str | None) -> str:
    """"2024-11-16" → "16 November 2024" (what people write, and ask about)."""
    if not iso:
        return "undated"
    try:
        day = _date.fromisoformat(iso[:10])
    except ValueError:
        return iso
    return f"{day.day} {day:%B} {day.year}"


def format_notes(sentences: Sequence[Sentence]) -> str:
    """One line per entry: its date and heading, then its chosen sentences in order.
    Entries go weakest first, so the best evidence sits right above the question."""
    groups: dict[int, list[Sentence]] = {}
    for sentence in sentences:
        groups.setdefault(sentence.passage_index, []).append(sentence)
    ordered = sorted(groups.values(), key=lambda group: (max(s.score for s in group),
                                                         -group[0].passage_index))
    lines = []
    for group in ordered:
        group.sort(key=lambda s: s.position)
        contexts = [s.context for s in group if s.context]
        label = spoken_date(group[0].date)
        if contexts:
            label += " · " + contexts[0]
        text = " ".join(_as_sentence(s.text) for s in group)
        lines.append(f"[{label}] {text}")
    return "\n".join(lines)


def format_quotes(quotes: Sequence) -> str:
    """The quotes an answer rests on, one a line behind its date, the best last (nearest
    the question)."""
    return "\n".join(f"[{spoken_date(q.date)}] {_as_sentence(q.text)}" for q in reversed(quotes))


def _as_sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", '"', "'", ")", "…")) else text + "."


def answer_messages(question: str, notes: str | None, history: Sequence[tuple[str, str]] = (),
                    date_label: str | None = None, persona: str = "plain") -> list[dict]:
    """Chat messages for one turn: system, earlier turns (question, answer), then this one."""
    messages = [{"role": "system", "content": with_persona(SYSTEM_PROMPT, persona)}]
    for asked, answered in history:
        messages.append({"role": "user", "content": asked})
        messages.append({"role": "assistant", "content": answered})
    parts = []
    if notes:
        parts.append(f"Notes:\n{notes}")
    if date_label:
        parts.append(f"(The question is about {date_label}.)")
    parts.append(f"Question: {question}")
    messages.append({"role": "user", "content": "\n\n".join(parts)})
    return messages


# How each persona sounds; the facts rules of the prompt stay as they are.
PERSONAS = {
    "plain": "",
    "coach": "Speak as an encouraging coach: after the answer, ask the user one short question "
             "about what they could do next.",
    "partner": "Speak as a warm, caring partner who knows the user well.",
    "tutor": "Speak as a thoughtful tutor: point out one pattern the notes show.",
}


def with_persona(system: str, persona: str = "plain") -> str:
    """The system prompt in a persona's tone (one of ``PERSONAS`` or the user's own words);
    the rules about using only the notes come last, so no tone can outweigh them."""
    tone = PERSONAS.get(persona, persona).strip()
    return f"{tone} {system}" if tone else system


REFLECT_SYSTEM = (
    "You write a short, warm reflection on the user's journal for a period. "
    "Use only the notes. Mention what happened, the people and places that recur, "
    "and the mood. Three or four sentences."
)


def reflect_messages(label: str, notes: str, persona: str = "plain") -> list[dict]:
    return [{"role": "system", "content": with_persona(REFLECT_SYSTEM, persona)},
            {"role": "user", "content": f"Notes from {label}:\n{notes}\n\nWrite the reflection."}]


# --------------------------------------------------------------------------- reflection

# ("down" and "low" are left out: in real diaries they are mostly directions and places.)
MOOD_WORDS = frozenset("""
happy glad joyful cheerful content calm relaxed peaceful grateful thankful proud excited hopeful
energised energized rested refreshed relieved loved inspired optimistic
sad lonely tired exhausted drained anxious nervous worried stressed overwhelmed
frustrated angry annoyed irritable restless bored gloomy miserable upset sore sick ill
""".split())
# Capitalised words that name no one and nothing (compared lowercased): for the people of a
# reflection, and for the names of a question that no entry may hold.
NOT_NAMES = frozenset(w.lower() for w in """
I I'm I've I'd I'll The A An And But So Then When While After Before Today Yesterday Tomorrow
This That These Those It Its My We Our Us He She They His Her Their You Your Also Still Just
Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June
July August September October November December Mon Tue Wed Thu Fri Sat Sun OK Ok Mum Dad TODO
Jan Feb Mar Apr Jun Jul Aug Sep Sept Oct Nov Dec
As At In On Of To For With From By If Now Here There Good Well Yes No Oh Not All What Why How
Who Which Where Some Every Each Many Much More Most Such Only Even Yet Or Nor For Perhaps One
Me Whom Whose Did Do Does Was Were Is Are Am Had Has Have Christmas Easter
""".split())
# A name: one or two capitalised words, or an initial with a long dash, as published
# diaries hide people ("E⸺", "Mrs. B——"; not "I—").
_NAME = re.compile(r"(?<![\w'’])([A-ZÀ-Þ][a-zà-ÿ]+(?:\s[A-ZÀ-Þ][a-zà-ÿ]+)?|[A-HJ-Z](?:⸺|——?))(?!\w)")
# Titles name no one on their own: "Sir (29), Mr (17), Lord (9)" is no list of people.
TITLES = frozenset("""
Sir Mr Mrs Miss Ms Mx Dr Lord Lady Captain Capt Colonel Col Major General Lieutenant Lieut
Sergeant Rev Reverend Professor Prof Dame Madam Madame Monsieur
King Queen Prince Princess Duke Duchess Earl Count Countess Baron Bishop Saint St Mount Mt
""".split())


# Of those, the ones that are never anyone's name on their own ("Duke", "King" may be).
BARE_TITLES = frozenset("Sir Mr Mrs Miss Ms Mx Dr Lord Lady Capt Col Lieut Rev Prof St Mt".split())


def _without_title(name: str) -> str:
    """"Captain Rolt" → "Rolt"; "Sir" alone → ""; "Duke" (as in "Mr. Duke") stays."""
    words = name.split()
    if len(words) == 1:
        return "" if words[0] in BARE_TITLES else name
    while len(words) > 1 and words[0] in TITLES:
        words = words[1:]
    return " ".join(words)


def recurring_names(texts: Sequence[str], limit: int = 10, min_entries: int = 2) -> list[tuple[str, int]]:
    """Capitalised words not opening a sentence (people, places), by entries mentioning them."""
    # A capitalised word counts as a name once it is seen mid-sentence somewhere.
    known: set[str] = set()
    split = [split_sentences(text) for text in texts]
    for sentences in split:
        for sentence in sentences:
            for match in _NAME.finditer(sentence):
                name = _without_title(match.group(1))
                if sentence[match.end():match.end() + 1] == ":":
                    continue  # "Mood: good", "Steps: 9,000": a field's label
                if match.start() > 0 and name and name.split()[0].lower() not in NOT_NAMES:
                    known.add(name)
    counts: dict[str, int] = {}
    for sentences in split:
        found = {_without_title(name) for sentence in sentences for name in _NAME.findall(sentence)}
        found &= known
        for name in found:
            counts[name] = counts.get(name, 0) + 1
    ranked = sorted(((n, c) for n, c in counts.items() if c >= min_entries), key=lambda x: (-x[1], x[0]))
    return ranked[:limit]


def recurring_themes(texts: Sequence[str], exclude: Sequence[str] = (), limit: int = 8) -> list[tuple[str, int]]:
    """Content words used in the most entries (the word as first written, not its stem)."""
    skip = {w.lower() for name in exclude for w in name.split()} | MOOD_WORDS
    counts: dict[str, int] = {}
    shown: dict[str, str] = {}
    for text in texts:
        seen = set()
        for word in _WORD.findall(text.lower()):
            if word in STOPWORDS or word in skip or len(word) < 4 or word.isdigit():
                continue
            key = stem(word)
            shown.setdefault(key, word)
            seen.add(key)
        for key in seen:
            counts[key] = counts.get(key, 0) + 1
    threshold = 2 if len(texts) > 1 else 1
    ranked = sorted(((shown[k], c) for k, c in counts.items() if c >= threshold),
                    key=lambda x: (-x[1], x[0]))
    return ranked[:limit]


def mood_words(texts: Sequence[str], limit: int = 8) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for text in texts:
        for word in _WORD.findall(text.lower()):
            if word in MOOD_WORDS:
                counts[word] = counts.get(word, 0) + 1
    return sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:limit]


_MARKS_AN_EVENT = re.compile(r"\b(?:first|last|never|decided|decide|began|begin|finished|"
                             r"died|born|married|engaged|left|arrived|met|lost|won|news)\b|!",
                             re.IGNORECASE)


def distinctive_sentences(entries: Sequence[tuple[str, str]], frequency: Callable[[list[str]], tuple],
                          limit: int = 6) -> list[tuple[str, str]]:
    """(date, sentence) of what stands out in a period, oldest first: for each entry its
    sentence richest in words this writer rarely uses (``frequency(words)`` gives their
    document counts over the whole journal and the number of documents), with a lift for
    events, firsts, decisions and moods; then the best ``limit`` entries' sentences."""
    candidates = []
    for day, text in entries:
        for sentence in split_sentences(text):
            words = [w for w in _WORD.findall(sentence.lower()) if w not in STOPWORDS and len(w) > 2
                     and not w.isdigit()]
            if 5 <= len(sentence.split()) <= 45 and words:
                candidates.append((day, sentence, words))
    if not candidates:
        return []
    counts, total = frequency(sorted({w for _, _, words in candidates for w in words}))
    best: dict[str, tuple[float, str]] = {}
    for day, sentence, words in candidates:
        idf = [math.log((1 + total) / (1 + counts.get(w, 0))) for w in set(words)]
        score = sum(idf) / math.sqrt(len(idf))
        if _MARKS_AN_EVENT.search(sentence):
            score *= 1.3
        if set(words) & MOOD_WORDS:
            score *= 1.2
        if day not in best or score > best[day][0]:
            best[day] = (score, sentence)
    chosen: list[tuple[str, str]] = []
    for day, (_, sentence) in sorted(best.items(), key=lambda item: -item[1][0]):
        if len(chosen) < limit and all(sentence != other for _, other in chosen):
            chosen.append((day, sentence))  # (a sentence copied into two days shows once)
    return sorted(chosen)
