"""Org mode: ``#+TITLE``, ``#+DATE``, ``#+FILETAGS``; dated headings split entries."""

from __future__ import annotations

import re

from ingest.dates import date_from_heading
from ingest.readers.base import ReadResult, decode_text

FORMAT = "org"
EXTENSIONS = (".org",)

_KEYWORD = re.compile(r"^#\+(\w+):[ \t]*(.*)$", re.MULTILINE)


def read(data: bytes, relpath: str) -> ReadResult:
    text, encoding = decode_text(data)
    result = ReadResult(encoding=encoding, heading_style="org")
    # Keywords live at the top of the file; only those lines are taken out of the text.
    body_start = 0
    for match in _KEYWORD.finditer(text):
        if text[body_start:match.start()].strip():
            break
        key, value = match.group(1).lower(), match.group(2).strip()
        if key == "title":
            result.title = value[:300] or None
        elif key == "date":
            when = date_from_heading(value)
            if when:
                result.date, result.date_rule = when, "front_matter"
        elif key in ("filetags", "tags"):
            result.tags = [t for t in re.split(r"[:\s]+", value) if t][:50]
        body_start = match.end()
    result.text = text[body_start:].lstrip("\n")
    if result.title and result.text.strip():
        result.text = f"{result.title}\n\n{result.text}"
    return result
