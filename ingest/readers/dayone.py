"""Day One JSON export (``Journal.json``): one entry per Day One entry.

Each entry's ``creationDate`` (UTC) is shown in the entry's own ``timeZone``.
Day One's Markdown escapes (``\\.``) are undone and photo references dropped.
Other JSON files are skipped with a reason.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone

from ingest.dates import Entry
from ingest.readers.base import ReadResult, SkipFile, decode_text

FORMAT = "dayone"
EXTENSIONS = (".json",)

_ESCAPED = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>|~])")
_MOMENT = re.compile(r"!\[[^\]]*\]\(dayone-moment:[^)]*\)\n?")


def _entry_date(raw: dict):
    stamp = raw.get("creationDate")
    if not isinstance(stamp, str):
        return None
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    zone = raw.get("timeZone")
    if isinstance(zone, str):
        try:
            from zoneinfo import ZoneInfo

            return when.astimezone(ZoneInfo(zone)).date()
        except Exception:
            pass
    return when.astimezone().date()


def read(data: bytes, relpath: str) -> ReadResult:
    text, encoding = decode_text(data)
    try:
        export = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SkipFile(f"invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not (isinstance(export, dict) and isinstance(export.get("entries"), list)):
        raise SkipFile("JSON file is not a Day One export (no \"entries\" list)")
    entries: list[Entry] = []
    for raw in export["entries"]:
        if not isinstance(raw, dict) or not isinstance(raw.get("text"), str):
            continue
        body = _ESCAPED.sub(r"\1", _MOMENT.sub("", raw["text"].replace("\r\n", "\n")))
        if not body.strip():
            continue
        when = _entry_date(raw)
        tags = [str(t) for t in raw.get("tags", []) if isinstance(t, (str, int))][:50]
        entries.append(Entry(body, when, "dayone" if when else None, None, tags))
    if not entries:
        raise SkipFile("Day One export holds no entries with text")
    entries.sort(key=lambda e: (e.date is None, e.date))
    return ReadResult(entries=entries, encoding=encoding)
