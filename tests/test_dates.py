"""Date phrases in questions → date ranges (relative to a fixed 'today')."""

from datetime import date

import pytest

from assistant.engine.dates import resolve_dates, strip_dates

TODAY = date(2025, 4, 10)  # a Thursday


@pytest.mark.parametrize("question, start, end", [
    ("What did I do in February 2022?", date(2022, 2, 1), date(2022, 2, 28)),
    ("What happened last March?", date(2025, 3, 1), date(2025, 3, 31)),
    ("What did I do in May?", date(2024, 5, 1), date(2024, 5, 31)),
    ("Who did I visit in 2023?", date(2023, 1, 1), date(2023, 12, 31)),
    ("What did I cook two weeks ago?", date(2025, 3, 24), date(2025, 3, 30)),
    ("What did I write on 2024-03-05?", date(2024, 3, 5), date(2024, 3, 5)),
    ("Dinner on 5 March 2024?", date(2024, 3, 5), date(2024, 3, 5)),
    ("What did I do on March 5th, 2023?", date(2023, 3, 5), date(2023, 3, 5)),
    ("what did Anna and I do last spring?", date(2024, 3, 1), date(2024, 5, 31)),
    ("how have I been sleeping this month?", date(2025, 4, 1), date(2025, 4, 10)),
    ("What did I do last week?", date(2025, 3, 31), date(2025, 4, 6)),
    ("yesterday's run", date(2025, 4, 9), date(2025, 4, 9)),
    ("the past 3 days", date(2025, 4, 7), date(2025, 4, 10)),
    ("a couple of weeks ago", date(2025, 3, 24), date(2025, 3, 30)),
    ("last tuesday", date(2025, 4, 8), date(2025, 4, 8)),
    ("during the winter of 2023", date(2023, 12, 1), date(2024, 2, 29)),
    ("what happened in 2024-03", date(2024, 3, 1), date(2024, 3, 31)),
    ("runs since March 2023", date(2023, 3, 1), TODAY),
    ("between January 2023 and March 2023", date(2023, 1, 1), date(2023, 3, 31)),
    ("before 2023", None, date(2022, 12, 31)),
])
def test_phrases_resolve_to_ranges(question, start, end):
    found = resolve_dates(question, TODAY)
    assert found is not None, question
    assert (found.start, found.end) == (start, end)
    if start:
        assert found.contains(start) and not found.contains(date(1999, 1, 1))


def test_on_this_day_is_every_year():
    found = resolve_dates("What was I doing on this day?", TODAY)
    assert found.month_day == (4, 10)
    assert found.contains(date(2019, 4, 10)) and found.contains("2023-04-10")
    assert not found.contains(date(2023, 4, 11))


@pytest.mark.parametrize("question", [
    "May I ask who Anna is?", "What is my dad's name?", "How many marathons had Ellie run?",
    "Where do my parents live?",
])
def test_no_date_no_range(question):
    assert resolve_dates(question, TODAY) is None


def test_strip_dates_keeps_the_rest():
    assert strip_dates("Which band did we see at the Leadmill in March 2023?", TODAY) == \
        "Which band did we see at the Leadmill?"
    assert strip_dates("What did I order at Café Lune on 2023-04-12?", TODAY) == \
        "What did I order at Café Lune?"


def test_impossible_day_falls_back_to_its_year():
    found = resolve_dates("What happened on 2023-02-30?", TODAY)
    assert (found.start, found.end) == (date(2023, 1, 1), date(2023, 12, 31))


@pytest.mark.parametrize("question, period, name", [
    ("How far did I run in 2023?", (2023, None), "2023"),
    ("How many books did I finish in October 2023?", (2023, 10), "October 2023"),
    ("What did I cook last March?", (2025, 3), "March 2025"),
    ("What did I do on 2023-03-25?", None, None),
    ("What did I do last week?", None, None),
    ("What happened in summer 2024?", None, None),
    ("What happened since March 2023?", None, None),
    ("What did I do on this day?", None, None),
])
def test_a_whole_month_or_year_is_a_period(question, period, name):
    found = resolve_dates(question, TODAY)
    assert found.period == period
    assert found.period_name == name


@pytest.mark.parametrize("question, start, end", [
    ("How long did I sleep the night before 2024-01-15?", date(2024, 1, 14), date(2024, 1, 15)),
    ("How did I feel the night after 14 February 2023?", date(2023, 2, 14), date(2023, 2, 15)),
    ("What did I eat the day after 3 March 2024?", date(2024, 3, 4), date(2024, 3, 4)),
    ("Where was I the morning before 2024-06-02?", date(2024, 6, 1), date(2024, 6, 1)),
    ("What happened before 2024-01-15?", None, date(2024, 1, 14)),  # still an open range
    ("What did I do the day before March 2024?", None, date(2024, 2, 29)),  # not one day
])
def test_the_day_or_night_next_to_a_date(question, start, end):
    found = resolve_dates(question, TODAY)
    assert (found.start, found.end) == (start, end)
