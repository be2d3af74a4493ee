"""The example journal (examples/journal) and its questions (examples/questions.jsonl).

These files are product: `make run` ingests them, and the answer engine is judged on
the questions. The checks here are the promises issue 2 makes about them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from datetime import date
from pathlib import Path

import frontmatter
import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
JOURNAL = EXAMPLES / "journal"
QUESTIONS = EXAMPLES / "questions.jsonl"
MORE_QUESTIONS = EXAMPLES / "questions-more.jsonl"  # hand-written, not by the generator

FIRST_DAY, LAST_DAY = date(2023, 1, 1), date(2024, 12, 31)
DATED_NAME = re.compile(r"(\d{4}-\d{2}-\d{2})")
DAILY_NAME = re.compile(r"^\d{4}-\d{2}-\d{2}\.md$")
DAY_HEADING = re.compile(r"^## (\d{4}-\d{2}-\d{2})\b", re.MULTILINE)
ORG_DATE = re.compile(r"^#\+DATE:\s*<(\d{4}-\d{2}-\d{2})", re.MULTILINE | re.IGNORECASE)
WIKILINK = re.compile(r"\[\[[^\]]+\]\]")


def journal_files() -> list[Path]:
    return sorted(path for path in JOURNAL.rglob("*") if path.is_file())


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")  # strict: a bad byte fails the test


def entry_dates(path: Path, text: str) -> list[date]:
    """Every date a reader could take this file's entries from."""
    found: list[str] = []
    if path.suffix == ".md" and text.startswith("---\n"):
        value = frontmatter.loads(text).metadata.get("date")
        if value is not None:
            found.append(str(value))
    found += ORG_DATE.findall(text)
    found += DAY_HEADING.findall(text)
    if match := DATED_NAME.search(path.name):
        found.append(match.group(1))
    return [date.fromisoformat(value) for value in found]


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return {path.relative_to(JOURNAL).as_posix(): read(path) for path in journal_files()}


@pytest.fixture(scope="module")
def questions() -> list[dict]:
    lines = QUESTIONS.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_enough_files_in_every_format(texts):
    paths = [Path(name) for name in texts]
    assert len(paths) >= 300
    front_matter = [p for p in paths if p.suffix == ".md" and texts[p.as_posix()].startswith("---\n")]
    daily = [p for p in paths if DAILY_NAME.match(p.name)]
    daily_with_links = [p for p in daily if WIKILINK.search(texts[p.as_posix()])]
    assert len(front_matter) >= 40, "Markdown notes with YAML front matter"
    assert len(daily) >= 150, "Obsidian-style daily notes named YYYY-MM-DD.md"
    assert len(daily_with_links) >= 30, "daily notes with [[wikilinks]]"
    assert sum(p.suffix == ".txt" for p in paths) >= 10
    assert sum(p.suffix == ".org" for p in paths) >= 10
    long_logs = [p for p in paths if len(DAY_HEADING.findall(texts[p.as_posix()])) >= 10]
    assert long_logs, "one long file holding many `## YYYY-MM-DD` entries"
    assert {p.parts[0] for p in paths} >= {"daily", "notes", "travel", "work"}


def test_front_matter_has_date_title_tags(texts):
    for name, text in texts.items():
        if name.endswith(".md") and text.startswith("---\n"):
            meta = frontmatter.loads(text).metadata
            assert {"date", "title", "tags"} <= set(meta), name
            assert isinstance(meta["tags"], list) and meta["tags"], name


def test_every_file_has_a_date_in_the_two_years(texts):
    for name, text in texts.items():
        dates = entry_dates(Path(name), text)
        assert dates, f"{name}: no date in front matter, #+DATE, `## YYYY-MM-DD` or the file name"
        assert all(FIRST_DAY <= day <= LAST_DAY for day in dates), (name, dates)


def test_long_log_headings_are_in_order(texts):
    for name, text in texts.items():
        days = [date.fromisoformat(value) for value in DAY_HEADING.findall(text)]
        assert days == sorted(days), name


def test_spans_about_two_years(texts):
    days = {day for name, text in texts.items() for day in entry_dates(Path(name), text)}
    months = {(day.year, day.month) for day in days}
    assert len(months) == 24, f"every month of 2023-2024 should have entries, got {len(months)}"


def test_token_total_is_within_range(texts, tokenizer):
    total = sum(len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts.values())
    assert 30_000 <= total <= 60_000, f"{total} tokens"


def test_questions_are_well_formed(questions):
    assert len(questions) >= 40
    seen = set()
    for item in questions:
        assert set(item) == {"question", "answers", "evidence"}, item
        assert isinstance(item["question"], str) and item["question"].endswith("?"), item
        assert item["answers"] and all(isinstance(a, str) and a.strip() for a in item["answers"]), item
        assert item["evidence"] and all(isinstance(p, str) for p in item["evidence"]), item
        assert item["question"] not in seen, f"duplicate question: {item['question']}"
        seen.add(item["question"])


def test_every_answer_is_in_its_evidence(questions):
    for item in questions:
        evidence = []
        for relative in item["evidence"]:
            path = JOURNAL / relative
            assert path.is_file(), f"{relative} (for {item['question']!r}) does not exist"
            evidence.append(read(path).lower())
        text = "\n".join(evidence)
        assert any(answer.lower() in text for answer in item["answers"]), item


def test_the_hand_written_questions_hold_too():
    items = [json.loads(line) for line in MORE_QUESTIONS.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    main = {json.loads(line)["question"]
            for line in QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()}
    assert len(items) >= 20
    for item in items:
        assert set(item) == {"question", "answers", "evidence"}, item
        assert item["question"].endswith("?") and item["question"] not in main, item
        text = "\n".join(read(JOURNAL / relative).lower() for relative in item["evidence"])
        assert any(answer.lower() in text for answer in item["answers"]), item


def test_committed_files_match_the_generator(texts, questions, monkeypatch):
    """make_journal.py and its committed output must not drift apart."""
    monkeypatch.setattr(sys, "path", list(sys.path))  # the script adds examples/ to it
    spec = importlib.util.spec_from_file_location("make_journal", EXAMPLES / "make_journal.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_journal", module)  # dataclasses look themselves up here
    try:
        spec.loader.exec_module(module)
        journal = module.build()
    finally:
        for helper in ("journal_facts", "journal_filler"):
            sys.modules.pop(helper, None)
    assert sorted(journal.files) == sorted(texts), "file list differs: rerun examples/make_journal.py"
    changed = [name for name, text in journal.files.items() if texts[name] != text]
    assert not changed, f"rerun examples/make_journal.py; stale files: {changed[:5]}"
    assert journal.questions == questions
