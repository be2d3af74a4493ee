"""The start of an answer, written from the question: "What is my physio's name?" →
"My physio's name is".

SmolLM2-135M completes a sentence far better than it answers a question: asked, it
drifts into "The answer is: …" and picks the wrong line; handed the sentence that the
answer finishes, it copies the missing words from its notes. So the answer starts
with a stem made from the question's own words, and the model fills in the rest.
Only common question shapes get a stem; any other question gets none and is answered
as before. The stem is part of the answer the person reads.
"""

from __future__ import annotations

import re

from lemminflect import getAllLemmas, getInflection

PRONOUNS = {"i": "I", "we": "we", "you": "you", "he": "he", "she": "she", "they": "they",
            "it": "it"}
DETERMINERS = {"the", "my", "our", "your", "his", "her", "their", "a", "an", "this", "that",
               "its", "each", "every"}
PREPOSITIONS = {"at", "on", "in", "for", "from", "to", "with", "by", "about", "after", "before",
                "during", "near", "into", "as", "when", "while", "since", "until", "of"}
# Where a place answer goes after the verb: "we went to …", "they live in …", "we ate at …".
MOTION_VERBS = {"go", "move", "travel", "fly", "drive", "walk", "ride", "cycle", "come",
                "return", "run", "head", "emigrate", "relocate"}
DWELLING_VERBS = {"live", "stay", "work", "study", "grow", "settle"}
OBJECT_PLACE_VERBS = {"hide", "keep", "put", "leave", "store", "find", "lose", "pack", "plant"}
AUXILIARIES = {"did", "do", "does", "had", "have", "has"}
BE = {"is", "was", "are", "were"}

_WORDS = re.compile(r"\S+")


def answer_stem(question: str) -> str | None:
    """The first words of the answer, or None when the question has no shape we know."""
    text = question.strip().rstrip("?").strip()
    words = _WORDS.findall(text)
    if len(words) < 3:
        return None
    lower = [w.lower() for w in words]
    stem = _stem(words, lower)
    if not stem:
        return None
    stem = re.sub(r"\s+", " ", stem).strip()
    return stem[0].upper() + stem[1:]


def _stem(words: list[str], lower: list[str]) -> str | None:
    first = lower[0]
    if first == "how" and lower[1] in ("many", "much"):
        return _how_much(words, lower)
    if first == "how" and lower[1] not in AUXILIARIES | BE:  # "how old", "how long", "how far"
        return _how_adjective(words, lower)
    if first in ("what", "which") and lower[1] in BE:
        return _what_is(words[2:], lower[1])
    if first in ("what", "which") and lower[1] not in AUXILIARIES:
        return _which_noun(words, lower)
    if first == "who":
        return _who(words, lower)
    if first in ("where", "when", "why", "what", "how") and lower[1] in AUXILIARIES | BE:
        return _wh_adverb(first, words[1:], lower[1:])
    return None


def _how_much(words, lower):
    """"How many books did I read in 2023?" → "The number of books I read in 2023 was"."""
    if lower[2] in AUXILIARIES | BE:  # "how much did I pay", "how much was the fee"
        if lower[2] in BE:
            return f"{_join(words[3:])} {lower[2]}"
        clause = _clause(words[2:], lower[2:])
        return f"the amount {clause[0]} {_tense_be(lower[2])}" if clause else None
    # "how many <noun phrase> <aux> <clause>" or "how many people came to …"
    for index in range(2, len(words)):
        if lower[index] in AUXILIARIES | BE:
            noun = _join(words[2:index])
            if lower[index] in BE:  # "how many people were at the party"
                rest = _join(words[index + 1:])
                return f"the number of {noun} who {lower[index]} {rest} {lower[index]}".strip()
            clause = _clause(words[index:], lower[index:])
            if not clause:
                return None
            return f"the number of {noun} {clause[0]} {_tense_be(lower[index])}"
        if index > 2 and _verb_form(lower[index]) == "past":  # "how many people came …"
            noun = _join(words[2:index])
            return f"the number of {noun} who {_join(words[index:])} was"
    return None


def _how_adjective(words, lower):
    """"How old did Dad turn in June?" → "Dad turned"; "How far was my run?" → "My run was"."""
    adjective = lower[1]
    if len(words) < 4:
        return None
    if lower[2] in BE:
        if lower[3] in PRONOUNS:  # "how long were we on the list" → "we were on the list for"
            ending = " for" if adjective == "long" else ""
            return f"{PRONOUNS[lower[3]]} {lower[2]} {_join(words[4:])}{ending}"
        return f"{_join(words[3:])} {lower[2]}"  # "how far was my run" → "my run was"
    if lower[2] in AUXILIARIES:
        clause = _clause(words[2:], lower[2:])
        if not clause:
            return None
        full, head, verb, rest = clause
        if adjective == "long" and rest and _lemma(verb) not in ("take", "last"):
            return f"{full} for"  # "how long did I live at X" → "I lived at X for"
        if adjective == "far" and rest and rest[0].lower() in PREPOSITIONS:
            return f"{_join(rest)}, {head}"  # "how far did I run in May" → "In May, I ran"
        return head  # "how old did Dad turn in June" → "Dad turned"
    return None


def _what_is(rest: list[str], be: str) -> str | None:
    """"What was the name of X?" → "The name of X was"; "What was X called?" → "X was called"."""
    if not rest:
        return None
    if rest[-1].lower() == "called":
        return f"{_join(rest[:-1])} {be} called"
    for k in range(1, len(rest)):
        # "what was Dad refereeing on Sunday" → "On Sunday, Dad was refereeing"
        if rest[k].lower().endswith("ing") and _is_verb(rest[k]) and (
                rest[k - 1][:1].isupper() or rest[k - 1].lower() in PRONOUNS):
            subject = _join(rest[:k])
            if rest[k - 1].lower() in PRONOUNS:
                subject = _join(rest[:k - 1] + [PRONOUNS[rest[k - 1].lower()]])
            after = rest[k + 1:]
            if after and after[0].lower() in PREPOSITIONS:
                return f"{_join(after)}, {subject} {be} {rest[k]}"
            return f"{subject} {be} {rest[k]} {_join(after)}".strip()
    return f"{_join(rest)} {be}"


def _which_noun(words, lower):
    """"Which city did Farid move to?" → "The city Farid moved to was";
    "What number is our plot?" → "Our plot is number"."""
    for index in range(2, len(words)):
        if lower[index] in AUXILIARIES:
            noun = _join(words[1:index])
            clause = _clause(words[index:], lower[index:])
            if not clause:
                return None
            return f"the {noun} {clause[0]} {_tense_be(lower[index])}"
        if lower[index] in BE:
            noun = _join(words[1:index])
            rest = words[index + 1:]
            if not rest:
                return None
            if rest[-1].lower() in PREPOSITIONS and len(rest) > 1:  # "which city is Tomás from"
                be = lower[index]
                return f"the {noun} {_join(rest[:-1])} {be} {rest[-1]} {_singular_be(be)}"
            return f"{_join(rest)} {lower[index]} {noun}"  # "what number is our plot"
    return None


def _who(words, lower):
    """"Who runs the bakery?" → "The person who runs the bakery is";
    "Who is my manager?" → "My manager is"; "Who did I go with?" → "I went with"."""
    if lower[1] in BE:
        return f"{_join(words[2:])} {lower[1]}"
    if lower[1] in AUXILIARIES:
        clause = _clause(words[1:], lower[1:])
        if not clause:
            return None
        full, head, _, rest = clause
        # the stranded preposition ends the stem: "who did I have lunch with on Monday"
        # → "On Monday, I had lunch with"
        lowered = [w.lower() for w in rest]
        for j, word in enumerate(lowered[:-1]):
            if word in PREPOSITIONS and lowered[j + 1] in PREPOSITIONS:
                return f"{_join(rest[j + 1:])}, {head} {_join(rest[:j + 1])}"
        return full
    tense = _verb_form(lower[1])
    if tense is None:
        return None
    return f"the person who {_join(words[1:])} {'was' if tense == 'past' else 'is'}"


def _wh_adverb(wh: str, words, lower):
    """where/when/why/how/what + auxiliary or be."""
    if lower[0] in BE:
        subject = _join(words[1:])
        if len(words) > 2 and _verb_form(lower[-1]) == "participle":  # "when was X born"
            subject = f"{_join(words[1:-1])} {lower[0]} {lower[-1]}"
            return f"{subject} on" if wh == "when" else f"{subject} at" if wh == "where" else None
        if not subject:
            return None
        if wh == "where":
            return f"{subject} {lower[0]} at"
        if wh == "when":
            return f"{subject} {lower[0]} on"
        return None
    if lower[0] == "does" and "do" in lower[2:]:
        return None  # "what does Tomás do for a living": no stem reads well
    clause = _clause(words, lower)
    if not clause:
        return None
    full, head, verb, rest = clause
    if rest and rest[-1].lower() in PREPOSITIONS and wh in ("where", "what"):
        return full  # "what did we move in with" → "we moved in with"
    if wh == "where":
        lemma = _lemma(verb)
        place = ("to" if lemma in MOTION_VERBS else
                 "in" if lemma in DWELLING_VERBS | OBJECT_PLACE_VERBS else "at")
        return f"{full} {place}"
    if wh == "when":
        return f"{full} on"
    if wh == "why":
        return f"{full} because"
    if wh == "what":
        return _what_did(head, verb, rest)
    return None  # "how did I hurt my ankle": no stem reads well


def _what_did(head: str, verb: str, rest: list[str]) -> str:
    """"What did I buy from Martin on Monday?" → "From Martin on Monday, I bought";
    "What did we name the starter?" → "We named the starter"."""
    rest = list(rest)
    particle = ""
    if rest and rest[0].lower() in ("about", "of", "for", "with") and (
            len(rest) == 1 or rest[1].lower() in PREPOSITIONS):
        particle = " " + rest.pop(0)  # "dream about", "think of"
    split = next((i for i, w in enumerate(rest) if w.lower() in PREPOSITIONS), len(rest))
    obj, adverbial = rest[:split], rest[split:]
    if _lemma(verb) == "do":  # "what did I do on the evening of …" → "On the evening of …, I"
        clause = " ".join(head.split(" ")[:-1])  # the subject alone: "did"/"do" dropped
    else:
        clause = f"{head}{particle} {_join(obj)}".strip()
    if adverbial:
        return f"{_join(adverbial)}, {clause}"
    return clause


def _clause(words, lower):
    """From "did Maya pay for the print" the declarative "Maya paid for the print".

    Returns (full clause, subject + verb, verb as written, words after the verb)."""
    aux = lower[0]
    body, body_lower = words[1:], lower[1:]
    if not body:
        return None
    verb_at = _find_verb(body, body_lower)
    if verb_at is None:
        return None
    subject = _join(body[:verb_at])
    verb = body_lower[verb_at]
    if aux == "did":
        form = _inflect(verb, "VBD")
    elif aux == "does":
        form = _inflect(verb, "VBZ")
    elif aux in ("had", "have", "has"):
        form = f"{aux} {verb}"
    else:
        form = verb
    rest = body[verb_at + 1:]
    head = f"{subject} {form}"
    return f"{head} {_join(rest)}".strip(), head, verb, rest


def _find_verb(body, lower) -> int | None:
    """Where the verb is in "<subject> <verb> …". The subject is a pronoun, a name
    ("Biscuit", "The Hollow Ferns", "Priya and Jonas": the verb is the first lowercase
    verb after it) or a noun phrase, which may hold verb-like nouns ("my training run
    take", "the pass at Granite Works cost"): there the verb closes a run of them, or
    the question."""
    if lower[0] in PRONOUNS:
        return 1 if len(body) > 1 else None
    name = body[0][:1].isupper()
    last = len(body) - 1
    if not name and last >= 2 and _is_lower(body[last]) and _is_verb(body[last]) and (
            not _is_lower(body[last - 1]) or _is_verb(body[last - 1])):
        return last
    for index in range(1, len(body)):
        word = body[index]
        if not _is_lower(word) or not _is_verb(word):
            continue
        while not name and index + 1 < len(body) and _is_lower(body[index + 1]) \
                and _is_verb(body[index + 1]):
            index += 1
        return index
    return None


def _is_lower(word: str) -> bool:
    return word[:1].islower()


def _is_verb(word: str) -> bool:
    if not word.isalpha() or word.lower() in PREPOSITIONS | DETERMINERS | BE:
        return False
    return "VERB" in getAllLemmas(word.lower())


def _lemma(verb: str) -> str:
    lemmas = getAllLemmas(verb.lower()).get("VERB")
    return lemmas[0] if lemmas else verb.lower()


def _inflect(verb: str, tag: str) -> str:
    forms = getInflection(verb, tag)
    return forms[0] if forms else verb


def _verb_form(word: str) -> str | None:
    """"past" for "came", "present" for "runs", "participle" for "born"/"written",
    None for a base form or a word that is not a verb."""
    lemmas = getAllLemmas(word).get("VERB")
    if not lemmas:
        return None
    lemma = lemmas[0]
    if word in getInflection(lemma, "VBD"):
        return "past"
    if word in getInflection(lemma, "VBZ"):
        return "present"
    if word in getInflection(lemma, "VBN"):
        return "participle"
    return None


def _singular_be(be: str) -> str:
    return "was" if be in ("was", "were") else "is"


def _tense_be(aux: str) -> str:
    return "was" if aux in ("did", "had") else "is"


def _join(words) -> str:
    return " ".join(words)
