"""Keep invented specifics out of answers: numbers and names must come from the notes.

SmolLM2-135M, reading "£85 instead of paying £10.50", will answer "£8.50"; asked for
a physio's name it may write "Dr. John Smith". A number in an answer is therefore only
accepted when the notes hold it, a capitalised word when the notes or the question do. At each
step the model's most likely tokens are tried in order and the first one that keeps
the answer within that rule is taken; lowercase words are never constrained, so the
model still phrases the answer itself. When none of the top tokens fits, the model's
own choice stands (a constraint must never leave the answer stuck).
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


class GroundedChoice:
    """Chooses the next token of an answer so that its numbers and names are grounded.

    ``text_with(token_id)`` gives the answer's text with that token added."""

    def __init__(self, notes: str | None, question: str, choose: Callable[[object], int],
                 text_with: Callable[[int], str], top_k: int = TOP_K,
                 stop_ids: Sequence[int] = ()):
        notes = notes or ""
        # Numbers come from the notes, not the question ("2024-01-15" is not how long I
        # slept), and an entry's date from its label only when a date is asked for
        # (not "my employee ID is 5 February 2024").
        numbers_from = notes if ASKS_FOR_DATE.search(question) else LABEL.sub(" ", notes)
        self.numbers = set(NUMBER.findall(numbers_from))
        self.numbers |= {n.lstrip("£€$") for n in self.numbers}  # "£85" may be written "85"
        self.words = {w.lower() for w in WORD.findall(f"{notes}\n{question}")} | COMMON
        self.choose = choose  # the model's own choice (greedy or sampled)
        self.text_with = text_with
        self.top_k = top_k
        self.stop_ids = set(stop_ids)
        self.overruled = 0  # how often the model's choice was replaced

    def grounded(self, text: str) -> bool:
        """Whether every number of ``text`` is in the notes and every capitalised word in
        the notes or the question; one still being written at the end need only begin one."""
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
        return choice

    def acceptable(self, token: int) -> bool:
        text = self.text_with(token)
        if token in self.stop_ids:
            text += " "  # the answer ends here: nothing at its end is still being written
        return text.endswith("\ufffd") or self.grounded(text)


def grounded_chooser(notes: str | None, question: str, choose: Callable[[object], int],
                     tokenizer, answer_ids: Sequence[int], stop_ids: Sequence[int] = (),
                     given: int = 0) -> GroundedChoice:
    """A GroundedChoice over ``answer_ids`` (the answer's token ids so far, a live list),
    of which the first ``given`` (the stem, the question's own words) are not checked."""
    def text_with(token_id: int) -> str:
        return tokenizer.decode([*answer_ids[given:], token_id], skip_special_tokens=True)

    return GroundedChoice(notes, question, choose, text_with, stop_ids=stop_ids)
