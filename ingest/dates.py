"""Entry dates: where each entry's date comes from, and which rule gave it.

Rules, in order (the first that gives a date wins):

1. ``front_matter``: an explicit date written by the person (YAML ``date:``, Org
   ``#+DATE:``, an HTML ``<meta name="date">``; Day One entries use ``dayone``).
2. ``file_name``: ``2024-03-05.md``, ``2024_03_05 notes.txt``, ``20240305.md``,
   ``2024/03/05.md``, ``2024-03/05.md``.
3. ``heading``: date headings (``## 2024-03-05``, ``* <2024-03-05 Tue>``,
   ``## Tuesday, March 5, 2024``, ``# 3 June 1789``) split a long journal file into
   one entry each.
4. ``metadata``: the creation date inside a PDF or DOCX (often the export date,
   hence after the rules above).
5. ``mtime``: the file's modification time, in local time: the fallback of an
   undated file (``UNDATED_RULES``), shown as such by ``Store.status()``.

Any year from 1 to 9999 (``date``'s own range), always written with four digits as
ISO does (year 1 is ``0001-01-01``). So that numbers are not taken for dates:

- year, month and day separated by one separator used twice (``1789-06-03``,
  ``1789_06_03``, ``1789.06.03``; ``0001-01-01``); ``v1.2.3``, ``notes-2``,
  ``IMG_0001`` and ``chapter 12`` hold no such triple;
- eight digits in a row (``17890603``) only for years 1000-9999, so that a
  zero-padded counter (``scan_00010203``) is not year 1;
- folders ``1789/06/03.md`` and ``1789-06/03.md``;
- a heading with a month name is read by dateparser only when it also holds a
  four-digit number and a day (``# 3 June 1789``, ``## June 3rd, 0812``); a month
  with a year (``## June 1789``) is not an entry's day.

dateparser handles the free-form cases only; it is slow, so plain ISO forms are
matched with regular expressions first. It reads any four-digit year, but no
three-digit one ("3 June 812" stays undated).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

# Rules that mean "no date of its own": the entry's date is only the file's time.
UNDATED_RULES = ("mtime",)

_YEAR = r"\d{4}"   # 0001-9999; _make_date refuses year 0
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
# The same separator twice: "1789-06-03" but not "1789-06.03" (nor "1.2.3": the year
# has four digits). A digit on either side makes it part of a longer number.
_SEP_DATE = re.compile(
    rf"(?<!\d)(?P<y>{_YEAR})(?P<sep>[-_.])(?P<m>{_MONTH})(?P=sep)(?P<d>{_DAY})(?!\d)")
# Eight digits in a row: years 1000-9999 only (a zero-padded counter is no date).
_COMPACT_DATE = re.compile(
    r"(?<!\d)(?P<y>[1-9]\d{3})(?P<m>0[1-9]|1[0-2])(?P<d>0[1-9]|[12]\d|3[01])(?!\d)")
_PATH_DATE = re.compile(
    rf"(?:^|/)(?P<y>{_YEAR})[/-](?P<m>{_MONTH})/(?P<d>{_DAY})(?=$|[^\d])")
_ISO_IN_TEXT = re.compile(
    rf"(?<!\d)(?P<y>{_YEAR})(?P<sep>[-/.])(?P<m>{_MONTH})(?P=sep)(?P<d>{_DAY})(?!\d)")
_MONTH_NAMES = re.compile(
    r"\b(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|"
    r"sep(t|tember)?|oct(ober)?|nov(ember)?|dec(ember)?)\b", re.IGNORECASE)
_HAS_YEAR = re.compile(rf"(?<!\d){_YEAR}(?!\d)")

_MD_HEADING = re.compile(r"^#{1,6}[ \t]+(?P<text>[^\n]{1,120}?)[ \t#]*$", re.MULTILINE)
_ORG_HEADING = re.compile(r"^\*{1,6}[ \t]+(?P<text>[^\n]{1,120}?)[ \t]*$", re.MULTILINE)
_DATE_LINE = re.compile(
    rf"^[ \t]*(?P<text>{_YEAR}(?P<sep>[-/.]){_MONTH}(?P=sep){_DAY})[ \t]*:?[ \t]*$", re.MULTILINE)


@dataclass
class Entry:
    """A dated piece of a document: what becomes one entry in the stream."""
    text: str
    date: date | None = None
    date_rule: str | None = None
    title: str | None = None
    tags: list[str] = field(default_factory=list)


def _make_date(year, month, day) -> date | None:
    try:
        return date(int(year), int(month), int(day))  # years 1..9999; year 0 is refused
    except (TypeError, ValueError):
        return None


def _ymd(match) -> date | None:
    return _make_date(match["y"], match["m"], match["d"])


def date_from_path(relpath: str) -> date | None:
    """A date spelled in the file name, else in the folders above it."""
    relpath = relpath.replace("\\", "/")
    name = relpath.rsplit("/", 1)[-1]
    for pattern in (_SEP_DATE, _COMPACT_DATE):
        match = pattern.search(name)
        if match and (found := _ymd(match)):
            return found
    match = _PATH_DATE.search(relpath)
    if match:
        return _ymd(match)
    return None


@lru_cache(maxsize=4096)
def _dateparser_date(text: str) -> date | None:
    import dateparser

    try:
        parsed = dateparser.parse(text, settings={"STRICT_PARSING": True,
                                                  "RETURN_AS_TIMEZONE_AWARE": False})
    except Exception:  # dateparser raises a variety of errors on odd input
        return None
    if parsed is None:
        return None
    return parsed.date()


def date_from_value(value) -> date | None:
    """A date from a front-matter value (date, datetime, or text)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, (int, float)):
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 80:
        return None
    match = _ISO_IN_TEXT.match(text)
    if match:
        return _ymd(match)
    return _dateparser_date(text)


def date_from_heading(text: str) -> date | None:
    """The date a heading names, if it names one (a full day, not just a month)."""
    text = text.strip().strip("<>[]").strip()
    match = _ISO_IN_TEXT.search(text)
    if match:
        return _ymd(match)
    if len(text) > 48 or not _HAS_YEAR.search(text) or not re.search(r"\d", text):
        return None
    if not _MONTH_NAMES.search(text) and not re.search(r"\d{1,2}\.\s*\w+\s+\d{4}", text):
        return None
    return _dateparser_date(text)


def date_headings(text: str, style: str | None) -> list[tuple[int, date]]:
    """(character offset, date) of each line that starts a dated entry."""
    found: list[tuple[int, date]] = []
    patterns = {"markdown": [_MD_HEADING], "org": [_ORG_HEADING], "text": [_DATE_LINE]}
    for pattern in patterns.get(style or "", []):
        for match in pattern.finditer(text):
            when = date_from_heading(match["text"])
            if when:
                found.append((match.start(), when))
    if style in ("markdown", "org"):
        for match in _DATE_LINE.finditer(text):  # a bare date on its own line also counts
            when = date_from_heading(match["text"])
            if when:
                found.append((match.start(), when))
    found.sort()
    deduped: list[tuple[int, date]] = []
    for offset, when in found:
        if not deduped or deduped[-1][0] != offset:
            deduped.append((offset, when))
    return deduped


def mtime_date(mtime_ns: int) -> date:
    return datetime.fromtimestamp(mtime_ns / 1e9).date()


def assign_entries(result, relpath: str, mtime_ns: int) -> list[Entry]:
    """Turn a reader's result into dated entries, recording the rule used."""
    if result.entries is not None:  # the format carries its own entries (Day One)
        fallback = mtime_date(mtime_ns)
        entries = []
        for entry in result.entries:
            if entry.date is None:
                entry.date, entry.date_rule = fallback, "mtime"
            entries.append(entry)
        return [e for e in entries if e.text.strip()]

    text = result.text
    if result.date is not None:
        return _single(result, result.date, result.date_rule or "front_matter")
    from_name = date_from_path(relpath)
    if from_name is not None:
        return _single(result, from_name, "file_name")
    headings = date_headings(text, result.heading_style)
    if headings:
        entries = []
        bounds = [offset for offset, _ in headings] + [len(text)]
        for index, (offset, when) in enumerate(headings):
            start = 0 if index == 0 else offset  # text before the first heading joins it
            piece = text[start:bounds[index + 1]]
            if piece.strip():
                entries.append(Entry(piece, when, "heading", result.title, list(result.tags)))
        return entries
    if result.fallback_date is not None:
        return _single(result, result.fallback_date, "metadata")
    return _single(result, mtime_date(mtime_ns), "mtime")


def _single(result, when: date, rule: str) -> list[Entry]:
    if not result.text.strip():
        return []
    return [Entry(result.text, when, rule, result.title, list(result.tags))]
