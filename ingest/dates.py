"""Entry dates: where each entry's date comes from, and which rule gave it.

Rules, in order (the first that gives a date wins):

1. ``front_matter``: an explicit date written by the person (YAML ``date:``, Org
   ``#+DATE:``, an HTML ``<meta name="date">``; Day One entries use ``dayone``).
2. ``file_name``: ``2024-03-05.md``, ``2024_03_05 notes.txt``, ``20240305.md``,
   ``2024/03/05.md``, ``2024-03/05.md``.
3. ``heading``: date headings (``## 2024-03-05``, ``* <2024-03-05 Tue>``,
   ``## Tuesday, March 5, 2024``) split a long journal file into one entry each.
4. ``metadata``: the creation date inside a PDF or DOCX (often the export date,
   hence after the rules above).
5. ``mtime``: the file's modification time, in local time.

dateparser handles the free-form cases only; it is slow, so plain ISO forms are
matched with regular expressions first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache

MIN_YEAR, MAX_YEAR = 1900, 2100

_YEAR = r"(?:19|20)\d{2}"
_MONTH = r"(?:0?[1-9]|1[0-2])"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_SEP_DATE = re.compile(rf"(?<!\d)({_YEAR})[-_.]({_MONTH})[-_.]({_DAY})(?!\d)")
_COMPACT_DATE = re.compile(r"(?<!\d)((?:19|20)\d{2})(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])(?!\d)")
_PATH_DATE = re.compile(
    rf"(?:^|/)({_YEAR})[/-]({_MONTH})/({_DAY})(?=$|[^\d])")
_ISO_IN_TEXT = re.compile(rf"(?<!\d)({_YEAR})[-/.]({_MONTH})[-/.]({_DAY})(?!\d)")
_MONTH_NAMES = re.compile(
    r"\b(jan(uary)?|feb(ruary)?|mar(ch)?|apr(il)?|may|june?|july?|aug(ust)?|"
    r"sep(t|tember)?|oct(ober)?|nov(ember)?|dec(ember)?)\b", re.IGNORECASE)
_HAS_YEAR = re.compile(rf"(?<!\d){_YEAR}(?!\d)")

_MD_HEADING = re.compile(r"^(#{1,6})[ \t]+([^\n]{1,120}?)[ \t#]*$", re.MULTILINE)
_ORG_HEADING = re.compile(r"^(\*{1,6})[ \t]+([^\n]{1,120}?)[ \t]*$", re.MULTILINE)
_DATE_LINE = re.compile(rf"^[ \t]*({_YEAR}[-/.]{_MONTH}[-/.]{_DAY})[ \t]*:?[ \t]*$", re.MULTILINE)


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
        value = date(int(year), int(month), int(day))
    except (TypeError, ValueError):
        return None
    return value if MIN_YEAR <= value.year <= MAX_YEAR else None


def date_from_path(relpath: str) -> date | None:
    """A date spelled in the file name, else in the folders above it."""
    relpath = relpath.replace("\\", "/")
    name = relpath.rsplit("/", 1)[-1]
    for pattern in (_SEP_DATE, _COMPACT_DATE):
        match = pattern.search(name)
        if match and (found := _make_date(*match.groups())):
            return found
    match = _PATH_DATE.search(relpath)
    if match:
        return _make_date(*match.groups())
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
    return parsed.date() if MIN_YEAR <= parsed.year <= MAX_YEAR else None


def date_from_value(value) -> date | None:
    """A date from a front-matter value (date, datetime, or text)."""
    if isinstance(value, datetime):
        return value.date() if MIN_YEAR <= value.year <= MAX_YEAR else None
    if isinstance(value, date):
        return value if MIN_YEAR <= value.year <= MAX_YEAR else None
    if isinstance(value, (int, float)):
        return None
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 80:
        return None
    match = _ISO_IN_TEXT.match(text)
    if match:
        return _make_date(*match.groups())
    return _dateparser_date(text)


def date_from_heading(text: str) -> date | None:
    """The date a heading names, if it names one (a full day, not just a month)."""
    text = text.strip().strip("<>[]").strip()
    match = _ISO_IN_TEXT.search(text)
    if match:
        return _make_date(*match.groups())
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
            heading = match.group(match.lastindex or 1)
            when = date_from_heading(heading)
            if when:
                found.append((match.start(), when))
    if style in ("markdown", "org"):
        for match in _DATE_LINE.finditer(text):  # a bare date on its own line also counts
            when = date_from_heading(match.group(1))
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
