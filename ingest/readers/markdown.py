"""Markdown (and Obsidian vaults): YAML front matter, wikilinks kept as their text.

Front matter gives the date (``date``/``created``/``day``), ``title`` and ``tags``.
Broken front matter is dropped with a warning and the body still ingested.
``[[Page]]`` becomes ``Page`` and ``[[Page|shown]]`` becomes ``shown``; embeds
(``![[image.png]]``) keep their target name.
"""

from __future__ import annotations

import re

import frontmatter

from ingest.dates import date_from_value
from ingest.readers.base import ReadResult, decode_text

FORMAT = "markdown"
EXTENSIONS = (".md", ".markdown", ".mdown", ".mkd", ".mkdn")

DATE_KEYS = ("date", "created", "created_at", "creation_date", "day", "datetime", "journal_date")
_FRONT_MATTER_BLOCK = re.compile(r"\A(?:---|\+\+\+)[ \t]*\n(?:.*?\n)?(?:---|\+\+\+|\.\.\.)[ \t]*(?:\n|\Z)",
                                 re.DOTALL)
_WIKILINK = re.compile(r"!?\[\[([^\[\]|#\n]*)(?:#[^\[\]|\n]*)?(?:\|([^\[\]\n]*))?\]\]")


def _wikilink_text(match: re.Match) -> str:
    target, shown = match.group(1), match.group(2)
    return (shown if shown else target).strip()


def replace_wikilinks(text: str) -> str:
    return _WIKILINK.sub(_wikilink_text, text) if "[[" in text else text


def split_front_matter(text: str, result: ReadResult) -> tuple[dict, str]:
    if not text.startswith(("---", "+++")):
        return {}, text
    try:
        post = frontmatter.loads(text)
    except Exception as exc:  # YAML/TOML errors of every kind
        result.warnings.append(f"broken front matter ignored ({type(exc).__name__})")
        block = _FRONT_MATTER_BLOCK.match(text)
        return {}, text[block.end():] if block else text
    metadata = post.metadata if isinstance(post.metadata, dict) else {}
    return metadata, post.content


def apply_metadata(metadata: dict, result: ReadResult) -> None:
    lowered = {str(key).lower(): value for key, value in metadata.items()}
    for key in DATE_KEYS:
        if key in lowered:
            when = date_from_value(lowered[key])
            if when:
                result.date, result.date_rule = when, "front_matter"
                break
            result.warnings.append(f"front matter {key!r} is not a date: ignored")
    title = lowered.get("title")
    if isinstance(title, (str, int, float)):
        result.title = str(title).strip()[:300] or None
    tags = lowered.get("tags", lowered.get("tag"))
    if isinstance(tags, str):
        tags = [t for t in re.split(r"[,\s]+", tags) if t]
    if isinstance(tags, list):
        result.tags = [str(t).strip().lstrip("#") for t in tags if str(t).strip()][:50]


def read(data: bytes, relpath: str) -> ReadResult:
    text, encoding = decode_text(data)
    result = ReadResult(encoding=encoding, heading_style="markdown")
    metadata, body = split_front_matter(text, result)
    apply_metadata(metadata, result)
    result.text = replace_wikilinks(body)
    return result
