"""Split an entry's text into chunks of about a paragraph.

Chunks tile the text exactly (``"".join(chunks) == text``), so character spans
map back to the source and an entry's text is the concatenation of its chunks.
A chunk holds at most ``max_chars`` characters (800 ≈ 200 tokens of English);
cuts fall on a blank line if one lies in the window, else at a sentence end, a
line break, a space, and only as a last resort mid-word (a line of megabytes).
The work is linear in the text length.
"""

from __future__ import annotations

import re

MAX_CHARS = 800
MIN_CHARS = 200

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*\s+")
_LINE_BREAK = re.compile(r"\n\s*")
_SPACE = re.compile(r"\s+")


def _last_cut(pattern: re.Pattern, window: str, lowest: int) -> int | None:
    """End offset of the last match of ``pattern`` in ``window`` ending after ``lowest``."""
    cut = None
    for match in pattern.finditer(window, lowest):
        cut = match.end()
    return cut


def chunk_spans(text: str, max_chars: int = MAX_CHARS, min_chars: int = MIN_CHARS
                ) -> list[tuple[int, int]]:
    """(start, end) character spans that tile ``text``."""
    spans: list[tuple[int, int]] = []
    start, length = 0, len(text)
    while start < length:
        if length - start <= max_chars:
            spans.append((start, length))
            break
        window = text[start:start + max_chars]
        cut = None
        for pattern in (_PARAGRAPH_BREAK, _SENTENCE_END, _LINE_BREAK, _SPACE):
            cut = _last_cut(pattern, window, min_chars)
            if cut:
                break
        if not cut or cut >= len(window) + 1:
            cut = max_chars
        spans.append((start, start + cut))
        start += cut
    return spans


def chunk_text(text: str, max_chars: int = MAX_CHARS) -> list[tuple[int, int, str]]:
    return [(a, b, text[a:b]) for a, b in chunk_spans(text, max_chars)]
