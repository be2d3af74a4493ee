"""What every reader shares: the result type, the skip signal and text decoding."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass, field
from datetime import date

from ingest.dates import Entry


class SkipFile(Exception):
    """This file cannot be ingested; the message says why (shown in `memex status`)."""


@dataclass
class ReadResult:
    """What a reader found in one file.

    ``text`` is the document's text; ``date`` an explicit date written in the file
    (front matter), ``fallback_date`` a weaker one (PDF/DOCX metadata).
    ``heading_style`` says which lines can be date headings ("markdown", "org",
    "text"). Readers for formats holding several dated entries (Day One) set
    ``entries`` instead.
    """
    text: str = ""
    title: str | None = None
    tags: list[str] = field(default_factory=list)
    date: date | None = None
    date_rule: str | None = None
    fallback_date: date | None = None
    heading_style: str | None = None
    encoding: str | None = None
    entries: list[Entry] | None = None
    warnings: list[str] = field(default_factory=list)


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f]")


def _looks_binary(text: str) -> bool:
    """Control characters that text never holds (NUL, most C0 codes) mean binary."""
    sample = text[:65536]
    if "\x00" in sample:
        return True
    return len(_CONTROL.findall(sample)) > max(8, len(sample) // 100)


def decode_text(data: bytes) -> tuple[str, str]:
    """Decode file bytes: BOM (UTF-8/16/32), else UTF-8, else cp1252.

    Returns (text with \\n newlines, encoding used). Raises SkipFile for binary data.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(encoding)
            except UnicodeDecodeError:
                raise SkipFile(f"undecodable {encoding} text (it starts with a BOM)") from None
            break
    else:
        if b"\x00" in data[:65536]:
            raise SkipFile("binary content (not text)")
        try:
            text, encoding = data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            try:
                text, encoding = data.decode("cp1252"), "cp1252"
            except UnicodeDecodeError:
                # the five bytes cp1252 leaves undefined: keep everything else
                text, encoding = data.decode("cp1252", errors="replace"), "cp1252+replace"
    text = text.removeprefix("\ufeff")
    if _looks_binary(text):
        raise SkipFile("binary content (not text)")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding
