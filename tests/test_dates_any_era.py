"""Dates of any era (issue 24): entries from 1790 (or year 1) keep their own dates through
`memex add`, questions and periods about them resolve, and numbers that are no dates stay
numbers. Real files on disk, real SQLite, the real tokenizer; the tiny random model of
test_engine stands in for the model where an engine is needed."""

from __future__ import annotations

import json
import os
import time
from datetime import date

import pytest
from test_engine import make_engine, tiny_model_dir, write_journal  # noqa: F401  (fixture)
from typer.testing import CliRunner

from assistant.cli import app
from assistant.engine.dates import resolve_dates, strip_dates
from assistant.engine.reflection import period_range, resolve_period
from ingest.dates import date_from_heading, date_from_path

TODAY = date(2025, 4, 10)
MTIME = time.mktime((2021, 6, 1, 12, 0, 0, 0, 0, -1))
OLD_JOURNAL = {
    "voyage/1790-05-04.md": "# 4 May 1790\n\nCrossed the long portage with the canoe and "
                            "camped by the rapids. Mr. Mackay shot two geese.\n",
    "voyage/travels.md": "# 4 May 1790\n\nTraded beaver pelts for pemmican at the fort.\n\n"
                         "## 1790-05-20\n\nThe ice went out of the river in the night.\n",
    "voyage/1789/1789-06-03.md": "# 3 June 1789\n\nEmbarked at Fort Chipewyan in a birch "
                                 "bark canoe.\n",
    "modern/2024-05-04.md": "Planted tomatoes on the allotment with Anna.\n",
    "ancient/0001-01-01.md": "The first morning of the first year.\n",
    # no date of their own: the file's time, marked as such
    "misc/thoughts.md": "Some thoughts about rivers, with no date at all.\n",
    "misc/IMG_0001.md": "A caption for a photo.\n",
    "misc/notes-2.md": "More notes.\n",
    "misc/chapter 12.md": "A chapter about 1500 metre races and the 1200 steps.\n",
    "misc/v1.2.3.md": "Release notes.\n",
}
UNDATED = ["misc/IMG_0001.md", "misc/chapter 12.md", "misc/notes-2.md", "misc/thoughts.md",
           "misc/v1.2.3.md"]
runner = CliRunner()


def memex(home, *args):
    result = runner.invoke(app, ["--home", str(home), *[str(a) for a in args]])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def era_home(tmp_path, home, tiny_model_dir):  # noqa: F811  (the imported fixture)
    """The old journal added with `memex add` (real tokenizer, no embeddings), then a config
    that names the tiny model."""
    root = write_journal(tmp_path / "journal", OLD_JOURNAL)
    for rel in UNDATED:
        os.utime(root / rel, (MTIME, MTIME))
    memex(home, "add", root, "--no-embed")
    for key, value in (("model", tiny_model_dir), ("embeddings", "false"),
                       ("max_new_tokens", "6"), ("today", TODAY.isoformat())):
        memex(home, "config", "set", key, value)
    return home


def _entries(home) -> dict[str, list[tuple[str, str]]]:
    import ingest

    store = ingest.open_store(home)
    try:
        rows = store.db.execute(
            "SELECT d.path, e.date, e.date_rule FROM entries e JOIN documents d "
            "ON d.id = e.document_id WHERE e.status = 'live' ORDER BY d.path, e.ordinal").fetchall()
    finally:
        store.close()
    found: dict[str, list[tuple[str, str]]] = {}
    for path, when, rule in rows:
        found.setdefault(path, []).append((when, rule))
    return found


# -- ingest ------------------------------------------------------------------------------


def test_old_entries_keep_their_own_dates_after_add(era_home):
    entries = _entries(era_home)
    assert entries["voyage/1790-05-04.md"] == [("1790-05-04", "file_name")]
    assert entries["voyage/travels.md"] == [("1790-05-04", "heading"), ("1790-05-20", "heading")]
    assert entries["voyage/1789/1789-06-03.md"] == [("1789-06-03", "file_name")]
    assert entries["ancient/0001-01-01.md"] == [("0001-01-01", "file_name")]
    for rel in UNDATED:  # numbers in a name are no date: the file's time, marked "mtime"
        assert entries[rel] == [("2021-06-01", "mtime")], rel

    info = json.loads(memex(era_home, "status", "--json").stdout)
    assert info["date_rules"] == {"file_name": 4, "heading": 2, "mtime": 5}
    assert info["undated_entries"] == 5
    assert info["date_range"]["first"] == "0001-01-01"
    assert "5 undated: file time" in memex(era_home, "status").stdout


def test_date_filters_compare_four_digit_years(era_home):
    import ingest

    store = ingest.open_store(era_home)
    try:
        may_1790 = store.entries_between("1790-05-01", "1790-05-31")
        assert [(e.date, e.path) for e in may_1790] == [
            ("1790-05-04", "voyage/1790-05-04.md"), ("1790-05-04", "voyage/travels.md"),
            ("1790-05-20", "voyage/travels.md")]
        # zero-padded years sort before the others as text too
        assert [e.date for e in store.entries_between("0001-01-01", "0999-12-31")] == ["0001-01-01"]
        assert [e.date for e in store.entries_between(until="1789-12-31")] == [
            "0001-01-01", "1789-06-03"]
    finally:
        store.close()
    found = json.loads(memex(era_home, "search", "canoe", "--since", "1790-05-01",
                             "--until", "1790-05-31", "--json").stdout)["results"]
    assert [(r["date"], r["date_rule"]) for r in found] == [("1790-05-04", "file_name")]
    undated = json.loads(memex(era_home, "search", "rivers thoughts", "--json").stdout)["results"]
    assert undated[0]["path"] == "misc/thoughts.md" and undated[0]["date_rule"] == "mtime"
    assert "(file time)" in memex(era_home, "search", "rivers thoughts").stdout


# -- questions, periods and reflections on them ---------------------------------------------


def test_a_question_about_an_old_day_finds_that_day(era_home):
    engine = make_engine(era_home)
    answer = engine.answer("What did I do on 4 May 1790?", "retrieval")
    assert (answer.date_range.start, answer.date_range.end) == (date(1790, 5, 4), date(1790, 5, 4))
    assert answer.sources and {s.date for s in answer.sources} == {"1790-05-04"}
    # on this day: 4 May of every year, 1790 and 2024 alike
    days = {p.date for p in engine.entries_on_this_day((5, 4))}
    assert days == {"1790-05-04", "2024-05-04"}


def test_reflect_on_an_old_month(era_home):
    data = json.loads(memex(era_home, "reflect", "--since", "1790-05-01", "--until", "1790-05-31",
                            "--json").stdout)
    assert data["since"] == "1790-05-01" and data["until"] == "1790-05-31"
    assert data["dates"] == ["1790-05-04", "1790-05-20"] and data["entries"] == 3
    assert sum(week["entries"] for week in data["weekly"]) == 2  # days with entries
    assert data["weekly"][0]["week"] == "1790-04-26"  # the Monday before 1 May 1790
    named = json.loads(memex(era_home, "reflect", "--since", "June 1789", "--until", "June 1789",
                             "--json").stdout)
    assert (named["since"], named["until"], named["dates"]) == (
        "1789-06-01", "1789-06-30", ["1789-06-03"])


@pytest.mark.parametrize("since, until, start, end", [
    ("1790-05-01", "1790-05-31", date(1790, 5, 1), date(1790, 5, 31)),
    ("June 1789", "June 1789", date(1789, 6, 1), date(1789, 6, 30)),
    ("1789", "1793", date(1789, 1, 1), date(1793, 12, 31)),
    ("the summer of 1793", "the summer of 1793", date(1793, 6, 1), date(1793, 8, 31)),
    ("0001-01-01", "0001-12-31", date(1, 1, 1), date(1, 12, 31)),
])
def test_reflect_periods_of_any_era(since, until, start, end):
    assert resolve_period(TODAY, since=since, until=until)[:2] == (start, end)


def test_the_current_period_never_starts_before_year_one():
    assert period_range("year", date(1, 1, 3))[:2] == (date(1, 1, 1), date(1, 1, 3))
    assert period_range("week", date(1790, 5, 4))[:2] == (date(1790, 4, 28), date(1790, 5, 4))


@pytest.mark.parametrize("question, start, end", [
    ("What did I do on 4 May 1790?", date(1790, 5, 4), date(1790, 5, 4)),
    ("on 3 June 1789", date(1789, 6, 3), date(1789, 6, 3)),
    ("What happened on June 3rd, 1789?", date(1789, 6, 3), date(1789, 6, 3)),
    ("on 1789-06-03", date(1789, 6, 3), date(1789, 6, 3)),
    ("in March 1911", date(1911, 3, 1), date(1911, 3, 31)),
    ("June 1789", date(1789, 6, 1), date(1789, 6, 30)),
    ("what happened in 1789-06", date(1789, 6, 1), date(1789, 6, 30)),
    ("in 1792", date(1792, 1, 1), date(1792, 12, 31)),
    ("during 1792", date(1792, 1, 1), date(1792, 12, 31)),
    ("the events of 1793", date(1793, 1, 1), date(1793, 12, 31)),
    ("In 1066, who was king?", date(1066, 1, 1), date(1066, 12, 31)),
    ("in the year 1789", date(1789, 1, 1), date(1789, 12, 31)),
    ("the summer of 1793", date(1793, 6, 1), date(1793, 8, 31)),
    ("during the winter of 1792", date(1792, 12, 1), date(1793, 2, 28)),
    ("between 1789 and 1793", date(1789, 1, 1), date(1793, 12, 31)),
    ("from June 1789 to May 1790", date(1789, 6, 1), date(1790, 5, 31)),
    ("since 1850", date(1850, 1, 1), TODAY),
    ("before 1789", None, date(1788, 12, 31)),
    ("the night before 4 May 1790", date(1790, 5, 3), date(1790, 5, 4)),
    ("on 1789-02-30", date(1789, 1, 1), date(1789, 12, 31)),  # not a day: its year
    ("in 9999", date(9999, 1, 1), date(9999, 12, 31)),
    ("3 June 0812", date(812, 6, 3), date(812, 6, 3)),    # a zero-padded year with a month
    ("June 0812", date(812, 6, 1), date(812, 6, 30)),
    ("on 0001-01-01", date(1, 1, 1), date(1, 1, 1)),
    ("last week", date(2025, 3, 31), date(2025, 4, 6)),  # relative dates: against today
    ("what happened in 2023?", date(2023, 1, 1), date(2023, 12, 31)),
])
def test_questions_about_any_era(question, start, end):
    found = resolve_dates(question, TODAY)
    assert found is not None, question
    assert (found.start, found.end) == (start, end)


@pytest.mark.parametrize("question", [
    "How many 1500 metre races did I run?", "Did I climb the 1200 steps?",
    "a climb of 1500 steps", "my time in 1500 metres", "How many 2000 m races?",
    "What was in room 1789?", "1789",           # a bare old year needs a date word
    "in 0812",                                  # a zero-padded year needs a month
    "on 3 June 812", "in June 812",             # three-digit years are not read
    "how did 50 people fit in 10000 boxes",
])
def test_numbers_that_are_not_dates(question):
    assert resolve_dates(question, TODAY) is None


def test_strip_dates_of_an_old_question():
    assert strip_dates("What did I see on 3 June 1789 at the lake?", TODAY) == \
        "What did I see at the lake?"
    assert strip_dates("What happened during 1792 at the fort?", TODAY) == \
        "What happened at the fort?"


@pytest.mark.parametrize("path, expected", [
    ("1790-05-04.md", date(1790, 5, 4)),
    ("journal/1789/1789-06-03.md", date(1789, 6, 3)),
    ("1789_06_03 portage.txt", date(1789, 6, 3)),
    ("1789.06.03.md", date(1789, 6, 3)),
    ("17890603.md", date(1789, 6, 3)),
    ("1789/06/03.md", date(1789, 6, 3)),
    ("0001-01-01.md", date(1, 1, 1)),
    ("9999-12-31.md", date(9999, 12, 31)),
    ("IMG_0001.md", None), ("notes-2.md", None), ("chapter 12.md", None), ("v1.2.3.md", None),
    ("00010203.md", None),        # eight digits need a year of 1000 or later
    ("scan_00120304.md", None),
    ("1789-06.03.md", None),      # two different separators
    ("0000-01-01.md", None),      # there is no year 0
    ("1234-5678.md", None),
])
def test_file_names_of_any_era(path, expected):
    assert date_from_path(path) == expected


@pytest.mark.parametrize("heading, expected", [
    ("3 June 1789", date(1789, 6, 3)),
    ("1789-06-03", date(1789, 6, 3)),
    ("Wednesday, June 3, 1789", date(1789, 6, 3)),
    ("<1789-06-03 Wed>", date(1789, 6, 3)),
    ("3 March 0812", date(812, 3, 3)),
    ("0001-01-01", date(1, 1, 1)),
    ("June 1789", None),          # a month is not an entry's day
    ("1500 metres in May", None),
    ("Notes 12 March 1500", None),
    ("3 June 812", None),         # three-digit years are not read
])
def test_headings_of_any_era(heading, expected):
    assert date_from_heading(heading) == expected
