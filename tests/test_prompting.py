"""What the small model reads: word matching and sentence choice (no model needed)."""

from __future__ import annotations

import pytest

from assistant.engine import prompting


class Passage:
    def __init__(self, text, date="2024-01-01", title=None):
        self.text, self.date, self.title = text, date, title


@pytest.mark.parametrize("a, b", [
    ("running", "run"), ("stopped", "stop"), ("planned", "plans"),
    ("kilometres", "km"), ("kilos", "kg"), ("hours", "hrs"),
])
def test_word_forms_and_unit_spellings_meet(a, b):
    assert prompting.stem(a) == prompting.stem(b)


@pytest.mark.parametrize("a, b", [("added", "ad"), ("falling", "fal"), ("run", "rug")])
def test_different_words_stay_apart(a, b):
    assert prompting.stem(a) != prompting.stem(b)


def test_a_line_naming_the_period_wins_for_a_question_about_that_period():
    passages = [
        Passage("Long run of 19 km by the river, a good run.", "2023-10-15"),
        Passage("## October 2023 in numbers\n- Distance run: 142 km\n- Books finished: 1",
                "2023-10-31", title="October 2023 review"),
    ]
    question = "How many kilometres did I run?"
    plain = prompting.select_sentences(question, passages, limit=1, context=0)
    assert [s.text for s in plain] != ["Distance run: 142 km"]
    with_period = prompting.select_sentences(question, passages, limit=1, context=0,
                                             period="October 2023")
    assert [s.text for s in with_period] == ["Distance run: 142 km"]


@pytest.mark.parametrize("question, expected", [
    ("How many kilometres did I run in 2024?", True),
    ("How far did I run in total in 2023?", True),
    ("What was my average sleep in January 2024?", True),
    ("Which city did we visit in May 2023?", False),
    ("What did I buy in June 2023?", False),
])
def test_questions_asking_for_a_count_or_total(question, expected):
    assert prompting.asks_for_quantity(question) is expected
