"""Write the example journal (examples/journal/) and its questions (examples/questions.jsonl).

Deterministic: a fixed seed, and every date and fact is set down in this file. Run it
again after editing and commit both the script and what it writes:

    .venv/bin/python examples/make_journal.py

The journal belongs to an unnamed narrator ("Sam" to friends) living in Sheffield
from January 2023 to December 2024. Facts that questions ask about are written by
hand in ``fixed_entries()``; everyday filler comes from the template pools in
``filler.py``, which know the state of the narrator's life on each day (which flat,
which job, injured or training, whether the dog has arrived yet) so the two agree.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from journal_facts import fixed_entries, month_reviews
from journal_filler import filler_entries

HERE = Path(__file__).resolve().parent
JOURNAL = HERE / "journal"
QUESTIONS = HERE / "questions.jsonl"
SEED = 20230101
START = date(2023, 1, 1)
END = date(2024, 12, 31)


@dataclass
class Journal:
    """Everything the generator will write, keyed by path relative to journal/."""

    files: dict[str, str] = field(default_factory=dict)
    travel: list[tuple[date, str, str]] = field(default_factory=list)  # (day, place, body)
    questions: list[dict] = field(default_factory=list)
    taken_days: set[date] = field(default_factory=set)  # days with a hand-written or dated entry
    sleep_log: dict[date, float] = field(default_factory=dict)  # hours, from daily notes' stats lines
    mood_log: dict[date, int] = field(default_factory=dict)

    def add(self, path: str, text: str) -> str:
        if path in self.files:
            raise ValueError(f"two entries want {path}")
        self.files[path] = text.strip("\n") + "\n"
        return path

    def ask(self, question: str, answers: list[str], evidence: list[str]) -> None:
        self.questions.append({"question": question, "answers": answers, "evidence": evidence})

    # -- one helper per format -------------------------------------------------

    def daily(self, day: date, body: str) -> str:
        """Obsidian-style daily note: daily/YYYY/YYYY-MM-DD.md, no front matter."""
        self.taken_days.add(day)
        return self.add(f"daily/{day.year}/{day.isoformat()}.md", body)

    def note(self, day: date, title: str, tags: list[str], body: str, slug: str,
             folder: str = "notes") -> str:
        """Markdown with YAML front matter (date, title, tags)."""
        front = (
            "---\n"
            f"date: {day.isoformat()}\n"
            f"title: {json.dumps(title, ensure_ascii=False)}\n"
            f"tags: [{', '.join(tags)}]\n"
            "---\n\n"
        )
        self.taken_days.add(day)
        return self.add(f"{folder}/{slug}.md", front + body.strip("\n"))

    def txt(self, day: date, slug: str, body: str, folder: str = "work") -> str:
        """Plain text; the date lives in the file name."""
        self.taken_days.add(day)
        return self.add(f"{folder}/{day.isoformat()}-{slug}.txt", body)

    def org(self, day: date, slug: str, title: str, tags: list[str], body: str,
            folder: str) -> str:
        """Org-mode file with #+TITLE / #+DATE and a dated file name."""
        head = (
            f"#+TITLE: {title}\n"
            f"#+DATE: <{day.isoformat()} {day.strftime('%a')}>\n"
            f"#+FILETAGS: :{':'.join(tags)}:\n\n"
        )
        self.taken_days.add(day)
        return self.add(f"{folder}/{day.isoformat()}-{slug}.org", head + body.strip("\n"))

    def trip(self, day: date, place: str, body: str) -> str:
        """One `## YYYY-MM-DD` entry in the single long travel log."""
        self.taken_days.add(day)
        self.travel.append((day, place, body.strip("\n")))
        return TRAVEL_LOG


TRAVEL_LOG = "travel/travel-log.md"


def render_travel_log(entries: list[tuple[date, str, str]]) -> str:
    lines = [
        "# Travel log",
        "",
        "One file for every trip, newest at the bottom. Written on my phone most evenings,",
        "tidied up when I got home.",
        "",
    ]
    for day, place, body in sorted(entries, key=lambda entry: entry[0]):
        lines += [f"## {day.isoformat()} · {place}", "", body, ""]
    return "\n".join(lines)


def build() -> Journal:
    journal = Journal()
    fixed_entries(journal)
    filler_entries(journal, random.Random(SEED), START, END)
    sleep: dict[tuple[int, int], list[float]] = {}
    mood: dict[tuple[int, int], list[int]] = {}
    for day, hours in journal.sleep_log.items():
        sleep.setdefault((day.year, day.month), []).append(hours)
    for day, score in journal.mood_log.items():
        mood.setdefault((day.year, day.month), []).append(score)
    month_reviews(journal, sleep, mood)
    journal.add(TRAVEL_LOG, render_travel_log(journal.travel))
    return journal


def check(journal: Journal) -> None:
    """Fail loudly if a question's answer is not in its evidence."""
    for item in journal.questions:
        text = " ".join(journal.files[path].lower() for path in item["evidence"])
        if not any(answer.lower() in text for answer in item["answers"]):
            raise SystemExit(f"no accepted answer in the evidence: {item}")


def write(journal: Journal) -> None:
    if JOURNAL.exists():
        shutil.rmtree(JOURNAL)
    for path, text in sorted(journal.files.items()):
        target = JOURNAL / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    with open(QUESTIONS, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(item, ensure_ascii=False) + "\n" for item in journal.questions)


def main() -> None:
    journal = build()
    check(journal)
    write(journal)
    by_kind: dict[str, int] = {}
    for path in journal.files:
        kind = Path(path).suffix
        by_kind[kind] = by_kind.get(kind, 0) + 1
    print(f"{len(journal.files)} files {by_kind}, {len(journal.travel)} travel-log entries, "
          f"{len(journal.questions)} questions")


if __name__ == "__main__":
    main()
