"""Reflections on a period (a method of ``Engine``): the facts counted from its entries
(people, themes, moods, entries per week) and a short text written from a sample of
their sentences; and the periods the reflect commands and screen ask for."""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

from assistant.engine import prompting
from assistant.engine.answering import Answer
from assistant.engine.conversations import SourceRecord
from assistant.engine.dates import resolve_dates
from assistant.engine.grounding import grounded_chooser
from assistant.engine.quotes import tidy_short
from assistant.engine.results import Stopped, Timer


@dataclass
class Reflection:
    label: str
    start: date | None
    end: date | None
    text: str = ""
    entries: int = 0
    dates: list[str] = field(default_factory=list)
    people: list[tuple[str, int]] = field(default_factory=list)
    themes: list[tuple[str, int]] = field(default_factory=list)
    moods: list[tuple[str, int]] = field(default_factory=list)
    weekly: list[tuple[str, int]] = field(default_factory=list)  # (week start, entries)
    sources: list[SourceRecord] = field(default_factory=list)
    timings: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"period": self.label, "since": self.start and self.start.isoformat(),
                "until": self.end and self.end.isoformat(), "reflection": self.text,
                "entries": self.entries, "dates": self.dates,
                "people": [{"name": n, "count": c} for n, c in self.people],
                "themes": [{"word": w, "count": c} for w, c in self.themes],
                "moods": [{"word": w, "count": c} for w, c in self.moods],
                "weekly": [{"week": w, "entries": c} for w, c in self.weekly],
                "sources": [s.public() for s in self.sources], "timings": self.timings}

    @classmethod
    def from_json(cls, data: dict) -> Reflection:
        """The reflection ``to_json`` wrote (a warm server's, shown by its client)."""
        day = lambda text: date.fromisoformat(text) if text else None
        return cls(label=data["period"], start=day(data.get("since")), end=day(data.get("until")),
                   text=data.get("reflection", ""), entries=data.get("entries", 0),
                   dates=list(data.get("dates", [])),
                   people=[(p["name"], p["count"]) for p in data.get("people", [])],
                   themes=[(t["word"], t["count"]) for t in data.get("themes", [])],
                   moods=[(m["word"], m["count"]) for m in data.get("moods", [])],
                   weekly=[(w["week"], w["entries"]) for w in data.get("weekly", [])],
                   sources=[SourceRecord(path=s["path"], date=s.get("date"),
                                         snippet=s.get("snippet", ""))
                            for s in data.get("sources", [])],
                   timings=dict(data.get("timings", {})))


PERIOD_KEYS = ("week", "month", "year", "since", "until", "on_this_day")


def reflect_on(engine, period: dict, on_token: Callable[[str], None] | None = None,
               on_label: Callable[[str], None] | None = None) -> Reflection:
    """A reflection on the period `memex reflect`'s options name (``PERIOD_KEYS``; none:
    the latest month with entries). ``on_label`` hears the period's name before the text
    streams. ``ValueError`` for a period that cannot be read."""
    week, month, year, since, until, on_this_day = (period.get(k) for k in PERIOD_KEYS)
    chosen = sum([bool(week), bool(month), bool(year), bool(on_this_day), bool(since or until)])
    if chosen > 1:
        raise ValueError("pick one period: --week, --month, --year, --since/--until or "
                         "--on-this-day")
    latest = engine.latest_month() if not chosen else None
    if latest is not None:
        start, end, label = latest
        label, month_day = f"{label}, the latest month with entries", None
    else:
        start, end, label, month_day = resolve_period(engine.today, bool(week), bool(month),
                                                      bool(year), since, until,
                                                      bool(on_this_day))
    if on_label is not None:
        on_label(label)
    return engine.reflect(start, end, label, on_token=on_token, month_day=month_day)


class ReflectionMixin:
    """``reflect()``; uses the retrieval part's entry queries and the dense decoder."""

    def latest_month(self) -> tuple[date, date, str] | None:
        """(first day, last day, "June 1793") of the latest calendar month with entries, or
        None when there are none: where a reflection with no period given opens."""
        _, last = self.date_span()
        if last is None:
            return None
        days = calendar.monthrange(last.year, last.month)[1]
        return last.replace(day=1), last.replace(day=days), month_label(last)

    def nearest_entries(self, start: date | None, end: date | None) -> str:
        """The months of the entries nearest a period that has none ("May 1789 (before) and
        July 1790 (after)"), or "" when there are none on either side."""
        places = []
        for side, sql, bound in (("before", "max(date) from entries where date < ?", start),
                                 ("after", "min(date) from entries where date > ?", end)):
            if bound is None:
                continue
            row = self.store.db.execute(
                f"select {sql} and status in ('live', 'pending')",
                [bound.isoformat() if side == "before" else bound.isoformat() + "\uffff"]
            ).fetchone()
            if row and row[0]:
                places.append(f"{month_label(date.fromisoformat(row[0][:10]))} ({side})")
        return " and ".join(places)

    def reflect(self, start: date | None, end: date | None, label: str,
                on_token: Callable[[str], None] | None = None,
                month_day: tuple[int, int] | None = None) -> Reflection:
        """A reflection on the entries of a period: facts counted from the entries; the
        sentences that stand out (words this writer rarely uses, events, moods), quoted
        under their dates; and one closing sentence by the model, held to their words."""
        with self.lock:
            timer = Timer()
            reflection = Reflection(label=label, start=start, end=end)
            if month_day is not None:
                passages = self.entries_on_this_day(month_day, limit=200)
            else:
                passages = self.entries_between(start and start.isoformat(),
                                                end and end.isoformat())
            passages = [p for p in passages if p.date]
            passages.sort(key=lambda p: p.date)
            by_entry: dict[tuple[str, str], list] = {}
            for passage in passages:
                by_entry.setdefault((passage.date[:10], passage.path), []).append(passage)
            reflection.entries = len(by_entry)
            reflection.dates = sorted({d for d, _ in by_entry})
            reflection.weekly = weekly_counts(reflection.dates, start, end)
            texts = ["\n".join(p.text or "" for p in group) for group in by_entry.values()]
            reflection.people = prompting.recurring_names(texts)
            reflection.themes = prompting.recurring_themes(texts, exclude=[n for n, _ in reflection.people])
            reflection.moods = prompting.mood_words(texts)
            if not by_entry:
                reflection.text = f"There are no entries from {label}."
                if month_day is None:
                    nearest = self.nearest_entries(start, end)
                    if nearest:
                        reflection.text += f" The nearest are from {nearest}."
                reflection.timings = timer.timings()
                return reflection
            from ingest.search import document_frequencies

            # What stands out, in the writer's own words, each sentence under its date.
            highlights = prompting.distinctive_sentences(
                [(d, "\n".join(p.text or "" for p in group)) for (d, _), group in by_entry.items()],
                lambda words: document_frequencies(self.store, words), limit=6)
            chosen_days = {d for d, _ in highlights}
            reflection.sources = [
                SourceRecord(path=group[0].path, date=d, snippet=_first_line(group[0].text),
                             root=str(getattr(group[0], "root", "") or ""), text=group[0].text or "")
                for (d, _), group in by_entry.items() if d in chosen_days]
            lines = [f"- {prompting.spoken_date(d)}: “{text}”" for d, text in highlights]
            head = (f"{len(by_entry)} entr{'y' if len(by_entry) == 1 else 'ies'} from {label}; "
                    "what stands out:\n")
            quoted = head + "\n".join(lines)
            if on_token:
                on_token(quoted)
            # Then one closing sentence by the model, held to those sentences' words.
            notes = "\n".join(f"[{d}] {text}" for d, text in highlights)
            prompt_ids = self._chat_ids(prompting.reflect_messages(label, notes,
                                                                   persona=self.config.persona))
            emit = self._emitter(Answer(question="", mode="retrieval"), timer, None,
                                 one_sentence=True)
            # No loops, and every word, number and name from the period's sentences (or
            # its label): a reflection never repeats a run of four words or invents.
            choose = grounded_chooser(notes, label, self._pick, self.tokenizer, emit.ids,
                                      stop_ids=emit.stop_ids, copy_words=True)
            try:
                self._generate_dense(prompt_ids, emit, choose=choose)
            except Stopped:
                pass
            closing = tidy_short(emit.text)
            if not reads_as_a_sentence(closing):  # a fragment or a stutter says nothing
                closing = ""
            if closing and on_token:
                on_token("\n\n" + closing)
            reflection.text = quoted + ("\n\n" + closing if closing else "")
            reflection.timings = timer.timings()
            return reflection


def _first_line(text: str | None, width: int = 160) -> str:
    for sentence in prompting.split_sentences(text or ""):
        return sentence if len(sentence) <= width else sentence[: width - 1] + "…"
    return ""


def weekly_counts(dates: Sequence[str], start: date | None, end: date | None) -> list[tuple[str, int]]:
    """Entries per week (weeks start on Monday), empty weeks included, from start to end."""
    days = [date.fromisoformat(d[:10]) for d in dates]
    if not days and (start is None or end is None):
        return []
    first = start or min(days)
    last = end or max(days)
    if days:
        first, last = min(first, min(days)), max(last, max(days))
    week = first - timedelta(days=first.weekday())
    counts: dict[date, int] = {}
    while week <= last:
        counts[week] = 0
        week += timedelta(weeks=1)
    for day in days:
        monday = day - timedelta(days=day.weekday())
        counts[monday] = counts.get(monday, 0) + 1
    return [(w.isoformat(), n) for w, n in sorted(counts.items())]


def period_range(kind: str, today: date) -> tuple[date, date, str]:
    """The current week / month / year up to today (any year: none starts before 0001-01-01)."""
    days, label = {"week": (6, "the week"), "month": (29, "the 30 days")}.get(
        kind, (364, "the year"))
    start = today - timedelta(days=min(days, (today - date.min).days))
    return start, today, f"{label} to {today.isoformat()}"


def resolve_period(today: date, week=False, month=False, year=False, since=None, until=None,
                   on_this_day=False):
    """(start, end, label, month_day) for the reflect options."""
    if on_this_day:
        return None, None, f"{today:%B} {today.day} in every year", (today.month, today.day)
    if since or until:
        start = _one_date(since, today, first=True) if since else None
        end = _one_date(until, today, first=False) if until else today
        if start and end and start > end:
            raise ValueError("--since is after --until")
        label = f"{start.isoformat() if start else 'the beginning'} to {end.isoformat()}"
        return start, end, label, None
    kind = "month" if month else "year" if year else "week"
    start, end, label = period_range(kind, today)
    return start, end, label, None


def _one_date(text: str, today: date, first: bool) -> date:
    """A --since/--until value: an ISO day of any year 0001-9999, a year alone ("1789"),
    or words ("June 1789", "last March"): the first or last day of what it names."""
    text = text.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    if len(text) == 4 and text.isdigit() and text != "0000":  # the option is a date: any year
        return date(int(text), 1, 1) if first else date(int(text), 12, 31)
    found = resolve_dates(text, today)
    if found is None or (found.start is None and found.end is None):
        raise ValueError(f"cannot read {text!r} as a date (try YYYY-MM-DD or 'March 2024')")
    return (found.start or found.end) if first else (found.end or found.start)


def month_label(day: date) -> str:
    """"June 1793" (any year)."""
    return f"{calendar.month_name[day.month]} {day.year}"


def reads_as_a_sentence(text: str) -> bool:
    """At least four different words, mostly letters, no word twice in a row: what the
    small model writes often fails this ('In "The The The The " ( " " )'), and is dropped."""
    words = re.findall(r"[^\W\d_]{2,}", text)
    letters = sum(ch.isalpha() for ch in text)
    return (len({w.lower() for w in words}) >= 4 and letters >= 0.7 * len(text.replace(" ", ""))
            and not any(a.lower() == b.lower() for a, b in zip(words, words[1:])))
