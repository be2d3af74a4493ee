"""Dates in questions: "last March", "in 2023", "two weeks ago", "on this day" → a date range.

Finding the phrase is done here with a few patterns (so that "may" the verb or a
stray number is not taken for a date); reading it is left to ``dateparser`` where
it is good at it (explicit dates, "two weeks ago"), and the size of the range
(day, week, month, season, year) comes from the words used.

Dates of any era: a year is four digits, as in ISO. Next to a month or a season, or
in an ISO date, any year 0001-9999 counts ("3 June 1789", "June 0812", "the summer
of 1793", "1789-06-03"); three-digit years ("June 812") are not read (dateparser
reads none either). A four-digit number on its own is a year when it is 1900-2099
("in 2023", "2023's trips", as always), or 1000-9999 after a date word ("in 1789",
"during 1792", "of 1793", "since 1850", "between 1789 and 1793"), and never when a
unit follows ("the 1200 steps", "in 1500 metres").
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta

MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
MONTHS.update({name.lower(): number for number, name in enumerate(calendar.month_abbr) if name})
MONTHS["sept"] = 9
WEEKDAYS = {name.lower(): number for number, name in enumerate(calendar.day_name)}

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
          r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?")
_DAY = r"(?:[12]\d|3[01]|0?[1-9])(?:st|nd|rd|th)?"
_YEAR = r"(?!0000)\d{4}"  # 0001-9999: with a month, a season or in an ISO date
_SEASON = r"(?:spring|summer|autumn|fall|winter)"
_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_UNIT = r"(?:day|week|month|year)s?"
_COUNT_WORDS = {
    "a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
    "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "a couple of": 2, "couple of": 2, "a couple": 2, "a few": 3, "few": 3, "several": 4,
}
_COUNT = r"(?:\d{1,3}|a couple of|couple of|a couple|a few|few|several|an?|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
# Words after which a bare month name ("in May") is a date and not a verb ("may I").
_MONTH_CUE = r"(?:in|during|last|this|since|before|after|until|till|through|of|early|mid|late|from|by|to|and)"
# A four-digit number outside 1900-2099 is a year only right after one of these ...
_YEAR_CUE = re.compile(
    r"(?:\b(?:in|during|since|before|after|until|till|through|throughout|of|from|between"
    r"|circa|ca\.|c\.|early|late|mid|year)|\bmid-)\s*$"
    r"|\b(?:between|from)\s+\d{4}\s*(?:and|to|until|till|through|-|–)\s*$", re.IGNORECASE)
# ... and (any year) not when a unit follows: "1500 metres", "the 2000 steps".
_NOT_A_YEAR_AFTER = re.compile(
    r"\s*-?\s*(?:m|km|k|kg|g|lbs?|metres?|meters?|kilometres?|kilometers?|miles?|yards?|feet|foot"
    r"|ft|steps?|calories|kcal|words|pages|euros?|dollars?|pounds?|percent)\b|\s*%", re.IGNORECASE)
# A month name followed by a number that is no year is not this year's month ("June 812").
_NO_YEAR_AFTER = r"(?!,?\s*\d{3}\b)"
# Seasons: (first month, number of months), northern hemisphere; winter Y = Dec Y .. Feb Y+1.
_SEASONS = {"spring": (3, 3), "summer": (6, 3), "autumn": (9, 3), "fall": (9, 3), "winter": (12, 3)}


@dataclass(frozen=True)
class DateRange:
    """Inclusive range of entry dates a question is about.

    ``month_day`` is set for "on this day": entries of that month and day in any year.
    """

    start: date | None
    end: date | None
    label: str
    phrase: str = ""
    month_day: tuple[int, int] | None = None

    def contains(self, day: date | str | None) -> bool:
        if day is None:
            return False
        if isinstance(day, str):
            try:
                day = date.fromisoformat(day[:10])
            except ValueError:
                return False
        if isinstance(day, datetime):
            day = day.date()
        if self.month_day is not None:
            return (day.month, day.day) == self.month_day
        if self.start and day < self.start:
            return False
        if self.end and day > self.end:
            return False
        return True

    @property
    def period(self) -> tuple[int, int | None] | None:
        """(year, month) when the range is one whole calendar month, (year, None) when it
        is one whole calendar year, else None (weeks, days, open and odd ranges)."""
        if self.month_day is not None or self.start is None or self.end is None:
            return None
        start, end = self.start, self.end
        if start.year != end.year or start.day != 1:
            return None
        if (start.month, end.month, end.day) == (1, 12, 31):
            return start.year, None
        if start.month == end.month and end == _month_end(start.year, start.month):
            return start.year, start.month
        return None

    @property
    def period_name(self) -> str | None:
        """"October 2023" / "2023" for a whole month / year (see ``period``), else None."""
        period = self.period
        if period is None:
            return None
        year, month = period
        return f"{calendar.month_name[month]} {year}" if month else str(year)

    @property
    def since(self) -> str | None:
        return self.start.isoformat() if self.start else None

    @property
    def until(self) -> str | None:
        return self.end.isoformat() if self.end else None


@dataclass(frozen=True)
class _Match:
    start: date
    end: date
    label: str
    span: tuple[int, int]
    month_day: tuple[int, int] | None = None


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = divmod(index, 12)
    return date(year, month + 1, min(day.day, calendar.monthrange(year, month + 1)[1]))


def _month_range(year: int, month: int, label: str | None = None) -> tuple[date, date, str]:
    return date(year, month, 1), _month_end(year, month), label or f"{calendar.month_name[month]} {year}"


def _week_range(day: date) -> tuple[date, date]:
    monday = day - timedelta(days=day.weekday())
    return monday, monday + timedelta(days=6)


def _season_range(season: str, year: int) -> tuple[date, date]:
    first, length = _SEASONS[season]
    start = date(year, first, 1)
    last = _add_months(start, length - 1)
    return start, _month_end(last.year, last.month)


def _count(text: str) -> int:
    text = text.strip().lower()
    return int(text) if text.isdigit() else _COUNT_WORDS.get(text, 1)


def _parse_day(text: str, today: date) -> date | None:
    """An explicit calendar day ("March 5th, 2023", "5 March") read by dateparser."""
    import dateparser

    base = datetime.combine(today, datetime.min.time())
    parsed = dateparser.parse(text, languages=["en"],
                              settings={"RELATIVE_BASE": base, "PREFER_DATES_FROM": "past",
                                        "REQUIRE_PARTS": ["day", "month"]})
    return parsed.date() if parsed else None


def _parse_relative(text: str, today: date) -> date | None:
    """"two weeks ago" and friends, read by dateparser relative to ``today``."""
    import dateparser

    base = datetime.combine(today, datetime.min.time())
    parsed = dateparser.parse(text, languages=["en"], settings={"RELATIVE_BASE": base})
    return parsed.date() if parsed else None


def _most_recent_month(month: int, today: date, exclude_current: bool) -> int:
    """The year of the latest ``month`` not after today ("in March", "last March")."""
    year = today.year
    if month > today.month or (exclude_current and month == today.month):
        year -= 1
    return year


def _finders(today: date):
    """(pattern, handler) pairs, most specific first. A handler returns (start, end, label)."""

    def on_this_day(m):
        return today, today, f"on this day ({today:%B} {today.day}, any year)", (today.month, today.day)

    def iso_day(m):
        try:
            day = date(int(m["y"]), int(m["m"]), int(m["d"]))
        except ValueError:
            return None
        return day, day, day.isoformat()

    def iso_month(m):
        month = int(m["m"])
        if not 1 <= month <= 12:
            return None
        return _month_range(int(m["y"]), month)

    def explicit_day(m):
        day = _parse_day(m.group(0), today)
        if day is None:
            return None
        return day, day, day.isoformat()

    def season(m):
        name = m["season"].lower()
        if m["year"]:
            year = int(m["year"])
        else:
            # The latest such season that has begun ("last": that has ended).
            last = (m["which"] or "").lower() == "last"
            year = next(y for y in range(today.year, today.year - 3, -1)
                        if (_season_range(name, y)[1] < today if last
                            else _season_range(name, y)[0] <= today))
        start, end = _season_range(name, year)
        return start, end, f"{name} {year}"

    def month_year(m):
        return _month_range(int(m["year"]), MONTHS[m["month"].lower().rstrip(".")])

    def cued_month(m):
        month = MONTHS[m["month"].lower().rstrip(".")]
        cue = m["cue"].lower()
        if cue == "this":
            year = today.year
        else:
            year = _most_recent_month(month, today, exclude_current=cue == "last")
        return _month_range(year, month)

    def year(m):
        value = int(m["year"])
        if _NOT_A_YEAR_AFTER.match(m.string, m.end()):
            return None
        if not 1900 <= value <= 2099:
            iso = re.match(r"-\d{1,2}-\d{1,2}\b", m.string[m.end():])  # "1789-02-30": its year
            if value < 1000 or not (iso or _YEAR_CUE.search(m.string[:m.start()])):
                return None
        return date(value, 1, 1), date(value, 12, 31), str(value)

    def named_day(m):
        word = m["word"].lower()
        day = today - timedelta(days=1) if word == "yesterday" else today
        return day, day, f"{word} ({day.isoformat()})"

    def this_last_period(m):
        which, unit = m["which"].lower(), m["unit"].lower()
        back = 0 if which == "this" else 1
        if unit == "week":
            start, end = _week_range(today - timedelta(weeks=back))
        elif unit == "weekend":
            saturday = _week_range(today)[0] + timedelta(days=5)
            if back or saturday > today:
                saturday -= timedelta(weeks=1)
            start, end = saturday, saturday + timedelta(days=1)
        elif unit == "month":
            first = _add_months(today.replace(day=1), -back)
            start, end = first, _month_end(first.year, first.month)
        else:
            start, end = date(today.year - back, 1, 1), date(today.year - back, 12, 31)
        return start, min(end, today) if back == 0 else end, f"{which} {unit}"

    def past_n(m):
        n, unit = _count(m["n"]), m["unit"].lower().rstrip("s")
        if unit == "day":
            start = today - timedelta(days=n)
        elif unit == "week":
            start = today - timedelta(weeks=n)
        elif unit == "month":
            start = _add_months(today, -n)
        else:
            start = date(today.year - n, today.month, min(today.day, 28))
        return start, today, f"the past {n} {unit}{'s' if n != 1 else ''}"

    def ago(m):
        n, unit = _count(m["n"]), m["unit"].lower().rstrip("s")
        phrase = f"{n} {unit}{'s' if n != 1 else ''} ago"
        anchor = _parse_relative(phrase, today)
        if anchor is None:
            return None
        if unit == "day":
            return anchor, anchor, f"{phrase} ({anchor.isoformat()})"
        if unit == "week":
            start, end = _week_range(anchor)
            return start, end, f"{phrase} (week of {start.isoformat()})"
        if unit == "month":
            return _month_range(anchor.year, anchor.month, f"{phrase} ({anchor:%B %Y})")
        return date(anchor.year, 1, 1), date(anchor.year, 12, 31), f"{phrase} ({anchor.year})"

    def weekday(m):
        target = WEEKDAYS[m["weekday"].lower()]
        back = (today.weekday() - target) % 7
        if back == 0 and (m["which"] or "").lower() == "last":
            back = 7
        day = today - timedelta(days=back)
        return day, day, f"{m['weekday'].capitalize()} {day.isoformat()}"

    def recently(m):
        return today - timedelta(days=30), today, "the past 30 days"

    yield r"\b(?:on this (?:day|date)|this day in (?:past|previous|earlier|other) years|on today's date)\b", on_this_day
    yield r"\b(?P<y>" + _YEAR + r")-(?P<m>\d{1,2})-(?P<d>\d{1,2})\b", iso_day
    yield (r"\b" + _MONTH + r"\s+" + _DAY + r",?\s+" + _YEAR + r"\b"
           r"|\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r",?\s+" + _YEAR + r"\b"), explicit_day
    yield r"\b(?P<y>" + _YEAR + r")-(?P<m>\d{2})\b(?!-)", iso_month
    yield (r"\b(?:(?P<which>last|this|in|during)\s+(?:the\s+)?)?(?P<season>" + _SEASON
           + r")(?:\s+(?:of\s+)?(?P<year>" + _YEAR + r"))?\b"), season
    yield r"\b(?P<month>" + _MONTH + r"),?\s+(?:of\s+)?(?P<year>" + _YEAR + r")\b", month_year
    yield (r"\b" + _MONTH + r"\s+" + _DAY + r"\b(?!\s*(?:am|pm|:))" + _NO_YEAR_AFTER
           + r"|\b" + _DAY + r"\s+(?:of\s+)?" + _MONTH + r"\b" + _NO_YEAR_AFTER), explicit_day
    yield (r"\b(?P<cue>" + _MONTH_CUE + r")\s+(?:the\s+month\s+of\s+)?(?P<month>" + _MONTH + r")\b"
           + _NO_YEAR_AFTER), cued_month
    yield r"\b(?P<word>yesterday|today|tonight|this morning|this evening)\b", named_day
    yield r"\b(?:the\s+)?(?:past|last|previous)\s+(?P<n>" + _COUNT + r")\s+(?P<unit>" + _UNIT + r")\b", past_n
    yield r"\b(?P<n>" + _COUNT + r")\s+(?P<unit>" + _UNIT + r")\s+ago\b", ago
    yield r"\b(?P<which>this|last|past|previous)\s+(?P<unit>week|weekend|month|year)\b", lambda m: this_last_period(
        _Renamed(m, which="last" if m["which"].lower() in ("past", "previous") else m["which"]))
    yield r"\b(?:(?P<which>last|this|on)\s+)?(?P<weekday>" + _WEEKDAY + r")\b", weekday
    yield r"\b(?P<year>\d{4})\b", year
    yield r"\b(?:recently|lately|these days)\b", recently


class _Renamed:
    """A match whose named groups can be overridden (for "past week" → "last week")."""

    def __init__(self, match, **overrides):
        self._match, self._overrides = match, overrides

    def __getitem__(self, key):
        return self._overrides.get(key, self._match[key])

    def group(self, index=0):
        return self._match.group(index)


def find_dates(question: str, today: date | None = None) -> list[_Match]:
    """Every date phrase in ``question``, left to right, without overlaps."""
    today = today or date.today()
    taken: list[tuple[int, int]] = []
    found: list[_Match] = []
    for pattern, handler in _finders(today):
        for m in re.finditer(pattern, question, flags=re.IGNORECASE):
            span = m.span()
            if any(span[0] < end and start < span[1] for start, end in taken):
                continue
            try:
                result = handler(m)
            except (ValueError, OverflowError):  # past year 9999 ("winter 9999") or before 1
                result = None
            if result is None:
                continue
            start, end, label, *rest = result
            taken.append(span)
            found.append(_Match(start, end, label, span, rest[0] if rest else None))
    return sorted(found, key=lambda match: match.span)


_DAY_PARTS = ("day", "night", "morning", "evening", "afternoon")


def _shift(day: date, days: int) -> date:
    """``day`` moved by ``days``, kept within years 1..9999."""
    try:
        return day + timedelta(days=days)
    except OverflowError:
        return date.max if days > 0 else date.min


def _next_to_a_day(match, part: str, cue: str, phrase: str) -> DateRange:
    """"the day before X" is one day, not everything before X; a night joins two days
    (it may be written up on either), the other parts of a day are that day."""
    day = match.start
    if part == "night":
        start, end = (_shift(day, -1), day) if cue == "before" else (day, _shift(day, 1))
    else:
        start = end = _shift(day, -1) if cue == "before" else _shift(day, 1)
    label = start.isoformat() if start == end else f"{start.isoformat()} to {end.isoformat()}"
    return DateRange(start, end, label, f"the {part} {cue} {phrase}")


def resolve_dates(question: str, today: date | None = None) -> DateRange | None:
    """The date range a question asks about, or None when it names no date.

    "since X", "after X", "before X", "until X" and "between X and Y" open or join ranges;
    "the day (night, morning, ...) before/after X" is the day (or night) next to X.
    """
    today = today or date.today()
    matches = find_dates(question, today)
    if not matches:
        return None
    first = matches[0]
    before = question[:first.span[0]].lower().split()
    cue = before[-1] if before else ""
    phrase = question[first.span[0]:first.span[1]]
    if first.month_day is not None:
        return DateRange(None, None, first.label, phrase, first.month_day)
    if len(matches) >= 2 and cue in ("between", "from"):
        second = matches[1]
        joiner = question[first.span[1]:second.span[0]].strip().lower()
        if joiner in ("and", "to", "until", "till", "through", "-", "–"):
            whole = question[first.span[0]:second.span[1]]
            return DateRange(first.start, second.end, f"{first.label} to {second.label}",
                             f"{cue} {whole}")
    if cue in ("before", "after") and first.start == first.end and len(before) >= 3 \
            and before[-3] == "the" and before[-2] in _DAY_PARTS:
        return _next_to_a_day(first, before[-2], cue, phrase)
    if cue == "since":
        return DateRange(first.start, today, f"since {first.label}", f"since {phrase}")
    if cue == "after":
        return DateRange(_shift(first.end, 1), today, f"after {first.label}", f"after {phrase}")
    if cue == "before":
        return DateRange(None, _shift(first.start, -1), f"before {first.label}", f"before {phrase}")
    if cue in ("until", "till"):
        return DateRange(None, first.end, f"until {first.label}", f"{cue} {phrase}")
    return DateRange(first.start, first.end, first.label, phrase)


def strip_dates(question: str, today: date | None = None) -> str:
    """The question without its date phrases (and the little words that led into them)."""
    matches = find_dates(question, today)
    out, last = [], 0
    for match in matches:
        start, end = match.span
        head = question[last:start]
        head = re.sub(r"\b(?:in|on|during|since|after|before|until|till|between|from|and|of|the)\s*$",
                      "", head, flags=re.IGNORECASE)
        out.append(head)
        last = end
    out.append(question[last:])
    text = re.sub(r"\s+", " ", "".join(out)).strip()
    return re.sub(r"\s+([?.!,;:])", r"\1", text)
