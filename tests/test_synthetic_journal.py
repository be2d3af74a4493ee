"""The synthetic journals the generic reader learns from: deterministic, every planted
fact's answer in its evidence entry, one answer per question, and nothing of the example
journal (its answers are never words of these journals' facts)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from assistant.readers import synthetic
from assistant.readers.synthetic import make_journal

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_journals_are_deterministic_and_their_answers_are_in_the_evidence():
    first, again = make_journal(7, entries=40), make_journal(7, entries=40)
    assert first.files() == again.files() and first.questions() == again.questions()
    assert make_journal(8, entries=40).files() != first.files()
    files = first.files()
    questions = first.questions()
    assert len(questions) >= 20
    assert len({q["question"] for q in questions}) == len(questions)  # one answer each
    for item in questions:
        text = files[item["evidence"][0]]
        assert any(answer in text for answer in item["answers"]) or item["kind"] == "began"
        if item["kind"] == "began":  # the answer is the entry's date, in its heading
            assert item["answers"][0] in text.splitlines()[0]


def test_both_voices_occur():
    voices = {make_journal(seed, entries=5).voice for seed in range(20)}
    assert voices == {"modern", "old"}


def test_nothing_of_the_example_journal_is_planted():
    answers = set()
    for name in ("questions.jsonl", "questions-more.jsonl"):
        for line in (EXAMPLES / name).read_text().splitlines():
            answers.update(json.loads(line)["answers"])
    # names and words (numbers and dates may coincide by chance and mean nothing)
    words = {a.lower() for a in answers if re.search(r"[A-Za-z]{4,}", a)}
    vocabulary = set()
    for name in dir(synthetic):
        value = getattr(synthetic, name)
        if name.isupper() and isinstance(value, list) and name not in ("NUMBER_WORDS", "MONTHS"):
            vocabulary.update(str(v).lower() for v in value)
    shared = words & vocabulary
    assert not shared, f"example answers among the synthetic journals' words: {shared}"
