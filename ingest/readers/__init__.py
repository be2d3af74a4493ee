"""Readers: one small module per format, all with the same interface.

A reader module defines ``FORMAT`` (a short name), ``EXTENSIONS`` (lower-case,
with the dot) and ``read(data: bytes, relpath: str) -> ReadResult``; it raises
``SkipFile(reason)`` for input it cannot use. Dates are resolved afterwards by
``ingest.dates.assign_entries``.
"""

from __future__ import annotations

from types import ModuleType

from ingest.readers import dayone, docx, html, markdown, org, pdf, text
from ingest.readers.base import ReadResult, SkipFile, decode_text

READERS: tuple[ModuleType, ...] = (markdown, text, org, html, pdf, docx, dayone)
BY_EXTENSION: dict[str, ModuleType] = {ext: module for module in READERS
                                       for ext in module.EXTENSIONS}


def reader_for(name: str) -> ModuleType | None:
    """The reader for a file name, by extension (None: not a format memex reads)."""
    dot = name.rfind(".")
    return BY_EXTENSION.get(name[dot:].lower()) if dot > 0 else None


__all__ = ["BY_EXTENSION", "READERS", "ReadResult", "SkipFile", "decode_text", "reader_for"]
