"""Keep invented specifics and loops out of answers: numbers and names must come from the
notes, a short answer copies its words from its quotes, and no text repeats itself.

SmolLM2-135M, reading "£85 instead of paying £10.50", will answer "£8.50"; asked for
a physio's name it may write "Dr. John Smith". A number in an answer is therefore only
accepted when the notes hold it, a capitalised word when the notes or the question do. At each
step the model's most likely tokens are tried in order and the first one that keeps
the answer within that rule is taken; lowercase words are never constrained, so the
model still phrases the answer itself. When none of the top tokens fits, the model's
own choice stands (a constraint must never leave the answer stuck).

A short answer (``copy_words``) is held tighter: every word that is not a function word
("the", "was", "in") must come from its quotes or the question, so it can only restate
what the quotes say. And every generation is held to never repeat a run of four words
("30th, 30th, 30th, 30th"): a token that would repeat one is passed over. Where no token
among the top ones keeps a rule that the model's own choice breaks, the answer ends
there rather than going on outside its notes or in a loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

NUMBER = re.compile(r"[£€$]?\d+(?:[.,:]\d+)*")
LABEL = re.compile(r"^\[[^\]]*\]", re.MULTILINE)  # "[4 February 2023 · Title]" before a line
ASKS_FOR_DATE = re.compile(r"^\s*when\b|\b(?:what|which)\s+(?:date|day|year|month)\b",
                           re.IGNORECASE)
CAPITALISED = re.compile(r"(?<![\w'’])[A-ZÀ-Þ][^\W\d_]*")
WORD = re.compile(r"[^\W\d_]+")
# Capitalised words any answer may use ("The answer is …", "On …", "Yes").
COMMON = frozenset("""
the a an i you we he she it they my your our his her their this that these those there
here yes no not on in at by to for of with from as but and or so if when after before
answer answers notes note question sorry however because also both then
""".split())
TOP_K = 40
REPEAT_N = 4  # no run of this many words twice in one text
PLAIN_MARKS = set(".,;:!?'’\"“”()-–—")  # punctuation any copied answer may use
# Words a copied answer may use that its quotes need not hold: grammar, not content.
FUNCTION_WORDS = COMMON | frozenset("""
is was were are am be been being did do does done had has have having will would shall
should can could may might must to into onto upon about above below over under between
through during until up down out off all any each every some no none one two three its
his her hers him them me us our ours who whom whose which what where why how than too very
just only also again still yet there then what's it's i'm i've i'd didn't don't wasn't
saw see seen went go gone got get came come made make took take found find said say
don doesn didn wasn isn aren weren hasn haven hadn won t s d ll ve re m
""".split())


class GroundedChoice:
    """Chooses the next token of an answer so that its numbers and names are grounded.

    ``text_with(token_id)`` gives the answer's text with that token added."""

    def __init__(self, notes: str | None, question: str, choose: Callable[[object], int],
                 text_with: Callable[[int], str], top_k: int = TOP_K,
                 stop_ids: Sequence[int] = (), ground: bool = True, copy_words: bool = False,
                 no_repeat: int = REPEAT_N, given_text: str = ""):
        notes = notes or ""
        self.given_text = given_text  # the answer's given start: not checked, but no
        # run of words may repeat across it
        self.ground = ground
        self.copy_words = copy_words
        self.no_repeat = no_repeat
        # Numbers come from the notes, not the question ("2024-01-15" is not how long I
        # slept), and an entry's date from its label only when a date is asked for
        # (not "my employee ID is 5 February 2024").
        numbers_from = notes if ASKS_FOR_DATE.search(question) else LABEL.sub(" ", notes)
        self.numbers = set(NUMBER.findall(numbers_from))
        self.numbers |= {n.lstrip("£€$") for n in self.numbers}  # "£85" may be written "85"
        self.words = {w.lower() for w in WORD.findall(f"{notes}\n{question}")} | COMMON
        self.marks = {ch for ch in LABEL.sub(" ", notes) + question
                      if not (ch.isalnum() or ch.isspace())}
        self.choose = choose  # the model's own choice (greedy or sampled)
        self.text_with = text_with
        self.top_k = top_k
        self.stop_ids = set(stop_ids)
        self.overruled = 0  # how often the model's choice was replaced

    def grounded(self, text: str) -> bool:
        """Whether ``text`` keeps every rule: no repeated run of words; and, when grounding,
        every number in the notes and every capitalised word (with ``copy_words`` every
        word but function words) in the notes or the question. A word still being
        written at the end need only begin an allowed one."""
        if self.no_repeat and repeats(self.given_text + text, self.no_repeat):
            return False
        if not self.ground:
            return True
        end = len(text)
        for match in NUMBER.finditer(text):
            number = match.group(0)
            if match.end() == end:
                if not any(n.startswith(number) for n in self.numbers):
                    return False
            elif match.end() == end - 1 and text[-1] in ".,:":
                # "£8." may be a sentence's end or the start of "£8.50"
                if number not in self.numbers and not any(
                        n.startswith(number + text[-1]) for n in self.numbers):
                    return False
            elif number not in self.numbers:
                return False
        for match in CAPITALISED.finditer(text):
            word = match.group(0).lower()
            if match.end() == end:
                if not any(w.startswith(word) for w in self.words):
                    return False
            elif word not in self.words:
                return False
        if self.copy_words:
            if any(not (ch.isalnum() or ch.isspace() or ch in PLAIN_MARKS or ch in self.marks)
                   for ch in text):
                return False  # a symbol ("☺", "**") the quotes do not use
            allowed = self.words | FUNCTION_WORDS
            for match in WORD.finditer(text):
                word = match.group(0).lower()
                if word in allowed:
                    continue
                if match.end() == end and any(w.startswith(word) for w in allowed):
                    continue
                return False
        return True

    def __call__(self, logits) -> int:
        import torch

        choice = self.choose(logits)
        if self.acceptable(choice):
            return choice
        for token in torch.topk(logits.float(), self.top_k).indices.tolist():
            if self.acceptable(token):
                self.overruled += 1
                return int(token)
        if self.stop_ids and (self.copy_words or not self.acceptable_ignoring_grounds(choice)):
            # Nothing likely keeps to the quotes, or the model's choice would loop: end here.
            self.overruled += 1
            return min(self.stop_ids)
        return choice

    def acceptable_ignoring_grounds(self, token: int) -> bool:
        """Whether ``token`` keeps the no-repeat rule alone."""
        return not (self.no_repeat
                    and repeats(self.given_text + self.text_with(token), self.no_repeat))

    def acceptable(self, token: int) -> bool:
        text = self.text_with(token)
        if token in self.stop_ids:
            text += " "  # the answer ends here: nothing at its end is still being written
        return text.endswith("\ufffd") or self.grounded(text)


def repeats(text: str, n: int = REPEAT_N) -> bool:
    """Whether some run of ``n`` words occurs twice in ``text`` (words compared lowercased,
    punctuation aside). A word still being written counts as it stands: a token that
    would end the text on a repeat is refused before the repeat is whole."""
    words = [w.lower() for w in re.findall(r"[^\W_]+(?:['’][^\W_]+)?", text)]
    seen = set()
    for i in range(len(words) - n + 1):
        run = tuple(words[i:i + n])
        if run in seen:
            return True
        seen.add(run)
    return False


def grounded_chooser(notes: str | None, question: str, choose: Callable[[object], int],
                     tokenizer, answer_ids: Sequence[int], stop_ids: Sequence[int] = (),
                     given: int = 0, ground: bool = True,
                     copy_words: bool = False) -> GroundedChoice:
    """A GroundedChoice over ``answer_ids`` (the answer's token ids so far, a live list),
    of which the first ``given`` (the stem, the question's own words) are not checked.
    ``ground=False`` keeps only the no-repeat rule (text with no notes to hold to)."""
    def text_with(token_id: int) -> str:
        return tokenizer.decode([*answer_ids[given:], token_id], skip_special_tokens=True)

    given_text = tokenizer.decode(list(answer_ids[:given]), skip_special_tokens=True) if given else ""
    return GroundedChoice(notes, question, choose, text_with, stop_ids=stop_ids, ground=ground,
                          copy_words=copy_words, given_text=given_text)
