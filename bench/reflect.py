"""Reflections on real writing and on the example journal: are they the writer's own, dated?

    .venv/bin/python bench/reflect.py [--sets examples,barbellion,mackenzie]

Uses the data homes bench/answers.py made (~/.cache/memex-bench/answers/<set>; run it first).
For three months of each real journal and every month of the example journal, reflects with
the default model and measures: quoted lines (each "- date: “sentence”"), the share whose
date lies in the month and whose sentence stands verbatim in that day's entry, repeated runs
of four words in the text (loops), whether the model's closing sentence was kept, the people
listed and how many of the persons named in two or more of the month's entries they hold
(bench/questions/people.json), and the seconds per reflection. The table goes to
bench/results/reflect.txt.
"""

from __future__ import annotations

import argparse
import calendar
import json
import os
import re
import statistics
import sys
import time
from datetime import date
from pathlib import Path

from _machine import cpu_name  # noqa: E402  (bench/ is on sys.path when run as a script)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MONTHS = {"barbellion": ["1908-05", "1913-03", "1915-10"],
          "mackenzie": ["1789-07", "1792-12", "1793-07"],
          "examples": None}  # None: every month with entries


def months_of(engine) -> list[str]:
    rows = engine.store.db.execute("select distinct substr(date, 1, 7) from entries "
                                   "where status in ('live', 'pending') and date is not null "
                                   "order by 1").fetchall()
    return [r[0] for r in rows]


def check(engine, reflection, month: str) -> tuple[int, int]:
    """(quoted lines, lines dated in the month whose sentence is verbatim in that day's entry)"""
    from assistant.engine.prompting import spoken_date

    texts: dict[str, str] = {}
    for entry in engine.entries_between(f"{month}-01", f"{month}-31"):
        texts.setdefault(spoken_date(entry.date), "")
        texts[spoken_date(entry.date)] += "\n" + (entry.text or "")
    lines = [line for line in reflection.text.splitlines() if line.startswith("- ")]
    good = 0
    for line in lines:
        day, _, quoted = line[2:].partition(": ")
        if quoted.strip("“”") in texts.get(day, ""):
            good += 1
    return len(lines), good


PEOPLE = json.loads((REPO / "bench" / "questions" / "people.json").read_text())


def reference_people(engine, name: str, month: str) -> list[str]:
    """The persons the month's reflection should list (bench/questions/people.json)."""
    if name != "examples":
        return PEOPLE.get(name, {}).get(month, [])
    texts = [entry.text or "" for entry in engine.entries_between(f"{month}-01", f"{month}-31")]
    return [person for person in PEOPLE["examples_cast"]
            if sum(bool(re.search(rf"(?<!\w){re.escape(person)}(?!\w)", t)) for t in texts) >= 2]


def people_found(reference: list[str], listed: list[str]) -> int:
    """How many reference persons the reflection lists ("Mackay" in "Mr Mackay" counts)."""
    words = [set(re.findall(r"\S+", name)) for name in listed]
    return sum(any(set(person.split()) <= found for found in words) for person in reference)


def main(argv: list[str] | None = None) -> int:
    from assistant.engine import Engine
    from assistant.engine.grounding import repeats

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default=",".join(MONTHS))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "memex-bench" / "answers"
    parser.add_argument("--cache", type=Path, default=cache)
    args = parser.parse_args(argv)
    started, load = time.strftime("%Y-%m-%d %H:%M"), os.getloadavg()[0]
    rows = []
    for name in args.sets.split(","):
        home = args.cache / name
        if not (home / "memex.db").exists():
            print(f"skipped {name}: no data home at {home} (run bench/answers.py first)", file=sys.stderr)
            continue
        engine = Engine(home)
        for month in MONTHS[name] or months_of(engine):
            year, number = map(int, month.split("-"))
            start = date(year, number, 1)
            end = date(year, number, calendar.monthrange(year, number)[1])
            t0 = time.perf_counter()
            reflection = engine.reflect(start, end, f"{calendar.month_name[number]} {year}")
            seconds = time.perf_counter() - t0
            lines, good = check(engine, reflection, month)
            reference = reference_people(engine, name, month)
            found = people_found(reference, [person for person, _ in reflection.people])
            closing = reflection.text.split("\n\n")[-1] if "\n\n" in reflection.text else ""
            rows.append({"set": name, "month": month, "entries": reflection.entries, "lines": lines,
                         "good": good, "loop": repeats(closing + " ") if closing else False,
                         "closing": bool(closing), "people": len(reflection.people),
                         "reference": len(reference), "found": found,
                         "seconds": seconds})
            print(f"{name} {month}: {lines} lines, {good} dated and verbatim, closing "
                  f"{'kept' if closing else 'dropped'}, {seconds:.1f} s", file=sys.stderr)
        engine.close()
    table = ["| set | months | quoted lines | dated in the month and verbatim | loops | closing "
             "sentence kept | people listed (median) | people recall | s / reflection (median) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["set"] for r in rows):
        part = [r for r in rows if r["set"] == name]
        lines = sum(r["lines"] for r in part)
        good = sum(r["good"] for r in part)
        table.append(f"| {name} | {len(part)} | {lines} | {100 * good / lines if lines else 0:.0f} % | "
                     f"{sum(r['loop'] for r in part)} | {sum(r['closing'] for r in part)} of {len(part)} | "
                     f"{statistics.median(r['people'] for r in part):.0f} | "
                     f"{recall(part)} | "
                     f"{statistics.median(r['seconds'] for r in part):.1f} |")
    text = (f"# bench/reflect.py, {started}; {cpu_name()}, {os.cpu_count()} cores, load average "
            f"{load:.1f} at start\n" + "\n".join(table) + "\n")
    print(text)
    (REPO / "bench" / "results" / "reflect.txt").write_text(text)
    return 0


def recall(rows: list[dict]) -> str:
    wanted = sum(r["reference"] for r in rows)
    found = sum(r["found"] for r in rows)
    return f"{100 * found / wanted:.0f} % of {wanted}" if wanted else "–"


if __name__ == "__main__":
    sys.exit(main())
